"""Typed experiment configs: frozen dataclasses, YAML files, key=value overrides.

Defaults are the spec's (SOL_SPEC.md §0, SOL-J-FL-T16) except `model.source`,
the small SmolLM2-135M, so that everything runs on a CPU.

A YAML file may name parents with `base: other.yaml` (or a list, or
`defaults: [...]`), relative to itself; parents merge first, field by field,
and lists replace. `actions.variant: 3L` expands experiments/configs/actions/
3L.yaml into the layer that names it; that layer's own `actions.*` keys win.

Overrides are `section.field=value` strings parsed with `yaml.safe_load`
(`rl.num_rollouts=32`, `actions.keep_fracs=[0.1,1.0]`). Unknown keys, wrong
types and out-of-range values raise one ValueError saying what is valid.

The reference's inert keys (spec §15, `_INERT`) are NOT present: always GRPO,
one epoch, one pass per buffer, no reference-policy KL, no value loss, no
dropout, no eval logit biases. Its inert `horizon` is not our `data.horizon`,
which is its `rollout_len` (T).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import pathlib
import re
import typing
from typing import Any, Literal, Mapping, Optional, Sequence

import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "experiments" / "configs"
ACTIONS_DIR = CONFIG_DIR / "actions"

_FL_KEEP = tuple(round(0.1 * i, 1) for i in range(1, 11))
_FL_PRUNE = tuple(f"s{p}" for p in range(40, 101, 5))
_FL_QUANT = tuple(f"q{b}" for b in range(5, 17))
_PRUNE_TAG = re.compile(r"^s(\d+(?:\.\d+)?)$")
_QUANT_TAG = re.compile(r"^q(\d+)$")

# Reference keys (spec §15) that this package deliberately does not have.
_INERT = frozenset((
    "probe_metric future_mask_rule eps_rel eps_acc margin_soft_tau "
    "score_soft_tau algo grpo_quality_topq tr_kl_coef value_coef gamma "
    "gae_lambda ppo_epochs epochs policy_tbptt_k enable_prune_quant "
    "dataset_pct max_blocks eval_every_updates relevancy_tier kl_pi_ref_coef "
    "dropout").split())
# Reference spellings a researcher may type, mapped to our keys.
_ALIASES = {
    "rollout_len": "data.horizon", "horizon": "data.horizon",
    "pi_temperature": "policy.temperature",
    "ppo_minibatch_size": "rl.minibatch_decisions",
    "ppo_target_batch_size": "rl.target_buffer_decisions",
    "C_target": "rl.budget_kappa_default", "C_target_prune": "rl.budget_rho_default",
    "C_target_quant_bits": "rl.budget_eta_default (as bits/16)",
}


def _r(default: Any, rule: str) -> Any:
  """A field whose value (or each item) satisfies ">= 1", "> 0", "[0, 1)"..."""
  return dataclasses.field(default=default, metadata={"rule": rule})


def _satisfies(v: float, rule: str) -> bool:
  if rule.startswith(">="):
    return v >= float(rule[2:])
  if rule.startswith(">"):
    return v > float(rule[1:])
  lo, hi = (float(x) for x in rule[1:-1].split(","))
  return ((lo <= v) if rule[0] == "[" else (lo < v)) and (
      (v <= hi) if rule[-1] == "]" else (v < hi))


class _Section:
  """Mixin: coerces field types and checks ranges after construction."""
  _name = ""

  def __post_init__(self):
    hints = typing.get_type_hints(type(self))
    for f in dataclasses.fields(self):
      where = f"{self._name}.{f.name}" if self._name else f.name
      value = _coerce(getattr(self, f.name), hints[f.name], where)
      object.__setattr__(self, f.name, value)
      rule = f.metadata.get("rule")
      items = value if isinstance(value, tuple) else () if value is None else (value,)
      if rule and not all(_satisfies(v, rule) for v in items):
        want = f"in {rule}" if rule[0] in "[(" else rule
        raise ValueError(f"config {where}={value!r}: must be {want}")
    self._validate()

  def _validate(self):
    pass

  def _check(self, ok: bool, field: str, why: str):
    if not ok:
      raise ValueError(f"config {self._name}.{field}={getattr(self, field)!r}: {why}")


@dataclasses.dataclass(frozen=True)
class ModelCfg(_Section):
  """The frozen LM: a registry name, a .gguf file, an HF dir or a Hub id."""
  _name = "model"
  source: str = "smollm2-135m"
  dtype: Literal["float32", "bfloat16"] = "float32"  # training LM dtype (§3)

  def _validate(self):
    self._check(bool(self.source.strip()), "source", "must not be empty")


@dataclasses.dataclass(frozen=True)
class DataCfg(_Section):
  """Text sources and block geometry (spec §6, §10, §12.1)."""
  _name = "data"
  data_dir: Optional[str] = None  # None: SOL_DATA_DIR, then ../shared/data
  train: str = "train-corpus"
  eval: str = "wikitext2-raw-test"
  cache_dir: Optional[str] = None  # token cache; None: the data module default
  context_len: int = _r(1024, ">= 1")  # C, dense prefill
  horizon: int = _r(16, ">= 1")  # T, controlled steps per episode (reference rollout_len)
  shuffle_seed: int = 1234
  train_fraction: float = _r(0.36, "(0, 1]")  # spec Q10: share of blocks used
  eval_batch_size: int = _r(16, ">= 1")
  eval_batches: int = _r(7, ">= 1")

  @property
  def block_len(self) -> int:
    return self.context_len + self.horizon + 1


@dataclasses.dataclass(frozen=True)
class ActionsCfg(_Section):
  """The joint action grid and the sparsity mechanism (spec §4, §5).

  `variant` names a file in experiments/configs/actions/ whose keys fill this
  section when loading; the lists here are always the resolved grid.
  """
  _name = "actions"
  variant: Optional[str] = None
  keep_fracs: tuple[float, ...] = _r(_FL_KEEP, "(0, 1]")  # kappa levels
  struct_prune_choices: tuple[str, ...] = _FL_PRUNE  # s{p}: keep p % of MLP inputs
  quant_choices: tuple[str, ...] = _FL_QUANT  # q{b}: b-bit MLP output, q16 = off
  sparsity_criteria: Literal["quest", "recency", "relevancy"] = "quest"
  page_size: int = _r(8, ">= 1")  # Quest page S
  sink_tokens: int = _r(4, ">= 0")  # Ts
  window_tokens: int = _r(2, ">= 0")  # Tw
  quest_protect_sink_window: bool = False  # spec Q2 extension; reference: off

  def _validate(self):
    for field in ("keep_fracs", "struct_prune_choices", "quant_choices"):
      levels = getattr(self, field)
      self._check(len(levels) > 0, field, "needs at least one level")
      self._check(len(set(levels)) == len(levels), field, "has duplicate levels")
    self._check(1.0 in self.keep_fracs, "keep_fracs",
                "must contain 1.0, the dense level forced on non-effective steps")
    for tag in self.struct_prune_choices:
      m = _PRUNE_TAG.match(tag)
      self._check(bool(m) and 0.0 < float(m.group(1)) <= 100.0, "struct_prune_choices",
                  f"bad tag {tag!r}; write s<p> with 0 < p <= 100, e.g. s40")
    for tag in self.quant_choices:
      m = _QUANT_TAG.match(tag)
      self._check(bool(m) and 2 <= int(m.group(1)) <= 16, "quant_choices",
                  f"bad tag {tag!r}; write q<b> with 2 <= b <= 16, e.g. q5")

  @property
  def num_actions(self) -> int:
    return len(self.keep_fracs) * len(self.struct_prune_choices) * len(self.quant_choices)


@dataclasses.dataclass(frozen=True)
class PolicyCfg(_Section):
  """The policy transformer (spec §8.2)."""
  _name = "policy"
  d_model: int = _r(512, ">= 1")
  num_heads: int = _r(4, ">= 1")
  num_layers: int = _r(1, ">= 1")
  mlp_ratio: int = _r(4, ">= 1")
  action_embed_dim: int = _r(32, ">= 1")
  scalar_embed_dim: int = _r(64, ">= 1")  # scalar encoder 8 -> 64
  budget_hidden_dim: int = _r(32, ">= 1")  # budget head 3 -> 32 -> A
  max_len: int = _r(1024, ">= 1")  # learned positions; 512 for 3B/8B/Distil
  temperature: float = _r(1.3, "> 0")  # sampling and loss (spec Q9); eval greedy
  layer_norm_eps: float = _r(1e-5, "> 0")

  def _validate(self):
    self._check(self.d_model % self.num_heads == 0, "d_model",
                f"must be divisible by num_heads={self.num_heads}")


@dataclasses.dataclass(frozen=True)
class RLCfg(_Section):
  """GRPO rollouts, reward, penalty, advantages and buffering (spec §9)."""
  _name = "rl"
  num_rollouts: int = _r(32, ">= 2")  # K (paper appendix: 16, spec Q3)
  batch_size: int = _r(8, ">= 1")  # B inputs per data batch
  grad_accum: int = _r(8, ">= 1")  # minibatches per optimizer step (spec Q4)
  reward: Literal["loglik", "kl"] = "loglik"  # "kl" means task_w_kl = 1
  task_w_kl: float = _r(0.0, "[0, 1]")  # r = (1 - w) log p - w KL(dense || compressed)
  reward_agg: Literal["sum", "max", "none"] = "sum"
  reward_gamma: float = _r(0.85, "[0, 1]")
  grpo_level: Literal["process", "outcome"] = "process"
  grpo_norm: Literal["center", "zscore"] = "center"
  adv_whiten_global: bool = True
  ppo_clip: float = _r(0.2, "[0, 1)")
  entropy_coef: float = _r(0.05, ">= 0")
  minibatch_decisions: int = _r(512, ">= 1")  # minibatch = floor(512 / T) rollouts
  target_buffer_decisions: int = _r(2048, ">= 1")
  alpha_kappa: float = _r(100.0, ">= 0")
  alpha_rho: float = _r(100.0, ">= 0")
  alpha_eta: float = _r(200.0, ">= 0")
  penalty_tolerance: float = _r(0.02, ">= 0")  # dead zone of the squared penalty
  # Target sampling (§9.1): a list wins over a range, a range over the default.
  budget_kappa_list: Optional[tuple[float, ...]] = _r(None, "[0, 1]")
  budget_kappa_min: Optional[float] = _r(0.1, "[0, 1]")
  budget_kappa_max: Optional[float] = _r(1.0, "[0, 1]")
  budget_kappa_default: float = _r(0.5, "[0, 1]")  # reference C_target
  budget_rho_list: Optional[tuple[float, ...]] = _r(None, "[0, 1]")
  budget_rho_min: Optional[float] = _r(0.4, "[0, 1]")
  budget_rho_max: Optional[float] = _r(1.0, "[0, 1]")
  budget_rho_default: float = _r(0.6, "[0, 1]")  # reference C_target_prune
  budget_eta_list: Optional[tuple[float, ...]] = _r(None, "[0, 1]")  # eta = bits/16
  budget_eta_min: Optional[float] = _r(0.3125, "[0, 1]")
  budget_eta_max: Optional[float] = _r(1.0, "[0, 1]")
  budget_eta_default: float = _r(0.4375, "[0, 1]")  # reference C_target_quant_bits 7
  prefill_stale_budget_quirk: bool = False  # spec Q1 reproduction switch

  def _validate(self):
    self._check(self.reward == "loglik" or self.task_w_kl in (0.0, 1.0),
                "task_w_kl", "conflicts with reward='kl' (which means w = 1)")
    for axis in ("kappa", "rho", "eta"):
      lst = getattr(self, f"budget_{axis}_list")
      lo, hi = (getattr(self, f"budget_{axis}_{e}") for e in ("min", "max"))
      self._check(lst is None or len(lst) > 0, f"budget_{axis}_list",
                  "must be null or non-empty")
      self._check((lo is None) == (hi is None), f"budget_{axis}_min",
                  f"set budget_{axis}_min and _max together (or both null)")
      self._check(lo is None or lo <= hi, f"budget_{axis}_min", f"exceeds max={hi}")

  @property
  def kl_weight(self) -> float:
    """The w of spec §9.2; > 0 needs the dense reference decode."""
    return 1.0 if self.reward == "kl" else self.task_w_kl


@dataclasses.dataclass(frozen=True)
class OptimCfg(_Section):
  """AdamW with PyTorch defaults, constant LR, global-norm clip (spec §9.7)."""
  _name = "optim"
  lr: float = _r(1e-4, "> 0")
  b1: float = _r(0.9, "[0, 1)")
  b2: float = _r(0.999, "[0, 1)")
  eps: float = _r(1e-8, "> 0")
  weight_decay: float = _r(0.01, ">= 0")  # optax's default is 1e-4: set explicitly
  max_grad_norm: float = _r(2.0, "> 0")


@dataclasses.dataclass(frozen=True)
class TrainCfg(_Section):
  """Run control. One epoch only, as in the reference."""
  _name = "train"
  seed: int = 1234
  num_steps: Optional[int] = _r(None, ">= 1")  # data batches; None: one epoch
  log_every: int = _r(10, ">= 1")
  checkpoint_every: Optional[int] = _r(None, ">= 1")  # None: every 10 % of the run
  run_dir: Optional[str] = None  # None: runs/<name>
  keep_checkpoints: bool = True  # false: write no checkpoints (smoke runs)
  max_to_keep: Optional[int] = _r(None, ">= 1")  # None: keep all


@dataclasses.dataclass(frozen=True)
class MeshCfg(_Section):
  """Device mesh axis sizes; -1 on `data` means all remaining devices."""
  _name = "mesh"
  data: int = -1
  model: int = _r(1, ">= 1")

  def _validate(self):
    self._check(self.data == -1 or self.data >= 1, "data", "must be -1 or >= 1")


@dataclasses.dataclass(frozen=True)
class EvalCfg(_Section):
  """Perplexity evaluation and the budget sweep (spec §12.1-12.2)."""
  _name = "eval"
  dtype: Literal["float32", "bfloat16"] = "bfloat16"  # eval reloads in bf16
  greedy: bool = True
  targets: tuple[tuple[float, float, float], ...] = ()  # (kappa, rho, bits); () = sweep
  sweep_kappa: tuple[float, ...] = _r(tuple(round(0.15 + 0.1 * i, 2) for i in range(9)),
                                      "[0, 1]")
  sweep_rho: tuple[float, ...] = _r(tuple(round(0.4 + 0.1 * i, 1) for i in range(7)),
                                    "[0, 1]")
  sweep_bits: tuple[int, ...] = _r(tuple(range(5, 14)), "[2, 16]")
  fixed_baseline: bool = True
  random_trials: int = _r(1, ">= 0")  # trial i is seeded random_seed + i
  random_seed: int = 1234

  def _validate(self):
    for kappa, rho, bits in self.targets:
      self._check(0.0 <= kappa <= 1.0 and 0.0 <= rho <= 1.0 and 2 <= bits <= 16, "targets",
                  f"{(kappa, rho, bits)}: need kappa, rho in [0, 1] and bits in [2, 16]")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig(_Section):
  """One experiment. Frozen and hashable (usable as a static jit argument)."""
  name: str = "default"
  description: str = ""
  model: ModelCfg = dataclasses.field(default_factory=ModelCfg)
  data: DataCfg = dataclasses.field(default_factory=DataCfg)
  actions: ActionsCfg = dataclasses.field(default_factory=ActionsCfg)
  policy: PolicyCfg = dataclasses.field(default_factory=PolicyCfg)
  rl: RLCfg = dataclasses.field(default_factory=RLCfg)
  optim: OptimCfg = dataclasses.field(default_factory=OptimCfg)
  train: TrainCfg = dataclasses.field(default_factory=TrainCfg)
  mesh: MeshCfg = dataclasses.field(default_factory=MeshCfg)
  eval: EvalCfg = dataclasses.field(default_factory=EvalCfg)

  def _validate(self):
    t = self.data.horizon
    for key, limit in (("policy.max_len", self.policy.max_len),
                       ("rl.minibatch_decisions", self.rl.minibatch_decisions)):
      if t > limit:  # one policy position per step; >= 1 rollout per minibatch
        raise ValueError(f"config data.horizon={t} exceeds {key}={limit}")

  @property
  def block_len(self) -> int:
    return self.data.block_len

  @property
  def minibatch_rollouts(self) -> int:
    """Rollout sequences per minibatch, floor(512 / T) officially."""
    return self.rl.minibatch_decisions // self.data.horizon

  @property
  def rollouts_per_batch(self) -> int:
    return self.rl.batch_size * self.rl.num_rollouts


_SECTIONS = {f.name: f.default_factory for f in dataclasses.fields(ExperimentConfig)
             if f.default_factory is not dataclasses.MISSING}


def _coerce(value: Any, tp: Any, where: str) -> Any:
  """Returns `value` converted to the annotated type, or raises ValueError."""
  origin, args = typing.get_origin(tp), typing.get_args(tp)
  bad = lambda want: ValueError(
      f"config {where}: expected {want}, got {value!r} ({type(value).__name__})")
  if dataclasses.is_dataclass(tp):
    if isinstance(value, tp):
      return value
    raise bad(tp.__name__)
  if origin is typing.Union:
    if value is None and type(None) in args:
      return None
    (inner,) = [a for a in args if a is not type(None)]
    return _coerce(value, inner, where)
  if origin is Literal:
    if value in args:
      return value
    close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"config {where}={value!r} is not one of "
                     f"{', '.join(map(repr, args))}{hint}")
  if origin is tuple:
    if not isinstance(value, (list, tuple)):
      raise bad("a list such as [a, b]")
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if len(value) != len(args):
      raise bad(f"a list of {len(args)} items")
    return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
  number = isinstance(value, (int, float)) and not isinstance(value, bool)
  if tp is bool:
    if isinstance(value, bool):
      return value
    raise bad("true or false")
  if tp is int:
    if number and isinstance(value, int):
      return value
    raise bad("an integer")
  if tp is float:
    if isinstance(value, str):
      try:  # YAML 1.1 reads 1e-4 (no dot) as a string.
        value, number = float(value), True
      except ValueError:
        pass
    if number and not math.isnan(value):
      return float(value)
    raise bad("a number")
  if tp is str:
    if isinstance(value, str) or number:
      return str(value)
    raise bad("a string")
  raise TypeError(f"config {where}: unsupported annotation {tp}")


def _unknown_key(key: str, valid: Sequence[str], where: str) -> ValueError:
  if key in _INERT:
    why = (f"{key!r} is an inert key of the reference implementation "
           "(SOL_SPEC.md §15) and is not supported by sol_jax")
  elif key in _ALIASES:
    why = f"unknown key {key!r}; the reference's {key} is {_ALIASES[key]}"
  else:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    why = f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
  return ValueError(f"config {where}: {why}. Valid keys: {', '.join(valid)}")


def config_from_dict(raw: Mapping[str, Any]) -> ExperimentConfig:
  """Builds and validates a config from a nested mapping (no `base` keys)."""
  if not isinstance(raw, Mapping):
    raise ValueError(f"config must be a mapping of sections, got {raw!r}")
  raw = _expand_variant(raw)
  top = [f.name for f in dataclasses.fields(ExperimentConfig)]
  kwargs = {}
  for key, value in raw.items():
    if key not in top:
      raise _unknown_key(str(key), top, "top level")
    cls = _SECTIONS.get(key)
    if cls is None:
      kwargs[key] = value
      continue
    value = {} if value is None else value
    if not isinstance(value, Mapping):
      raise ValueError(f"config section {key!r} must be a mapping, got {value!r}")
    valid = [f.name for f in dataclasses.fields(cls)]
    for k in value:
      if k not in valid:
        raise _unknown_key(str(k), valid, f"section {key!r}")
    kwargs[key] = cls(**value)
  return ExperimentConfig(**kwargs)


def config_to_dict(cfg: Any) -> Any:
  """Plain nested dict (tuples become lists) that `config_from_dict` accepts."""
  if dataclasses.is_dataclass(cfg):
    return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
  if isinstance(cfg, (list, tuple)):
    return [config_to_dict(x) for x in cfg]
  return cfg


class _Dumper(yaml.SafeDumper):
  """Block-style sections with flow-style (one-line) lists."""


_Dumper.add_representer(
    list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def config_to_yaml(cfg: ExperimentConfig) -> str:
  """The resolved config as YAML (log it as TensorBoard text; it reloads equal)."""
  return yaml.dump(config_to_dict(cfg), Dumper=_Dumper, sort_keys=False, width=100)


def config_to_flat_dict(cfg: ExperimentConfig) -> dict[str, Any]:
  """`section.field -> scalar` (lists as strings), e.g. for TensorBoard hparams."""
  flat = {}
  for key, value in config_to_dict(cfg).items():
    items = value.items() if isinstance(value, dict) else [(None, value)]
    for field, v in items:
      name = f"{key}.{field}" if field else key
      flat[name] = str(v) if isinstance(v, list) or v is None else v
  return flat


def _read_yaml(path: pathlib.Path) -> dict:
  try:
    data = yaml.safe_load(path.read_text())
  except yaml.YAMLError as e:
    raise ValueError(f"config file {path} is not valid YAML: {e}") from None
  if data is None:
    return {}
  if not isinstance(data, dict):
    raise ValueError(f"config file {path} must hold a mapping, got {type(data).__name__}")
  return data


def _merge(base: Mapping, top: Mapping) -> dict:
  """Two-level merge: sections merge field by field, everything else replaces."""
  out = dict(base)
  for k, v in top.items():
    if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
      out[k] = {**out[k], **v}
    else:
      out[k] = v
  return out


def _variant_file(name: str) -> pathlib.Path:
  path = pathlib.Path(name)
  if path.suffix in (".yaml", ".yml") and path.is_file():
    return path
  path = ACTIONS_DIR / f"{name}.yaml"
  if not path.is_file():
    have = sorted(p.stem for p in ACTIONS_DIR.glob("*.yaml"))
    raise FileNotFoundError(
        f"config actions.variant={name!r}: no file {path}. Available variants: "
        f"{', '.join(have) or '(none)'}; or give the lists explicitly.")
  return path


def _expand_variant(layer: Mapping) -> Mapping:
  """Fills `actions` from its named variant file; the layer's own keys win."""
  actions = layer.get("actions")
  if not isinstance(actions, Mapping) or actions.get("variant") is None:
    return layer
  path = _variant_file(str(actions["variant"]))
  grid = _read_yaml(path)
  valid = [f.name for f in dataclasses.fields(ActionsCfg) if f.name != "variant"]
  for k in grid:
    if k not in valid:
      raise _unknown_key(str(k), valid, f"action variant file {path}")
  return {**layer, "actions": {**grid, **actions}}


def resolve_config_path(path: str | pathlib.Path) -> pathlib.Path:
  """An existing file, or a name under experiments/configs (`.yaml` optional)."""
  p = pathlib.Path(path)
  for cand in (p, CONFIG_DIR / p, CONFIG_DIR / f"{p}.yaml"):
    if cand.is_file():
      return cand
  have = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
  raise FileNotFoundError(f"config file {path} not found. Pass a YAML path or one of: "
                          f"{', '.join(have)}")


def _load_layers(path: pathlib.Path, chain: tuple[pathlib.Path, ...]) -> dict:
  path = path.resolve()
  if path in chain:
    raise ValueError("config inheritance cycle: "
                     + " -> ".join(str(p) for p in chain + (path,)))
  raw = _read_yaml(path)
  parents = []
  for key in ("base", "defaults"):
    v = raw.pop(key, None)
    parents += [v] if isinstance(v, str) else list(v or [])
  merged: dict = {}
  for parent in parents:
    p = pathlib.Path(str(parent))
    p = p if p.is_absolute() else path.parent / p
    if not p.is_file() and p.with_suffix(".yaml").is_file():
      p = p.with_suffix(".yaml")
    if not p.is_file():
      raise FileNotFoundError(f"config {path}: base file {parent!r} not found (looked at {p})")
    merged = _merge(merged, _load_layers(p, chain + (path,)))
  return _merge(merged, _expand_variant(raw))


def parse_overrides(overrides: Sequence[str]) -> dict:
  """`['rl.num_rollouts=32', ...]` -> a nested dict layer (values via YAML)."""
  layer: dict = {}
  for item in overrides:
    key, sep, text = item.lstrip("-").partition("=")
    key = key.strip()
    if not sep or not key:
      raise ValueError(f"override {item!r} must look like section.field=value, "
                       "e.g. rl.num_rollouts=16")
    try:
      value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
      raise ValueError(f"override {item!r}: value is not valid YAML: {e}") from None
    parts = key.split(".")
    if len(parts) > 2:
      raise ValueError(f"override {item!r}: keys have at most two levels, section.field")
    layer = _merge(layer, {key: value} if len(parts) == 1 else {parts[0]: {parts[1]: value}})
  return layer


def apply_overrides(cfg: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
  """Returns `cfg` with `section.field=value` overrides applied and validated."""
  layer = _expand_variant(parse_overrides(overrides))
  return config_from_dict(_merge(config_to_dict(cfg), layer))


def load_config(path: str | pathlib.Path,
                overrides: Sequence[str] = ()) -> ExperimentConfig:
  """Loads a YAML config with its bases, applies overrides, validates."""
  merged = _load_layers(resolve_config_path(path), ())
  merged = _merge(merged, _expand_variant(parse_overrides(overrides)))
  return config_from_dict(merged)


def config_from_argv(argv: Sequence[str]) -> ExperimentConfig:
  """`[config.yaml, key=value, ...]` -> config; no file: defaults + overrides."""
  if argv and "=" not in argv[0]:
    return load_config(argv[0], argv[1:])
  return apply_overrides(ExperimentConfig(), argv)


def validate_mesh(cfg: ExperimentConfig, num_devices: int) -> tuple[int, int]:
  """Resolves (data, model) mesh sizes; raises if the batch cannot be split."""
  model = cfg.mesh.model
  if num_devices % model:
    raise ValueError(f"mesh.model={model} does not divide the {num_devices} devices")
  data = num_devices // model if cfg.mesh.data == -1 else cfg.mesh.data
  if data * model != num_devices:
    raise ValueError(f"mesh data={data} x model={model} = {data * model} devices, "
                     f"but {num_devices} are available; set mesh.data=-1 to use all")
  if cfg.rl.batch_size % data:
    raise ValueError(f"rl.batch_size={cfg.rl.batch_size} must be divisible by the data "
                     f"axis ({data}) so each device holds whole inputs with their K "
                     "rollouts; change rl.batch_size or mesh.data")
  if cfg.minibatch_rollouts % data:
    raise ValueError(f"a minibatch of floor(rl.minibatch_decisions / T) = "
                     f"{cfg.minibatch_rollouts} rollouts does not split over the data "
                     f"axis ({data}); change rl.minibatch_decisions or mesh.data")
  return data, model
