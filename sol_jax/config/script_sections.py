"""Config sections read by the experiment scripts: eval, sweep, front, generate, mc and bench.

Every setting of experiments/*.py is a key here or in the other sections
(the model, data, grid, B, K, C, T), so a run is described by its config
alone; a script keeps only `--out` and `--help` as flags.

Budget triples are (κ*, ρ*, η*) with η = bits/16. A third value above 1 is
read as a bit-width in [2, 16] and stored as bits/16 (so `[0.5, 0.7, 8]` and
`[0.5, 0.7, 0.5]` are the same budget).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

from sol_jax.config.fields import Section, ranged
from sol_jax.efficiency.actions import MAX_BITS, MIN_BITS, variant_path

Budgets = tuple[tuple[float, float, float], ...]
DECODE_MODES = ("dense", "quest", "controlled", "policy")


def _normalize_budgets(section: Section, field: str) -> None:
  """Checks every (κ*, ρ*, η*) of `field` and stores bit-widths as η = bits/16."""
  triples = getattr(section, field)
  section._check(len(triples) > 0, field, "needs at least one [kappa, rho, eta] triple")
  out = []
  for kappa, rho, eta in triples:
    if eta > 1.0:
      section._check(
        eta == int(eta) and MIN_BITS <= eta <= MAX_BITS,
        field,
        f"{[kappa, rho, eta]}: eta {eta} is neither in (0, 1] nor a bit-width "
        f"in [{MIN_BITS}, {MAX_BITS}]",
      )
      eta = eta / MAX_BITS
    section._check(
      0.0 < kappa <= 1.0 and 0.0 < rho <= 1.0,
      field,
      f"{[kappa, rho, eta]}: kappa and rho must be in (0, 1]",
    )
    section._check(eta > 0.0, field, f"{[kappa, rho, eta]}: eta must be in (0, 1]")
    out.append((kappa, rho, eta))
  object.__setattr__(section, field, tuple(out))


@dataclasses.dataclass(frozen=True)
class EvalCfg(Section):
  """Evaluation: dense_eval, eval_policy and training_curves (method §12.1)."""

  _name = "eval"
  dtype: Literal["float32", "bfloat16"] = "bfloat16"  # eval reloads the LM in bf16
  # eval_policy: the requested budgets the policy is conditioned on, one column each.
  budgets: Budgets = ((0.3, 0.6, 0.5), (0.6, 0.8, 0.6), (0.9, 1.0, 0.9))
  # The one-number budget knob: values in [0, 1] replace `budgets` with the
  # targets at those positions along `knob_path` (evaluation.knob; None: the
  # grid's diagonal from its lowest levels to dense).
  knob: Optional[tuple[float, ...]] = ranged(None, "[0, 1]")
  knob_path: Optional[Budgets] = None
  greedy: bool = True  # eval_policy: argmax actions (method §12.1); false samples
  random_seed: int = 1234  # random schedules (trial i: seed + i); a sampling policy
  progress: bool = True  # progress bars
  hf_check: bool = True  # dense_eval: cross-check the PPL with transformers
  curve_bins: int = ranged(8, ">= 1")  # training_curves: rows of the binned table
  # training_curves: other runs to overlay (penalty, entropy, gaps per data batch);
  # "a+b" joins run dirs that continue one another (e.g. a warm-started run).
  curve_compare: Optional[tuple[str, ...]] = None
  # eval_policy: a shipped policy (a name under policies/, e.g. smollm2_3L_cpu/seed1,
  # or a folder) evaluated with its saved config; None: train.run_dir's latest checkpoint.
  policy: Optional[str] = None
  # Without eval.policy: this checkpoint step of train.run_dir instead of the latest
  # (compare runs at the same number of data batches).
  checkpoint_step: Optional[int] = ranged(None, ">= 0")

  def _validate(self):
    _normalize_budgets(self, "budgets")
    self._check(self.knob is None or len(self.knob) > 0, "knob", "must be null or non-empty")
    if self.knob_path is not None:
      self._check(len(self.knob_path) >= 2, "knob_path", "needs at least two anchor triples")
      _normalize_budgets(self, "knob_path")


@dataclasses.dataclass(frozen=True)
class SweepCfg(Section):
  """The static-schedule sweep of experiments.static_pareto (method §12.3-12.5)."""

  _name = "sweep"
  pages: tuple[int, ...] = ranged((4, 8), ">= 1")  # Quest page sizes, one sweep each
  blocks: int = ranged(64, ">= 1")  # test blocks of data.eval (reference protocol: 112)
  select_blocks: int = ranged(32, ">= 1")  # blocks of select_split; capped at `blocks`
  select_split: str = "wikitext2-valid"  # the split that picks best-of-N random
  # Targets of Fixed, random and EMC/DAC, one set of columns each.
  budgets: Budgets = ((0.35, 0.6, 0.375), (0.5, 0.7, 0.5), (0.8, 0.9, 0.75))
  random_trials: int = ranged(8, ">= 1")  # random schedules per budget
  fl_actions: int = ranged(24, ">= 0")  # constant actions of fl_variant (0: none)
  fl_variant: str = "FL"  # action variant of that spread
  estimate_only: bool = False  # print the work estimate and exit

  def _validate(self):
    self._check(len(self.pages) > 0, "pages", "needs at least one page size")
    _normalize_budgets(self, "budgets")
    try:
      variant_path(self.fl_variant)
    except FileNotFoundError as e:
      self._check(False, "fl_variant", str(e))


@dataclasses.dataclass(frozen=True)
class FrontCfg(Section):
  """The policy's front against every baseline: experiments.front (method §12.2-12.5)."""

  _name = "front"
  # Operating points as positions of the budget knob (eval.knob_path); the
  # default spans requested net keep ~0.45-0.89 on the 3L grid.
  knob: tuple[float, ...] = ranged((0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85), "[0, 1]")
  requested: Optional[Budgets] = None  # explicit (κ*, ρ*, η*) points instead of the knob
  # Baselines to run beside the policy (dense always runs): Fixed, Fixed matched
  # per episode step (the policy's positional profile), the policy's own actions
  # shuffled across blocks per step (its action mix without the text), best-of-N
  # random (with its oracle), EMC and DAC.
  methods: tuple[Literal["fixed", "fixed_step", "shuffled", "random", "emc", "dac"], ...] = (
    "fixed",
    "fixed_step",
    "shuffled",
    "random",
    "emc",
    "dac",
  )
  random_trials: int = ranged(64, ">= 1")  # best-of-N random at each point's realized budget
  select_split: str = "wikitext2-valid"  # where best-of-N picks its trial (never the report split)
  select_blocks: int = ranged(64, ">= 1")
  # > 0: replay the policy's and Fixed's schedules at this batch size (columns
  # reversed) to measure the evaluation's own noise floor; 0 skips it.
  noise_batch_size: int = ranged(8, ">= 0")
  # Blocks per harness call = rows_per_call // columns: all points' baselines share
  # one call (one prefill per block), so this sets the decode batch M.
  rows_per_call: int = ranged(1024, ">= 1")
  heatmap_blocks: int = ranged(4, ">= 1")  # passages (T tokens each) in the action heat map
  bootstrap_resamples: int = ranged(10_000, ">= 100")
  # Output folders of earlier fronts (one per seed, same points and blocks): pool
  # them -- policy vs each method over all seeds -- instead of evaluating.
  pool: Optional[tuple[str, ...]] = None

  def _validate(self):
    self._check(len(self.knob) > 0, "knob", "needs at least one knob value")
    self._check(len(self.methods) > 0, "methods", "needs at least one baseline")
    if self.requested is not None:
      _normalize_budgets(self, "requested")


GENERATE_MODES = ("policy", "dense", "fixed", "constant")


@dataclasses.dataclass(frozen=True)
class GenerateCfg(Section):
  """Free-running generation with the policy in the loop: experiments.generate (§12.7).

  The targets are the first of eval.knob / eval.budgets; T (data.horizon) is the
  policy's episode, after which the text is re-prefilled densely (§12.6).
  """

  _name = "generate"
  prompt: str = "The history of the city begins in"
  prompts: tuple[str, ...] = ()  # further prompts, continued after `prompt`
  # Who picks each token's action: the trained policy (eval.policy or train.run_dir),
  # the uncompressed model, Fixed at the targets, or the grid action nearest them.
  mode: Literal[GENERATE_MODES] = "policy"
  max_new_tokens: int = ranged(64, ">= 1")
  temperature: float = ranged(0.0, ">= 0")  # 0: greedy (argmax tokens)
  top_p: float = ranged(1.0, "(0, 1]")  # nucleus sampling; 1: off
  top_k: int = ranged(0, ">= 0")  # sample among the k likeliest tokens; 0: off
  samples: int = ranged(1, ">= 1")  # continuations per prompt (sharing its prefix)
  stop: tuple[str, ...] = ()  # a continuation ends when its text contains one
  seed: int = 0  # token sampling (and a sampling policy)
  # Prefix granularity G (a multiple of the Quest page size; None: the page size):
  # larger compiles fewer windows but decodes up to G - 1 warm-up tokens per refresh.
  prefix_bucket: Optional[int] = ranged(None, ">= 1")
  html: bool = True  # with --out: also write generate.html (tokens coloured by compute)


MC_MODES = ("dense", "policy", "fixed", "constant")


@dataclasses.dataclass(frozen=True)
class McCfg(Section):
  """Multiple-choice accuracy with the policy in the loop: experiments.mc_eval (§12.6).

  The policy is conditioned on every target of eval.knob / eval.budgets; Fixed is
  matched to the policy's realized budgets on the same items.
  """

  _name = "mc"
  # arc_easy (test), piqa (valid), mmlu (test, k-shot from dev) or a .jsonl file of
  # {"context", "choices", "label"} lines (sol_jax/data/mc_tasks.py).
  task: str = "arc_easy"
  limit: Optional[int] = ranged(None, ">= 1")  # first N items (MMLU: per subject); None: all
  # dense once; per target: the policy, Fixed at its realized budgets, the nearest constant.
  modes: tuple[Literal[MC_MODES], ...] = ("dense", "policy", "fixed")
  mmlu_shots: int = ranged(5, ">= 0")  # dev exemplars before each MMLU question
  subjects: Optional[tuple[str, ...]] = None  # MMLU subjects (file stems); None: all 57
  batch_size: int = ranged(8, ">= 1")  # items per call (same context length and choice count)
  # Prefix granularity G (a multiple of the Quest page size; None: the page size): larger
  # compiles fewer prefill lengths but decodes up to G - 1 warm-up tokens per item.
  prefix_bucket: Optional[int] = ranged(None, ">= 1")
  bootstrap_resamples: int = ranged(10_000, ">= 100")  # policy - Fixed accuracy interval
  tensorboard: bool = True  # with --out: DIR/tb, one run per method

  def _validate(self):
    self._check(len(self.modes) > 0, "modes", "needs at least one mode")
    self._check(bool(self.task.strip()), "task", "must not be empty")


POLLUTION_COLUMNS = ("axes", "fixed", "policy")


@dataclasses.dataclass(frozen=True)
class PollutionCfg(Section):
  """KV-pollution impulse test: experiments.pollution (method §12.8, paper Fig. 7).

  Windows of data.eval; the policy's targets: the first of eval.knob / eval.budgets.
  """

  _name = "pollution"
  prefix_len: int = ranged(512, ">= 1")  # P: dense prefill
  impulse_steps: int = ranged(4, ">= 1")  # c: compressed steps
  tail_steps: int = ranged(64, ">= 1")  # τ: dense steps after the impulse
  windows: int = ranged(64, ">= 1")  # random windows of P + c + τ + 1 tokens
  seed: int = 123  # window offsets
  batch_size: int = ranged(4, ">= 1")  # windows per call
  # Impulse columns beside dense: every single-axis grid level (axes), Fixed matched to
  # the policy's realized impulse budgets (at the targets without a policy), the policy.
  columns: tuple[Literal[POLLUTION_COLUMNS], ...] = POLLUTION_COLUMNS
  bootstrap_resamples: int = ranged(10_000, ">= 100")

  def _validate(self):
    self._check(len(self.columns) > 0, "columns", "needs at least one column kind")


QUALITY_METHODS = ("dense", "policy", "fixed")


@dataclasses.dataclass(frozen=True)
class QualityCfg(Section):
  """Long greedy generations: repetition, diversity and dense log-prob (method §12.7):
  experiments.generation_quality. The policy's targets: the first of eval.knob /
  eval.budgets; Fixed runs at the policy's realized budgets over all its tokens."""

  _name = "quality"
  prompts: int = ranged(8, ">= 1")  # windows of data.eval, the first tokens of each block
  prompt_len: int = ranged(128, ">= 1")
  max_new_tokens: int = ranged(512, ">= 1")  # no early stop at EOS: every row runs this long
  methods: tuple[Literal[QUALITY_METHODS], ...] = QUALITY_METHODS
  orders: tuple[int, ...] = ranged((1, 2, 3, 4), ">= 1")  # n of seq-rep-n and distinct-n
  bootstrap_resamples: int = ranged(10_000, ">= 100")

  def _validate(self):
    self._check(len(self.methods) > 0, "methods", "needs at least one method")


@dataclasses.dataclass(frozen=True)
class AllocationCfg(Section):
  """Which tokens get the compute, per text source: experiments.allocation (issue 10).

  The policy's targets: the first of eval.knob / eval.budgets; Fixed is matched
  to the policy's realized budgets on each source separately.
  """

  _name = "allocation"
  splits: tuple[str, ...] = ("wikitext2-valid", "gutenberg-heldout-valid")
  blocks: int = ranged(64, ">= 1")  # of C + T + 1 tokens per split
  bins: int = ranged(5, ">= 1")  # quantile bins of dense NLL (token difficulty)
  bootstrap_resamples: int = ranged(10_000, ">= 100")

  def _validate(self):
    self._check(len(self.splits) > 0, "splits", "needs at least one text source")


LMEVAL_MODES = ("dense", "policy", "fixed", "constant")


@dataclasses.dataclass(frozen=True)
class LmEvalCfg(Section):
  """lm-evaluation-harness model `sol_jax` (experiments/lm_eval_model.py); its model_args
  are keys of this config (`mode=policy,knob=0.5` is `lmeval.mode=policy eval.knob=[0.5]`)."""

  _name = "lmeval"
  # Who picks the compute of every scored or generated token: the uncompressed model,
  # the trained policy (eval.policy or train.run_dir), Fixed at the targets, or the grid
  # action nearest them. The targets: the single value of eval.knob / eval.budgets.
  mode: Literal[LMEVAL_MODES] = "dense"
  # Longest sequence a request may use (lm-eval's max_length): rolling log-likelihoods
  # are scored in windows of this many tokens; longer prompts are cut on the left.
  max_length: int = ranged(2048, ">= 2")
  batch_size: int = ranged(8, ">= 1")  # requests per call (lm-eval's --batch_size overrides)


@dataclasses.dataclass(frozen=True)
class BenchCfg(Section):
  """Benchmarks; B, K, C, T, the model and the grid come from the other sections."""

  _name = "bench"
  steps: int = ranged(4, ">= 1")  # bench_train: timed data batches after the first
  # bench_decode, after the prefill: dense, Quest sparsity only, all three mechanisms,
  # and the policy choosing them (its share of a decode step).
  decode_modes: tuple[Literal[DECODE_MODES], ...] = DECODE_MODES
  memory_rollouts: tuple[int, ...] = ranged((16, 32), ">= 1")  # bench_decode: K for peak RSS
  # memory_plan: also compile the real train step on this host (abstract inputs, no
  # weights) and print XLA's memory_analysis beside the estimate.
  memory_check: bool = False

  def _validate(self):
    self._check(len(self.decode_modes) > 0, "decode_modes", "needs at least one mode")
