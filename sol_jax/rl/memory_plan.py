"""Expected per-device memory of one GRPO train step, from shapes alone.

  plan = estimate(cfg, model_cfg, data=8, model=1)
  plan.total("argument"), plan.total("temp"), plan.terms

No weights are read and nothing is compiled: the LM's and the policy's param
trees are `jax.eval_shape`d, and every array is split over a mesh of the given
(data, model) sizes by the sharding rules the training loop uses
(`parallel.LOGICAL_AXIS_RULES` on a `jax.sharding.AbstractMesh`): the frozen
LM's heads / KV heads / MLP / vocabulary dims over "model" (where the axis size
divides them, whole heads only), the input batch over "data", the policy
params and optimizer state replicated.

Activations of a jitted step are XLA's to place, so the temp terms are a model
of the dominant buffers, not a measurement; each term says which buffers it
counts and how many copies it assumes. Activations are assumed split like the
weights that produce them (MLP intermediates over "model" like gate_proj,
logits like the vocabulary). Temps are grouped by the parts of the step that
need them (prefill, decode, update): XLA reuses a finished part's buffers, so
the step's temp memory is the largest part's sum. `compiled_memory` compiles the real step for
abstract inputs and returns XLA's own `memory_analysis()` to check the model
against (experiments.memory_plan with bench.memory_check=true).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import AbstractMesh, AxisType

from sol_jax import parallel
from sol_jax.config import ExperimentConfig, validate_mesh
from sol_jax.models import llama
from sol_jax.models.config import ModelConfig
from sol_jax.policy import observation
from sol_jax.rl.loop import make_setup
from sol_jax.rl.train_step import TrainSetup, init_train_state, make_train_step

ARGUMENT, TEMP = "argument", "temp"
# The step's parts in order; a temp is live in one or more of them, and the
# step's temp memory is the largest part's sum (XLA reuses dead buffers).
PREFILL, DECODE, UPDATE = "prefill", "decode", "update"
PHASES = (PREFILL, DECODE, UPDATE)


@dataclasses.dataclass(frozen=True)
class Term:
  """One buffer (or group of equal buffers) of the step and its per-device size."""

  name: str
  kind: str  # ARGUMENT (inputs to the step: params, optimizer state, data) or TEMP
  shape: str  # the global shape, as text
  bytes_total: int  # all devices together, counting every copy once
  bytes_per_device: int
  note: str = ""
  phases: tuple[str, ...] = ()  # temps: the parts of the step during which it is live


@dataclasses.dataclass(frozen=True)
class Plan:
  data: int  # mesh sizes the plan is for
  model: int
  terms: tuple[Term, ...]

  def phase_total(self, phase: str) -> int:
    """Bytes per device of the temps live during `phase`."""
    return sum(t.bytes_per_device for t in self.terms if phase in t.phases)

  def total(self, kind: Optional[str] = None) -> int:
    """Per-device bytes: arguments summed, temps as their largest phase; None: both."""
    arguments = sum(t.bytes_per_device for t in self.terms if t.kind == ARGUMENT)
    temps = max(self.phase_total(p) for p in PHASES)
    return {ARGUMENT: arguments, TEMP: temps, None: arguments + temps}[kind]


def abstract_mesh(data: int, model: int) -> AbstractMesh:
  """A ("data", "model") mesh of those sizes without devices (for shard shapes)."""
  return AbstractMesh((data, model), parallel.MESH_AXES, axis_types=(AxisType.Auto,) * 2)


def mesh_sizes(cfg: ExperimentConfig, num_devices: Optional[int] = None) -> tuple[int, int]:
  """(data, model) of cfg.mesh, checked against the batch like a training run does.

  mesh.data=-1 ("every device") needs `num_devices`.
  """
  if cfg.mesh.data == -1 and num_devices is None:
    raise ValueError("mesh.data=-1 means every device: give mesh.data=N for a plan")
  n = cfg.mesh.data * cfg.mesh.model if cfg.mesh.data != -1 else num_devices
  return validate_mesh(cfg, n)


def _per_device(mesh: AbstractMesh, shape: Sequence[int], axes: Sequence[Optional[str]]) -> int:
  """Elements of one device's shard of an array whose dims carry logical `axes`."""
  sharding = parallel.logical_sharding(mesh, tuple(axes), tuple(shape))
  return math.prod(sharding.shard_shape(tuple(shape)))


def _tree_bytes(tree) -> int:
  return sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def abstract_lm_params(model_cfg: ModelConfig):
  """The frozen LM's param tree as ShapeDtypeStructs, cast to the config's dtype (as loaded)."""
  shapes = jax.eval_shape(lambda: llama.init_params(model_cfg, jax.random.PRNGKey(0)))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, model_cfg.compute_dtype), shapes)


def abstract_step_inputs(cfg: ExperimentConfig, setup: TrainSetup):
  """(state, lm_params, blocks) of one train step, as ShapeDtypeStructs."""
  state = jax.eval_shape(lambda: init_train_state(setup, cfg.train.seed))
  blocks = jax.ShapeDtypeStruct((cfg.rl.batch_size, cfg.data.block_len), jnp.int32)
  return state, abstract_lm_params(setup.model), blocks


def estimate(cfg: ExperimentConfig, model_cfg: ModelConfig, data: int, model: int) -> Plan:
  """The terms of one train step's memory on each device of a data x model mesh."""
  model_cfg = model_cfg.replace(dtype=cfg.model.dtype)
  mesh = abstract_mesh(data, model)
  setup = make_setup(cfg, model_cfg)
  state, lm_params, _ = abstract_step_inputs(cfg, setup)
  terms: list[Term] = []

  def add(name, shape, axes, itemsize, copies=1, note="", phases=(), kind=TEMP):
    shown = "[" + ", ".join(str(s) for s in shape) + "]" + (f" x{copies}" if copies > 1 else "")
    total = math.prod(shape) * itemsize * copies
    per_device = _per_device(mesh, shape, axes) * itemsize * copies
    terms.append(Term(name, kind, shown, total, per_device, note, tuple(phases)))

  # ---- arguments: what the step is called with ----------------------------------
  lm_shardings = parallel.lm_param_shardings(mesh, lm_params, model_cfg)
  lm_device = sum(
    math.prod(s.shard_shape(x.shape)) * jnp.dtype(x.dtype).itemsize
    for x, s in zip(jax.tree.leaves(lm_params), jax.tree.leaves(lm_shardings))
  )
  n_lm = sum(math.prod(x.shape) for x in jax.tree.leaves(lm_params))
  n_policy = sum(math.prod(x.shape) for x in jax.tree.leaves(state.params))
  policy_bytes = _tree_bytes(state.params)
  terms += [
    Term(
      "frozen LM params",
      ARGUMENT,
      f"{n_lm / 1e6:.1f}M x {cfg.model.dtype}",
      _tree_bytes(lm_params),
      lm_device,
      "heads, KV heads, MLP, vocab split over mesh.model where it divides them",
    ),
    Term(
      "policy params",
      ARGUMENT,
      f"{n_policy / 1e6:.2f}M x float32",
      policy_bytes,
      policy_bytes,
      "replicated",
    ),
    Term(
      "optimizer state",
      ARGUMENT,
      "AdamW mu, nu + grad accumulator",
      _tree_bytes(state) - policy_bytes,  # with the step counter and the rng key
      _tree_bytes(state) - policy_bytes,
      "replicated (optax MultiSteps; with the step counter, rng)",
    ),
  ]
  b, k, c, t = cfg.rl.batch_size, cfg.rl.num_rollouts, cfg.data.context_len, cfg.data.horizon
  add("token blocks", (b, c + t + 1), ("batch", None), 4, note="int32", kind=ARGUMENT)

  # ---- temps, by the part of the step that needs them --------------------------------
  m = model_cfg
  cd = m.compute_dtype.itemsize
  layers, d, f, v = m.num_layers, m.hidden_size, m.intermediate_size, m.vocab_size
  h, hkv, dh = m.num_heads, m.num_kv_heads, m.head_dim
  layer_total, layer_device = 0, 0
  for (path, x), sharding in zip(
    jax.tree_util.tree_flatten_with_path(lm_params)[0], jax.tree.leaves(lm_shardings)
  ):
    if "layers" in jax.tree_util.keystr(path):  # the stacked [L, ...] decoder-layer params
      itemsize = jnp.dtype(x.dtype).itemsize
      layer_total += math.prod(x.shape) // layers * itemsize
      layer_device += math.prod(sharding.shard_shape(x.shape)) // layers * itemsize
  terms.append(
    Term(
      "one layer's weights",
      TEMP,
      f"{layer_total // cd / 1e6:.1f}M x {cfg.model.dtype}",
      layer_total,
      layer_device,
      "the layer scan's slice of the stacked LM weights",
      (PREFILL, DECODE),
    )
  )
  kv_axes = ("layers", "batch", "kv_heads", None, None)
  add(
    "prefix KV cache",
    (layers, b, hkv, c, dh),
    kv_axes,
    cd,
    2,
    "k and v of the C-token prefix, shared by the K schedules",
    (PREFILL, DECODE),
  )
  add(
    "prefill MLP intermediate",
    (b, c, f),
    ("batch", None, "mlp"),
    cd,
    3,
    "gate, up, product of one layer (the layers are a scan)",
    (PREFILL,),
  )
  chunk = min(llama.PREFILL_QUERY_CHUNK, c)
  add(
    "prefill attention tile",
    (b, h, chunk, c),
    ("batch", "heads", None, None),
    4,
    2,
    "fp32 scores and probs of one query chunk",
    (PREFILL,),
  )
  add(
    "prefill hidden states",
    (b, c, d),
    ("batch", None, None),
    cd,
    4,
    "residual, norm, q, attention output of one layer",
    (PREFILL,),
  )
  if setup.settings.criteria == "quest":
    page = setup.settings.page_size
    add(
      "Quest page bounds",
      (layers, b, hkv, c // page, dh),
      kv_axes,
      cd,
      2,
      "min and max of every prefix page",
      (DECODE,),
    )
  add(
    "suffix KV cache",
    (k, layers, b, hkv, t, dh),
    ("schedule", "layers", "batch", "kv_heads", None, None),
    cd,
    2,
    "k and v of the K schedules' T steps",
    (DECODE,),
  )
  add(
    "decode logits",
    (b, k, v),
    ("batch", "schedule", "vocab"),
    cd + 4,
    1,
    f"one step: {cfg.model.dtype} logits + fp32 log-softmax",
    (DECODE,),
  )
  add(
    "decode attention",
    (b, k, h, c + t),
    ("batch", "schedule", "heads", None),
    4,
    3,
    "one step and layer: fp32 scores, keep mask, probs",
    (DECODE,),
  )
  add(
    "decode MLP intermediate",
    (b, k, f),
    ("batch", "schedule", "mlp"),
    cd,
    3,
    "one step and layer: gate, up, product",
    (DECODE,),
  )
  pol = setup.policy
  per_decision = pol.obs_hidden_dim + pol.embed_dim + observation.NUM_SCALARS + 3
  add(
    "rollout records",
    (b, k, t, per_decision),
    ("batch", "schedule", None, None),
    4,
    2,
    "what the update re-scores (hidden, token embedding, scalars, actions), stacked + flattened",
    (DECODE, UPDATE),
  )
  mb = cfg.rl.minibatch_rollouts(t)
  width = (
    pol.obs_input_dim
    + pol.num_layers * (8 * pol.d_model + 2 * pol.mlp_ratio * pol.d_model + 2 * pol.num_heads * t)
    + 3 * pol.num_actions
  )
  add(
    "policy update activations",
    (mb, t, width),
    (None, None, None),
    4,
    1,
    "one minibatch of rollouts in sequence mode, kept for the gradient",
    (UPDATE,),
  )
  terms.append(
    Term(
      "policy grads + updates",
      TEMP,
      "2 x policy params",
      2 * policy_bytes,
      2 * policy_bytes,
      "one minibatch's gradient and AdamW update",
      (UPDATE,),
    )
  )
  if cfg.rl.kl_weight > 0:  # the dense reference decode (§9.2) runs before the rollout
    add(
      "reference prefix KV",
      (layers, b, hkv, c, dh),
      kv_axes,
      cd,
      2,
      "the dense reference decode's own prefill (KL reward)",
      (PREFILL,),
    )
    add(
      "reference logits",
      (b, t, v),
      ("batch", None, "vocab"),
      4,
      1,
      "dense next-token logits of every step (KL reward)",
      (PREFILL, DECODE),
    )
  return Plan(data, model, tuple(terms))


def compiled_memory(
  cfg: ExperimentConfig, model_cfg: ModelConfig, devices: Optional[Sequence] = None
) -> dict[str, int]:
  """XLA's memory analysis of the real train step, compiled for abstract inputs.

  Shardings are the training loop's (state replicated, LM params by
  `lm_param_shardings`, blocks over "data") on a mesh of `devices` (default:
  all). Sizes are per device, in bytes: argument, output, alias (outputs that
  reuse a donated argument, the train state) and temp.
  """
  model_cfg = model_cfg.replace(dtype=cfg.model.dtype)
  mesh = parallel.make_mesh(cfg, devices)
  setup = make_setup(cfg, model_cfg)
  state, lm_params, blocks = abstract_step_inputs(cfg, setup)
  replicated = parallel.replicated(mesh)
  lm_shardings = parallel.lm_param_shardings(mesh, lm_params, model_cfg)
  step = make_train_step(
    setup,
    in_shardings=(replicated, lm_shardings, parallel.batch_sharding(mesh, 2)),
    out_shardings=(replicated, replicated, parallel.batch_sharding(mesh, 3)),
  )
  analysis = step.lower(state, lm_params, blocks).compile().memory_analysis()
  if analysis is None:  # some backends report nothing
    raise ValueError(f"the {jax.default_backend()} backend gives no memory analysis")
  fields = ("argument", "output", "alias", "temp")
  return {name: int(getattr(analysis, f"{name}_size_in_bytes")) for name in fields}


def compiled_peak(sizes: dict[str, int]) -> int:
  """Arguments + outputs that are not donated-argument aliases + temps."""
  return sizes["argument"] + sizes["output"] - sizes["alias"] + sizes["temp"]


def format_table(plan: Plan, compiled: Optional[dict[str, int]] = None) -> str:
  """The plan as a text table per device, with the compiled sizes beside when given.

  Sizes are in GB (1e9 bytes), or MB when the whole step is under 1 GB.
  """
  unit, scale, shown = ("GB", 1e9, "1e9") if plan.total() >= 1e9 else ("MB", 1e6, "1e6")
  name_w = max(len(t.name) for t in plan.terms) + 2
  shape_w = max(len(t.shape) for t in plan.terms) + 2
  lines = [
    f"one GRPO train step, per device of a data={plan.data} x model={plan.model} mesh "
    f"({unit} = {shown} bytes)",
    f"{'term':<{name_w}}{'shape':<{shape_w}}{unit + '/device':>10}  {'live in':<17}note",
  ]
  for t in plan.terms:
    live = ", ".join(t.phases) if t.phases else "(argument)"
    size = t.bytes_per_device / scale
    lines.append(f"{t.name:<{name_w}}{t.shape:<{shape_w}}{size:>10.3f}  {live:<17}{t.note}")
  lines.append("")
  label_w = name_w + shape_w
  rows = [("arguments", plan.total(ARGUMENT))]
  rows += [(f"temps live in {phase}", plan.phase_total(phase)) for phase in PHASES]
  rows += [("temps (the largest part)", plan.total(TEMP)), ("total (estimate)", plan.total())]
  lines += [f"{label:<{label_w}}{value / scale:>10.3f}" for label, value in rows]
  if compiled is not None:
    lines += ["", "compiled train step (XLA memory_analysis, per device):"]
    for label, real, est in (
      ("arguments", compiled["argument"], plan.total(ARGUMENT)),
      ("temps", compiled["temp"], plan.total(TEMP)),
      ("peak", compiled_peak(compiled), plan.total()),
    ):
      ratio = est / real if real else float("nan")
      lines.append(
        f"  {label:<10} compiled {real / scale:9.3f} {unit}   estimate {est / scale:9.3f} {unit}"
        f"   estimate / compiled {ratio:5.2f}"
      )
    lines.append(
      f"  (outputs {compiled['output'] / scale:.3f} {unit}, of which "
      f"{compiled['alias'] / scale:.3f} {unit} reuse the donated train state; "
      "peak = arguments + outputs - aliased + temps)"
    )
  return "\n".join(lines)
