"""sol_jax.parallel: mesh, sharding rules, batch placement and multi-host start-up.

Multi-device checks need 8 fake CPU devices, which must be configured before
jax is first imported; this pytest process already has jax with 1 device, so
they run once in a subprocess (tests/parallel_checks.py) that prints JSON.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from sol_jax import config as config_lib
from sol_jax import parallel

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def eight():
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  env.pop("XLA_FLAGS", None)
  proc = subprocess.run(
    [sys.executable, str(ROOT / "tests" / "parallel_checks.py")],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_mesh_shapes_from_config(eight):
  m = eight["mesh"]
  assert m["devices"] == 8 and m["distinct_devices"] == 8
  assert m["axis_names"] == ["data", "model"]
  assert m["default"] == {"data": 8, "model": 1}  # data=-1 takes every device
  assert m["data4_model2"] == {"data": 4, "model": 2}
  assert m["full_cfg"] == {"data": 4, "model": 2}
  assert m["subset"] == {"data": 2, "model": 2}  # data=-1 over the 4 devices given


@pytest.mark.integration
def test_mesh_errors(eight):
  m = eight["mesh"]
  assert "data=3 x model=2 = 6 devices" in m["err_product"]
  assert "mesh.model=3 does not divide" in m["err_model"]
  assert "rl.batch_size=6 must be divisible by the data axis (8)" in m["err_batch"]
  assert "6 rollouts does not split over the data axis (8)" in m["err_minibatch"]


# The rules of the brief, written out per param: (dims with "model", ndim).
_MODEL_DIM = {
  "['embed']['embedding']": (0, 2),
  "['lm_head']['kernel']": (1, 2),
  "['final_norm']['scale']": (None, 1),
  "['layers']['attn_norm']['scale']": (None, 2),
  "['layers']['mlp_norm']['scale']": (None, 2),
  "['layers']['attn']['q_proj']['kernel']": (2, 3),
  "['layers']['attn']['k_proj']['kernel']": (2, 3),
  "['layers']['attn']['v_proj']['kernel']": (2, 3),
  "['layers']['attn']['o_proj']['kernel']": (1, 3),
  "['layers']['mlp']['gate_proj']['kernel']": (2, 3),
  "['layers']['mlp']['up_proj']['kernel']": (2, 3),
  "['layers']['mlp']['down_proj']['kernel']": (1, 3),
}


def _expected(replicate=()):
  out = {}
  for path, (dim, ndim) in _MODEL_DIM.items():
    spec = [None] * ndim
    if dim is not None and not any(r in path for r in replicate):
      spec[dim] = "model"
    out[path] = spec
  return out


@pytest.mark.integration
def test_lm_param_shardings(eight):
  s = eight["sharding"]
  assert s["toy_2"] == _expected()
  # model=4: the vocab (66) does not split, so embedding and lm_head replicate.
  assert s["toy_4"] == _expected(replicate=("embed", "lm_head"))
  # With the model config, k/v (2 kv heads) are not split mid-head either.
  assert s["toy_4_heads"] == _expected(replicate=("embed", "lm_head", "k_proj", "v_proj"))


@pytest.mark.integration
def test_logical_and_batch_shardings(eight):
  s = eight["sharding"]
  assert s["batch3"] == ["data", None, None]
  assert s["logical"] == ["data", None, "model"]
  assert s["logical_odd"] == [None, None]  # 6 rows over 4, 5 vocab over 2: replicate
  assert s["replicated"] == []


@pytest.mark.integration
def test_shard_batch(eight):
  n = eight["numeric"]
  assert n["shard_batch_equal"] and n["shard_batch_spec"] == ["data", None, None]
  assert n["shard_shapes"] == [[2, 3, 2]]
  assert "divisible by this process's 4 data shards" in n["shard_batch_err"]


@pytest.mark.integration
def test_sharded_jit_matches_unsharded(eight):
  n = eight["numeric"]
  assert n["mlp_err"] < 1e-5 and n["mlp_out_spec"] == ["data", None]
  assert n["q_shard_shape"] == [2, 16, 8]  # [L, D, H*dh / 2] per device
  # fp32; sharded matmuls only reorder sums.
  assert n["llama_err"] < 1e-5 * max(1.0, n["llama_scale"])
  assert n["llama_out_spec"] == ["data", None, None]


# ---- in-process (1 device) ----------------------------------------------------------


def test_mesh_shape_resolution():
  assert config_lib.MeshCfg().axis_sizes(16) == (16, 1)
  assert config_lib.MeshCfg(model=4).axis_sizes(16) == (4, 4)
  assert config_lib.MeshCfg(data=2, model=8).axis_sizes(16) == (2, 8)
  with pytest.raises(ValueError, match="set mesh.data=-1"):
    config_lib.MeshCfg(data=2, model=2).axis_sizes(16)
  with pytest.raises(ValueError, match="does not divide"):
    config_lib.MeshCfg(model=3).axis_sizes(16)


def test_single_device_everything_replicated():
  mesh = parallel.make_mesh(config_lib.MeshCfg())
  assert dict(mesh.shape) == {"data": 1, "model": 1}
  params = {
    "embed": {"embedding": np.zeros((8, 4))},
    "layers": {"mlp": {"up_proj": {"kernel": np.zeros((2, 4, 6))}}},
  }
  specs = jax.tree_util.tree_leaves(
    jax.tree_util.tree_map(lambda s: tuple(s.spec), parallel.lm_param_shardings(mesh, params)),
    is_leaf=lambda x: isinstance(x, tuple),
  )
  assert specs == [(None, None), (None, None, None)]
  x = parallel.shard_batch(np.arange(6).reshape(3, 2), mesh)
  np.testing.assert_array_equal(np.asarray(x), np.arange(6).reshape(3, 2))


def test_unknown_lm_param_is_an_error():
  mesh = parallel.make_mesh(config_lib.MeshCfg())
  with pytest.raises(ValueError, match=r"\['layers'\]\['attn'\]\['rope'\]\['freq'\]"):
    parallel.lm_param_shardings(mesh, {"layers": {"attn": {"rope": {"freq": np.zeros(3)}}}})
  with pytest.raises(ValueError, match="expected 3 dims"):
    parallel.lm_param_shardings(mesh, {"layers": {"mlp": {"up_proj": {"kernel": np.zeros(3)}}}})


_LAUNCH_VARS = (
  "SOL_DISTRIBUTED",
  "JAX_COORDINATOR_ADDRESS",
  "JAX_NUM_PROCESSES",
  "JAX_PROCESS_ID",
  "SLURM_STEP_NODELIST",
  "SLURM_NTASKS",
  "SLURM_JOB_ID",
  "OMPI_MCA_orte_hnp_uri",
  "OMPI_COMM_WORLD_SIZE",
  "MEGASCALE_NUM_SLICES",
  "TPU_PROCESS_ADDRESSES",
  "TPU_WORKER_HOSTNAMES",
)


@pytest.fixture
def launch_env(monkeypatch):
  for var in _LAUNCH_VARS:
    monkeypatch.delenv(var, raising=False)
  calls = []
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
  monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
  return monkeypatch, calls


@pytest.mark.parametrize(
  "env, launcher",
  [
    ({}, None),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "1"}, None),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "2"}, "env"),
    ({"SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "2", "SLURM_JOB_ID": "7"}, "slurm"),
    ({"SLURM_STEP_NODELIST": "n1", "SLURM_NTASKS": "1"}, None),
    ({"OMPI_MCA_orte_hnp_uri": "x", "OMPI_COMM_WORLD_SIZE": "4"}, "ompi"),
    ({"TPU_WORKER_HOSTNAMES": "a,b,c,d"}, "cloud_tpu"),
    ({"TPU_WORKER_HOSTNAMES": "localhost"}, None),
    ({"SOL_DISTRIBUTED": "1"}, "forced"),
    ({"SOL_DISTRIBUTED": "0", "JAX_NUM_PROCESSES": "4"}, None),
  ],
)
def test_launcher_detection(launch_env, env, launcher):
  monkeypatch, calls = launch_env
  monkeypatch.setattr(
    parallel,
    "_cloud_tpu_workers",
    lambda: len(os.environ.get("TPU_WORKER_HOSTNAMES", "x").split(",")),
  )
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  assert parallel.multiprocess_launcher() == launcher
  assert parallel.initialize_distributed() == (launcher is not None)
  if launcher == "env":
    assert calls == [(("h:1", 4, 2), {})]
  else:
    assert calls == ([((), {})] if launcher else [])


@pytest.mark.parametrize(
  "env, match",
  [
    ({"JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_NUM_PROCESSES is not"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "JAX_COORDINATOR_ADDRESS=host:port"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"}, r"JAX_PROCESS_ID in \[0, 2\)"),
    ({"JAX_NUM_PROCESSES": "two"}, "must be an integer"),
    ({"SOL_DISTRIBUTED": "yes"}, "must be 0 or 1"),
  ],
)
def test_launcher_errors(launch_env, env, match):
  monkeypatch, calls = launch_env
  monkeypatch.setattr(parallel, "_cloud_tpu_workers", lambda: 1)
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  with pytest.raises(ValueError, match=match):
    parallel.initialize_distributed()
  assert calls == []


def test_already_initialized_is_a_no_op(launch_env):
  monkeypatch, calls = launch_env
  monkeypatch.setenv("SOL_DISTRIBUTED", "1")
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: True)
  assert parallel.initialize_distributed() is False and calls == []
