"""Device mesh, the logical-axis -> mesh-axis rules, and multi-host start-up.

The mesh has two axes: "data" splits the input batch B (each device keeps whole
inputs with all their K schedules, so GRPO group statistics stay local) and
"model" splits the frozen LM's heads / MLP / vocabulary dimensions. Arrays are
annotated with *logical* axis names and `LOGICAL_AXIS_RULES` is the one table
that maps those names to mesh axes (resolved by `flax.linen.logical_to_mesh_axes`).

Launch recipe (every process runs the same command; `initialize_distributed()`
must be called before anything touches a JAX device):

- One host (CPU, one GPU, one TPU VM, Colab): nothing to do; it is a no-op.
- Cloud TPU pod slice: run the same command on every worker, e.g.
    gcloud compute tpus tpu-vm ssh $TPU --zone=$ZONE --worker=all \\
      --command="cd sol && python experiments/train.py cfg.yaml"
  JAX finds the coordinator and the process ids from the TPU metadata.
- GPU (or CPU) multi-node, one process per host or per GPU: set on each process
    JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=N JAX_PROCESS_ID=i
  (optionally JAX_LOCAL_DEVICE_IDS=0,1,..). SLURM (srun) and Open MPI (mpirun)
  jobs with more than one task are detected without these variables.
- SOL_DISTRIBUTED=1 forces `jax.distributed.initialize()` (with JAX's own
  auto-detection); SOL_DISTRIBUTED=0 disables it.

Every process then feeds its own slice of the batch: `shard_batch` assembles
the global array from process-local data, and only process 0 writes logs.
"""

from __future__ import annotations

import os
import urllib.request
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "model")

# Logical axis -> mesh axis (None: replicated). Each mesh axis is used at most
# once per array; flax takes the first rule whose mesh axis is still free.
LOGICAL_AXIS_RULES = (
  ("batch", "data"),
  ("schedule", None),  # the K rollouts of one input stay on its device
  ("embed", None),  # hidden size D: pruning/quantization reduce over it
  ("heads", "model"),
  ("kv_heads", "model"),
  ("mlp", "model"),
  ("vocab", "model"),
  ("layers", None),  # the stacked (nn.scan) layer axis
)

# Logical axes of the frozen Llama's params, keyed by (module, param) name; a
# leading "layers" axis is added for the stacked decoder-layer params.
_LM_PARAM_AXES = {
  ("embed", "embedding"): ("vocab", "embed"),
  ("lm_head", "kernel"): ("embed", "vocab"),
  ("final_norm", "scale"): ("embed",),
  ("attn_norm", "scale"): ("embed",),
  ("mlp_norm", "scale"): ("embed",),
  ("q_proj", "kernel"): ("embed", "heads"),
  ("k_proj", "kernel"): ("embed", "kv_heads"),
  ("v_proj", "kernel"): ("embed", "kv_heads"),
  ("o_proj", "kernel"): ("heads", "embed"),
  ("gate_proj", "kernel"): ("embed", "mlp"),
  ("up_proj", "kernel"): ("embed", "mlp"),
  ("down_proj", "kernel"): ("mlp", "embed"),
}


def make_mesh(mesh_cfg: Any, devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A ("data", "model") mesh over `devices` (default: all, across hosts).

  `mesh_cfg` is a `MeshCfg` or a whole `ExperimentConfig`; for the latter the
  batch is also checked to split over the data axis (`config.validate_mesh`).
  Axes are `AxisType.Auto`: jit in/out shardings steer XLA's partitioner, as
  with pjit (jax.make_mesh now defaults to Explicit sharding-in-types).
  """
  devices = list(jax.devices() if devices is None else devices)
  if hasattr(mesh_cfg, "mesh"):  # an ExperimentConfig
    from sol_jax import config as config_lib  # local: keep this module light

    shape = config_lib.validate_mesh(mesh_cfg, len(devices))
  else:
    shape = mesh_cfg.axis_sizes(len(devices))
  return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * 2, devices=devices)


def _fit_spec(spec: PartitionSpec, shape: Optional[Sequence[int]], mesh: Mesh) -> PartitionSpec:
  """Drops mesh axes of size 1 and, given a shape, any that do not divide their dim."""
  out = []
  for i, axis in enumerate(spec):
    names = (axis,) if isinstance(axis, str) else tuple(axis or ())
    size = int(np.prod([mesh.shape[n] for n in names])) if names else 1
    ok = size > 1 and (shape is None or shape[i] % size == 0)
    out.append(axis if ok else None)
  return PartitionSpec(*out)


def logical_spec(
  logical_axes: Sequence[Optional[str]], mesh: Mesh, shape: Optional[Sequence[int]] = None
) -> PartitionSpec:
  """PartitionSpec for logical axis names via `LOGICAL_AXIS_RULES`.

  Names without a rule (and None) are replicated. With `shape`, a dim whose
  size is not divisible by its mesh axis is replicated instead of split.
  """
  if shape is not None and len(shape) != len(logical_axes):
    raise ValueError(
      f"logical axes {tuple(logical_axes)} name {len(logical_axes)} dims "
      f"but the array has shape {tuple(shape)}"
    )
  spec = nn.logical_to_mesh_axes(tuple(logical_axes), LOGICAL_AXIS_RULES)
  return _fit_spec(spec, shape, mesh)


def logical_sharding(
  mesh: Mesh, logical_axes: Sequence[Optional[str]], shape: Optional[Sequence[int]] = None
) -> NamedSharding:
  """NamedSharding for an array whose dims carry `logical_axes` names."""
  return NamedSharding(mesh, logical_spec(logical_axes, mesh, shape))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device (policy params, optimizer state, scalars)."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
  """Leading (batch) axis split over "data", the other `ndim - 1` dims replicated."""
  if ndim < 1:
    raise ValueError(f"batch_sharding needs an array with a batch axis, got ndim={ndim}")
  return logical_sharding(mesh, ("batch",) + (None,) * (ndim - 1))


def lm_param_axes(params: Any) -> Any:
  """The logical axis names of every frozen-Llama param (same tree structure)."""

  def axes(path, leaf):
    names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    key = tuple(names[-2:])
    if key not in _LM_PARAM_AXES:
      raise ValueError(
        f"no sharding rule for LM param {jax.tree_util.keystr(path)}; "
        "add its (module, param) name to parallel._LM_PARAM_AXES"
      )
    logical = _LM_PARAM_AXES[key]
    if "layers" in names[:-2]:
      logical = ("layers",) + logical
    if len(logical) != np.ndim(leaf):
      raise ValueError(
        f"LM param {jax.tree_util.keystr(path)} has shape {np.shape(leaf)}, "
        f"expected {len(logical)} dims {logical}"
      )
    return logical

  return jax.tree_util.tree_map_with_path(axes, params)


def lm_param_shardings(mesh: Mesh, params: Any, model_cfg: Any = None) -> Any:
  """A NamedSharding per frozen-Llama param: heads / MLP / vocab over "model".

  A dim is split only if the "model" axis size divides it. With `model_cfg`
  (a `ModelConfig`), head dims are split only at head boundaries (num_heads or
  num_kv_heads divisible), so that no device holds part of a head.
  """
  n_model = mesh.shape["model"]
  whole_heads = {"heads": True, "kv_heads": True}
  if model_cfg is not None:
    whole_heads = {
      "heads": model_cfg.num_heads % n_model == 0,
      "kv_heads": model_cfg.num_kv_heads % n_model == 0,
    }

  def sharding(logical, leaf):
    logical = tuple(None if not whole_heads.get(a, True) else a for a in logical)
    return logical_sharding(mesh, logical, np.shape(leaf))

  return jax.tree_util.tree_map(
    sharding, lm_param_axes(params), params, is_leaf=lambda x: isinstance(x, tuple)
  )


def _local_data_shards(mesh: Mesh) -> int:
  """How many distinct "data" slices this process's devices hold."""
  data_axis = mesh.axis_names.index("data")
  local = {d.id for d in jax.local_devices()}
  rows = {idx[data_axis] for idx, d in np.ndenumerate(mesh.devices) if d.id in local}
  return len(rows)


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Process-local batch pytree -> global arrays split over "data".

  Each process passes its own rows (leading axis); the global batch is their
  concatenation in process order. Works unchanged on one host.
  """
  shards = _local_data_shards(mesh)

  def put(x):
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] % shards:
      raise ValueError(
        f"shard_batch: local batch of shape {x.shape} must have a leading "
        f"axis divisible by this process's {shards} data shards"
      )
    return jax.make_array_from_process_local_data(batch_sharding(mesh, x.ndim), x)

  return jax.tree_util.tree_map(put, batch)


# ---- multi-host start-up ------------------------------------------------------

_METADATA = "http://metadata.google.internal/computeMetadata/v1/instance/attributes/"


def _env_int(name: str) -> Optional[int]:
  value = os.environ.get(name)
  if value is None:
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def _cloud_tpu_workers() -> int:
  """Workers in this Cloud TPU slice (1 off TPU VMs or without metadata)."""
  hosts = os.environ.get("TPU_PROCESS_ADDRESSES") or os.environ.get("TPU_WORKER_HOSTNAMES")
  if hosts:  # GKE sets these
    return len(hosts.split(","))
  if not any(os.path.exists(p) for p in ("/dev/accel0", "/dev/vfio/0")):
    return 1
  req = urllib.request.Request(
    _METADATA + "worker-network-endpoints", headers={"Metadata-Flavor": "Google"}
  )
  try:
    with urllib.request.urlopen(req, timeout=2) as resp:
      return len(resp.read().decode().strip().split(","))
  except OSError:  # no metadata server (e.g. Colab): a single host
    return 1


def multiprocess_launcher() -> Optional[str]:
  """Names what makes this a multi-process run, or None on a single host.

  Mirrors what `jax.distributed.initialize()` can auto-detect: SLURM inside
  `srun`, Open MPI under `mpirun`, Cloud TPU slices; plus the explicit
  JAX_NUM_PROCESSES / JAX_PROCESS_ID variables, which JAX itself does not read.
  """
  forced = os.environ.get("SOL_DISTRIBUTED")
  if forced is not None:
    if forced not in ("0", "1"):
      raise ValueError(f"SOL_DISTRIBUTED={forced!r} must be 0 or 1")
    return "forced" if forced == "1" else None
  num = _env_int("JAX_NUM_PROCESSES")
  if num is not None:
    return "env" if num > 1 else None
  if "SLURM_STEP_NODELIST" in os.environ and (_env_int("SLURM_NTASKS") or 1) > 1:
    return "slurm"
  if "OMPI_MCA_orte_hnp_uri" in os.environ and (_env_int("OMPI_COMM_WORLD_SIZE") or 1) > 1:
    return "ompi"
  if (_env_int("MEGASCALE_NUM_SLICES") or 1) > 1 or _cloud_tpu_workers() > 1:
    return "cloud_tpu"
  if os.environ.get("JAX_COORDINATOR_ADDRESS"):
    raise ValueError(
      "JAX_COORDINATOR_ADDRESS is set but JAX_NUM_PROCESSES is not; set "
      "JAX_NUM_PROCESSES and JAX_PROCESS_ID too (or unset it for one host)"
    )
  return None


def initialize_distributed() -> bool:
  """Calls `jax.distributed.initialize` iff this is a multi-process run.

  Returns whether it did. A no-op on one host and when already initialized.
  Call it first thing, before any JAX computation.
  """
  if jax.distributed.is_initialized():
    return False
  launcher = multiprocess_launcher()
  if launcher is None:
    return False
  if launcher == "env":
    num, pid = _env_int("JAX_NUM_PROCESSES"), _env_int("JAX_PROCESS_ID")
    address = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if not address or pid is None or not 0 <= pid < num:
      raise ValueError(
        f"JAX_NUM_PROCESSES={num} needs JAX_COORDINATOR_ADDRESS=host:port "
        f"(got {address!r}) and JAX_PROCESS_ID in [0, {num}) (got {pid})"
      )
    jax.distributed.initialize(address, num, pid)
  else:  # JAX's cluster auto-detection (TPU metadata, SLURM, Open MPI)
    jax.distributed.initialize()
  return True
