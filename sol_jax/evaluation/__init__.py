"""Evaluation: dense PPL, the controlled-schedule harness and the baselines (method §12).

Where each concept lives:
- `perplexity`: dense PPL, SOL protocol and full-sequence; `hf_reference`: the
  same numbers from transformers, as a cross-check.
- `harness`: `run_controlled`, one dense prefill then K schedules per block,
  each chosen step by step by a *provider*; `StaticSchedule` replays fixed actions.
- `schedule_eval`: `Column` (one schedule family), `ColumnResult` and the batch
  loop `evaluate_columns`; `plan`: `evaluate_plan`, any mix of columns in one
  harness call per batch.
- `axis_levels`: per-axis level grids and brackets shared by the matched baselines.
- `knob`: the one-number budget knob -> (κ*, ρ*, η*); `front`: the policy
  and every baseline at its realized budgets over a sweep of operating points.
- `intervals`: paired-bootstrap intervals of policy-vs-baseline differences.
- `generate` (import the module; its function has the module's name):
  free-running generation with a provider choosing each token's action and the
  dense-replay refresh every T steps (§12.6-12.7); `generation_view`: the
  continuation coloured by compute (terminal, HTML).
- `multiple_choice` (import the module): multiple-choice scoring with a provider
  choosing every continuation token's action (§12.6; tasks in `sol_jax.data.mc_tasks`);
  `mc_report`: acc / acc_norm, realized budgets, paired intervals over items.
- `comparison_log`: the TensorBoard layout comparing methods over operating
  points (one run per method); `comparison_plots`: its figures (fronts,
  adherence, per-token action heat map).
- One module per baseline, each with its generator, its columns and its runner:
  `constant`; `fixed` (Fixed, §12.3); `random_schedules` (Random and
  best-of-N, §12.4); EMC/DAC (§12.5) in `heuristics` (the step rule, the
  signals) and `providers` (the rule inside the harness, `heuristic_columns`).
"""

from sol_jax.evaluation.constant import (
  ConstantGenerator,
  ReplaySchedule,
  constant_columns,
  constant_schedule,
  replay_columns,
)
from sol_jax.evaluation.fixed import FixedAllocator, fixed_columns, fixed_matched
from sol_jax.evaluation.front import (
  Front,
  FrontPoint,
  adherence,
  evaluate_front,
  front_rows,
  pool_seeds,
)
from sol_jax.evaluation.harness import (
  Episode,
  StaticSchedule,
  StepContext,
  controlled_episode,
  run_controlled,
)
from sol_jax.evaluation.heuristics import drift_signal, entropy_signal, heuristic_schedule
from sol_jax.evaluation.hf_reference import hf_block_nll, load_hf_model
from sol_jax.evaluation.intervals import PairedDiff, gap_closure, paired_bootstrap
from sol_jax.evaluation.knob import diagonal_path, knob_targets, requested_targets
from sol_jax.evaluation.perplexity import (
  evaluate_dense,
  full_sequence_nll,
  perplexity_summary,
  sol_protocol_nll,
)
from sol_jax.evaluation.plan import evaluate_plan, index_map
from sol_jax.evaluation.providers import (
  HeuristicProvider,
  MixedInputs,
  MixedProvider,
  heuristic_columns,
)
from sol_jax.evaluation.random_schedules import (
  BestOfN,
  RandomScheduler,
  best_of_n,
  random_columns,
  random_trials,
  trial_seed,
)
from sol_jax.evaluation.schedule_eval import (
  Column,
  ColumnResult,
  effective_steps,
  evaluate_columns,
  static_inputs,
)

__all__ = [
  # dense perplexity
  "evaluate_dense",
  "full_sequence_nll",
  "hf_block_nll",
  "load_hf_model",
  "perplexity_summary",
  "sol_protocol_nll",
  # harness and columns
  "Column",
  "ColumnResult",
  "Episode",
  "StaticSchedule",
  "StepContext",
  "controlled_episode",
  "effective_steps",
  "evaluate_columns",
  "evaluate_plan",
  "index_map",
  "run_controlled",
  "static_inputs",
  # paired-bootstrap intervals
  "PairedDiff",
  "gap_closure",
  "paired_bootstrap",
  # constant
  "ConstantGenerator",
  "constant_columns",
  "constant_schedule",
  "ReplaySchedule",
  "replay_columns",
  # Fixed (§12.3)
  "FixedAllocator",
  "fixed_columns",
  "fixed_matched",
  # Random and best-of-N (§12.4)
  # (`random_schedules`, one batch of one trial, stays in its module: the name is the module's)
  "BestOfN",
  "RandomScheduler",
  "best_of_n",
  "random_columns",
  "random_trials",
  "trial_seed",
  # EMC / DAC (§12.5)
  "HeuristicProvider",
  "MixedInputs",
  "MixedProvider",
  "drift_signal",
  "entropy_signal",
  "heuristic_columns",
  "heuristic_schedule",
  # the budget knob and the policy's front against every baseline (issue 10)
  "diagonal_path",
  "knob_targets",
  "requested_targets",
  "Front",
  "FrontPoint",
  "adherence",
  "evaluate_front",
  "front_rows",
  "pool_seeds",
]
