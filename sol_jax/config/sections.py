"""The experiment config sections: frozen, validated, hashable dataclasses.

Defaults are the reference's (docs/method.md §0, SOL-J-FL-T16) except `model.source`,
the small SmolLM2-135M, so that everything runs on a CPU.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

from sol_jax.config.fields import Section, ranged
from sol_jax.config.script_sections import (
  AllocationCfg,
  BenchCfg,
  EvalCfg,
  FrontCfg,
  GenerateCfg,
  LmEvalCfg,
  McCfg,
  PollutionCfg,
  QualityCfg,
  SweepCfg,
)
from sol_jax.efficiency.actions import SPARSITY_CRITERIA, parse_prune_tag, parse_quant_tag

_FL_KEEP = tuple(round(0.1 * i, 1) for i in range(1, 11))
_FL_PRUNE = tuple(f"s{p}" for p in range(40, 101, 5))
_FL_QUANT = tuple(f"q{b}" for b in range(5, 17))


@dataclasses.dataclass(frozen=True)
class ModelCfg(Section):
  """The frozen LM: a registry name, a .gguf file, an HF dir or a Hub id."""

  _name = "model"
  source: str = "smollm2-135m"
  dtype: Literal["float32", "bfloat16"] = "float32"  # training LM dtype (§3)

  def _validate(self):
    self._check(bool(self.source.strip()), "source", "must not be empty")


@dataclasses.dataclass(frozen=True)
class DataCfg(Section):
  """Text sources and block geometry (method §6, §10, §12.1)."""

  _name = "data"
  data_dir: Optional[str] = None  # None: SOL_DATA_DIR, then ../shared/data
  train: str = "train-corpus"
  eval: str = "wikitext2-raw-test"
  cache_dir: Optional[str] = None  # token cache; None: the data module default
  context_len: int = ranged(1024, ">= 1")  # C, dense prefill
  horizon: int = ranged(16, ">= 1")  # T, controlled steps per episode (reference rollout_len)
  shuffle_seed: int = 1234
  train_fraction: float = ranged(0.36, "(0, 1]")  # method Q10: share of blocks used
  eval_batch_size: int = ranged(16, ">= 1")
  eval_batches: int = ranged(7, ">= 0")  # 0: every block of data.eval

  @property
  def block_len(self) -> int:
    return self.context_len + self.horizon + 1

  @property
  def eval_blocks(self) -> Optional[int]:
    """Blocks of data.eval to score; None means all of them."""
    return self.eval_batches * self.eval_batch_size or None


@dataclasses.dataclass(frozen=True)
class ActionsCfg(Section):
  """The joint action grid and the sparsity mechanism (method §4, §5).

  `variant` names a file in sol_jax/configs/actions/ whose keys fill this
  section when loading; the lists here are always the resolved grid.
  """

  _name = "actions"
  variant: Optional[str] = None
  keep_fracs: tuple[float, ...] = ranged(_FL_KEEP, "(0, 1]")  # kappa levels
  struct_prune_choices: tuple[str, ...] = _FL_PRUNE  # s{p}: keep p % of MLP inputs
  quant_choices: tuple[str, ...] = _FL_QUANT  # q{b}: b-bit MLP output, q16 = off
  sparsity_criteria: Literal[SPARSITY_CRITERIA] = "quest"
  page_size: int = ranged(8, ">= 1")  # Quest page S
  sink_tokens: int = ranged(4, ">= 0")  # Ts
  window_tokens: int = ranged(2, ">= 0")  # Tw
  quest_protect_sink_window: bool = False  # method Q2 extension; reference: off

  def _validate(self):
    for field in ("keep_fracs", "struct_prune_choices", "quant_choices"):
      levels = getattr(self, field)
      self._check(len(levels) > 0, field, "needs at least one level")
      self._check(len(set(levels)) == len(levels), field, "has duplicate levels")
    self._check(
      1.0 in self.keep_fracs,
      "keep_fracs",
      "must contain 1.0, the dense level forced on non-effective steps",
    )
    for field, parse in (
      ("struct_prune_choices", parse_prune_tag),
      ("quant_choices", parse_quant_tag),
    ):
      for tag in getattr(self, field):
        try:
          parse(tag)
        except ValueError as e:
          self._check(False, field, str(e))

  @property
  def num_actions(self) -> int:
    return len(self.keep_fracs) * len(self.struct_prune_choices) * len(self.quant_choices)


@dataclasses.dataclass(frozen=True)
class PolicyCfg(Section):
  """The policy transformer (method §8.2)."""

  _name = "policy"
  d_model: int = ranged(512, ">= 1")
  num_heads: int = ranged(4, ">= 1")
  num_layers: int = ranged(1, ">= 1")
  mlp_ratio: int = ranged(4, ">= 1")
  action_embed_dim: int = ranged(32, ">= 1")
  scalar_embed_dim: int = ranged(64, ">= 1")  # scalar encoder 8 -> 64
  budget_hidden_dim: int = ranged(32, ">= 1")  # budget head 3 -> 32 -> A
  max_len: int = ranged(1024, ">= 1")  # learned positions; 512 for 3B/8B/Distil
  temperature: float = ranged(1.3, "> 0")  # sampling and loss (method Q9); eval greedy
  layer_norm_eps: float = ranged(1e-5, "> 0")

  def _validate(self):
    self._check(
      self.d_model % self.num_heads == 0,
      "d_model",
      f"must be divisible by num_heads={self.num_heads}",
    )


@dataclasses.dataclass(frozen=True)
class RLCfg(Section):
  """GRPO rollouts, reward, penalty, advantages and buffering (method §9)."""

  _name = "rl"
  num_rollouts: int = ranged(32, ">= 2")  # K (paper appendix: 16, method Q3)
  batch_size: int = ranged(8, ">= 1")  # B inputs per data batch
  grad_accum: int = ranged(8, ">= 1")  # minibatches per optimizer step (method Q4)
  reward: Literal["loglik", "kl"] = "loglik"  # "kl" means task_w_kl = 1
  task_w_kl: float = ranged(0.0, "[0, 1]")  # r = (1 - w) log p - w KL(dense || compressed)
  reward_agg: Literal["sum", "max", "none"] = "sum"
  reward_gamma: float = ranged(0.85, "[0, 1]")
  grpo_level: Literal["process", "outcome"] = "process"
  grpo_norm: Literal["center", "zscore"] = "center"
  adv_whiten_global: bool = True
  ppo_clip: float = ranged(0.2, "[0, 1)")
  entropy_coef: float = ranged(0.05, ">= 0")
  minibatch_decisions: int = ranged(512, ">= 1")  # minibatch = floor(512 / T) rollouts
  alpha_kappa: float = ranged(100.0, ">= 0")
  alpha_rho: float = ranged(100.0, ">= 0")
  alpha_eta: float = ranged(200.0, ">= 0")
  penalty_tolerance: float = ranged(0.02, ">= 0")  # dead zone of the squared penalty
  # "sampled" (the method): the penalty of each rollout's realized usage is part of
  # its return. "expected" (a variance-reduced deviation, BUILD_NOTES session 8): the
  # returns carry the log-likelihood only and the loss adds the penalty of the
  # policy's *expected* usage on the visited states, differentiated directly.
  penalty_mode: Literal["sampled", "expected"] = "sampled"
  # Target sampling (§9.1): a list wins over a range, a range over the default.
  budget_kappa_list: Optional[tuple[float, ...]] = ranged(None, "[0, 1]")
  budget_kappa_min: Optional[float] = ranged(0.1, "[0, 1]")
  budget_kappa_max: Optional[float] = ranged(1.0, "[0, 1]")
  budget_kappa_default: float = ranged(0.5, "[0, 1]")  # reference C_target
  budget_rho_list: Optional[tuple[float, ...]] = ranged(None, "[0, 1]")
  budget_rho_min: Optional[float] = ranged(0.4, "[0, 1]")
  budget_rho_max: Optional[float] = ranged(1.0, "[0, 1]")
  budget_rho_default: float = ranged(0.6, "[0, 1]")  # reference C_target_prune
  budget_eta_list: Optional[tuple[float, ...]] = ranged(None, "[0, 1]")  # eta = bits/16
  budget_eta_min: Optional[float] = ranged(0.3125, "[0, 1]")
  budget_eta_max: Optional[float] = ranged(1.0, "[0, 1]")
  budget_eta_default: float = ranged(0.4375, "[0, 1]")  # reference C_target_quant_bits 7
  prefill_stale_budget_quirk: bool = False  # method Q1 reproduction switch

  def _validate(self):
    self._check(
      self.reward == "loglik" or self.task_w_kl in (0.0, 1.0),
      "task_w_kl",
      "conflicts with reward='kl' (which means w = 1)",
    )
    self._check(
      self.penalty_mode == "sampled" or self.grpo_norm == "center",
      "penalty_mode",
      "'expected' needs grpo_norm='center' (zscore rescales each group's returns)",
    )
    for axis in ("kappa", "rho", "eta"):
      lst = getattr(self, f"budget_{axis}_list")
      lo, hi = (getattr(self, f"budget_{axis}_{e}") for e in ("min", "max"))
      self._check(lst is None or len(lst) > 0, f"budget_{axis}_list", "must be null or non-empty")
      self._check(
        (lo is None) == (hi is None),
        f"budget_{axis}_min",
        f"set budget_{axis}_min and _max together (or both null)",
      )
      self._check(lo is None or lo <= hi, f"budget_{axis}_min", f"exceeds max={hi}")

  @property
  def kl_weight(self) -> float:
    """The w of method §9.2; > 0 needs the dense reference decode."""
    return 1.0 if self.reward == "kl" else self.task_w_kl

  def minibatch_rollouts(self, horizon: int) -> int:
    """Rollout sequences per minibatch, floor(512 / T) officially (method §9.7)."""
    return max(1, self.minibatch_decisions // horizon)


@dataclasses.dataclass(frozen=True)
class OptimCfg(Section):
  """AdamW with PyTorch defaults, constant LR, global-norm clip (method §9.7)."""

  _name = "optim"
  lr: float = ranged(1e-4, "> 0")
  b1: float = ranged(0.9, "[0, 1)")
  b2: float = ranged(0.999, "[0, 1)")
  eps: float = ranged(1e-8, "> 0")
  weight_decay: float = ranged(0.01, ">= 0")  # optax's default is 1e-4: set explicitly
  max_grad_norm: float = ranged(2.0, "> 0")


@dataclasses.dataclass(frozen=True)
class TrainCfg(Section):
  """Run control. One epoch only, as in the reference."""

  _name = "train"
  seed: int = 1234
  num_steps: Optional[int] = ranged(None, ">= 1")  # data batches; None: one epoch
  log_every: int = ranged(10, ">= 1")
  checkpoint_every: Optional[int] = ranged(None, ">= 1")  # None: every 10 % of the run
  run_dir: Optional[str] = None  # None: runs/<name>
  # A fresh run (no checkpoint in run_dir) may start from a shipped policy
  # (name under policies/ or folder): its params, and the data position after its
  # `step` batches; the optimizer starts fresh (Adam moments are not shipped).
  init_from: Optional[str] = None
  # A fresh policy's budget head: "torch" (the reference's PyTorch init, near-uniform
  # whatever the targets) or "max_entropy" (fitted before training so the initial
  # policy meets the sampled targets in expectation; `policy.budget_prior`).
  budget_head_init: Literal["torch", "max_entropy"] = "torch"
  keep_checkpoints: bool = True  # false: write no checkpoints (smoke runs)
  max_to_keep: Optional[int] = ranged(None, ">= 1")  # None: keep all
  # > 0: a jax.profiler trace of this many steps after the first (which compiles),
  # written to <run_dir>/tb (TensorBoard's profile tab).
  profile_steps: int = ranged(0, ">= 0")


@dataclasses.dataclass(frozen=True)
class MeshCfg(Section):
  """Device mesh axis sizes; -1 on `data` means all remaining devices."""

  _name = "mesh"
  data: int = -1
  model: int = ranged(1, ">= 1")

  def _validate(self):
    self._check(self.data == -1 or self.data >= 1, "data", "must be -1 or >= 1")

  def axis_sizes(self, num_devices: int) -> tuple[int, int]:
    """(data, model) sizes over `num_devices`; data=-1 takes every device the model axis leaves."""
    if num_devices % self.model:
      raise ValueError(
        f"mesh.model={self.model} does not divide the {num_devices} devices; "
        "pick a divisor of the device count"
      )
    data = num_devices // self.model if self.data == -1 else self.data
    if data * self.model != num_devices:
      raise ValueError(
        f"mesh data={data} x model={self.model} = {data * self.model} devices, "
        f"but {num_devices} are available; set mesh.data=-1 to use all"
      )
    return data, self.model


@dataclasses.dataclass(frozen=True)
class ExperimentConfig(Section):
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
  sweep: SweepCfg = dataclasses.field(default_factory=SweepCfg)
  front: FrontCfg = dataclasses.field(default_factory=FrontCfg)
  generate: GenerateCfg = dataclasses.field(default_factory=GenerateCfg)
  mc: McCfg = dataclasses.field(default_factory=McCfg)
  lmeval: LmEvalCfg = dataclasses.field(default_factory=LmEvalCfg)
  pollution: PollutionCfg = dataclasses.field(default_factory=PollutionCfg)
  quality: QualityCfg = dataclasses.field(default_factory=QualityCfg)
  allocation: AllocationCfg = dataclasses.field(default_factory=AllocationCfg)
  bench: BenchCfg = dataclasses.field(default_factory=BenchCfg)

  def _validate(self):
    t = self.data.horizon
    for key, limit in (
      ("policy.max_len", self.policy.max_len),
      ("rl.minibatch_decisions", self.rl.minibatch_decisions),
    ):
      if t > limit:  # one policy position per step; >= 1 rollout per minibatch
        raise ValueError(f"config data.horizon={t} exceeds {key}={limit}")

  @property
  def block_len(self) -> int:
    return self.data.block_len

  @property
  def rollouts_per_batch(self) -> int:
    return self.rl.batch_size * self.rl.num_rollouts


def validate_mesh(cfg: ExperimentConfig, num_devices: int) -> tuple[int, int]:
  """Resolves (data, model) mesh sizes; raises if the batch cannot be split."""
  data, model = cfg.mesh.axis_sizes(num_devices)
  if cfg.rl.batch_size % data:
    raise ValueError(
      f"rl.batch_size={cfg.rl.batch_size} must be divisible by the data "
      f"axis ({data}) so each device holds whole inputs with their K "
      "rollouts; change rl.batch_size or mesh.data"
    )
  minibatch = cfg.rl.minibatch_rollouts(cfg.data.horizon)
  if minibatch % data:
    raise ValueError(
      f"a minibatch of floor(rl.minibatch_decisions / T) = "
      f"{minibatch} rollouts does not split over the data "
      f"axis ({data}); change rl.minibatch_decisions or mesh.data"
    )
  return data, model
