"""Random matched-budget schedules (method §12.4).

Per block (row) and per axis independently, n_hi of the block's R effective
steps run the axis at hi and the rest at lo, with lo/hi/p as for Fixed:
n_hi = round(p·R) for κ, round((target − lo)·R/(hi − lo)) for ρ and η. The
positions are a uniformly random permutation, so every block meets the budget
to within one step's rounding and only the timing is random. Trial i of a
best-of-N search uses seed 1234 + i (`trial_seed`); the generator is created
once per trial and continues across that trial's batches.

Best-of-N (method §12.4, Q13): the reference picks the random trial with the
lowest PPL on the very blocks it reports (an oracle). `best_of_n` selects on a
separate selection split and reports the selected trial on the report split,
with the oracle number beside it; we report both.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Optional, Sequence, Union

import numpy as np

from sol_jax.efficiency.actions import ActionSpace
from sol_jax.efficiency.controls import ControlSettings
from sol_jax.evaluation.axis_levels import as_targets, axis_levels, effective_mask, targets_label
from sol_jax.evaluation.plan import evaluate_plan
from sol_jax.evaluation.schedule_eval import Column, ColumnResult
from sol_jax.models.config import ModelConfig

BASE_SEED = 1234


def trial_seed(trial: int, base: int = BASE_SEED) -> int:
  return base + trial


class RandomScheduler:
  """One random trial: a seeded generator that produces batch after batch."""

  def __init__(self, space: ActionSpace, targets: Sequence[float], seed: int):
    self.space = space
    self.targets = as_targets(targets)
    self.brackets = tuple(ax.bracket(t) for ax, t in zip(axis_levels(space), self.targets))
    self.rng = np.random.default_rng(seed)

  def hi_counts(self, effective_steps: np.ndarray) -> np.ndarray:
    """[3, rows] number of hi steps per axis for blocks with R effective steps."""
    r = np.asarray(effective_steps)
    counts = []
    for axis, br in enumerate(self.brackets):
      if br.hi == br.lo:
        counts.append(np.zeros_like(r))
      elif axis == 0:
        counts.append(np.rint(br.share * r).astype(r.dtype))
      else:
        counts.append(np.rint((br.target - br.lo) * r / (br.hi - br.lo)).astype(r.dtype))
    return np.clip(np.stack(counts), 0, r)

  def next_batch(self, rows: int, steps: int, effective: Optional[np.ndarray] = None) -> np.ndarray:
    """[rows, steps] int32 action indices; non-effective slots get the forced dense action."""
    if rows < 1 or steps < 1:
      raise ValueError(f"rows={rows} and steps={steps} must be positive.")
    eff = effective_mask(rows, steps, effective)
    n_hi = self.hi_counts(eff.sum(axis=1))
    level_pos = []
    for axis, br in enumerate(self.brackets):
      # A random order of each row's effective steps (non-effective ones sort last).
      keys = np.where(eff, self.rng.random((rows, steps)), np.inf)
      rank = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
      level_pos.append(np.where(rank < n_hi[axis][:, None], br.hi_pos, br.lo_pos))
    actions = self.space.index_from_levels(*level_pos)
    return np.where(eff, actions, self.space.forced_dense_index).astype(np.int32)


def random_schedules(
  space: ActionSpace,
  targets: Sequence[float],
  rows: int,
  steps: int,
  seed: int,
  effective: Optional[np.ndarray] = None,
) -> np.ndarray:
  """One batch of random matched-budget schedules, [rows, steps] int32."""
  return RandomScheduler(space, targets, seed).next_batch(rows, steps, effective)


def random_columns(
  space: ActionSpace,
  targets: Sequence[float],
  trials: int,
  base_seed: int = BASE_SEED,
  prefix: Optional[str] = None,
) -> list[Column]:
  """N random matched-budget trials; trial i is seeded `trial_seed(i, base_seed)`."""
  if trials < 1:
    raise ValueError(f"random trials must be >= 1, got {trials}.")
  prefix = prefix or f"random {targets_label(targets)}"
  return [
    Column(
      f"{prefix} trial {i}",
      make=lambda i=i: RandomScheduler(space, targets, trial_seed(i, base_seed)),
      grid=space,
    )
    for i in range(trials)
  ]


def random_trials(
  params,
  cfg: ModelConfig,
  space: ActionSpace,
  settings: ControlSettings,
  blocks: np.ndarray,
  targets: Sequence[float],
  trials: int,
  base_seed: int = BASE_SEED,
  **kwargs,
) -> list[ColumnResult]:
  """N random trials at one budget as N columns of one run (kwargs go to `evaluate_plan`)."""
  return evaluate_plan(
    params,
    cfg,
    space,
    settings,
    blocks,
    random_columns(space, targets, trials, base_seed),
    **kwargs,
  )


@dataclasses.dataclass
class BestOfN:
  """Best-of-N random: selected on one split, reported on another, oracle beside it."""

  trials: int
  selected: int  # trial index with the lowest selection-split PPL
  selected_select_ppl: float
  selected_ppl: float  # that trial's report-split PPL: the honest best-of-N number
  oracle: int  # trial index with the lowest report-split PPL (the reference's number, Q13)
  oracle_ppl: float
  mean_ppl: float  # report-split statistics over all trials
  median_ppl: float
  min_ppl: float
  max_ppl: float

  def row(self) -> dict:
    return dataclasses.asdict(self)


def best_of_n(
  select_results: Sequence[Union[ColumnResult, float]],
  report_results: Sequence[Union[ColumnResult, float]],
) -> BestOfN:
  """Trial i of both lists must be the same schedule seed (e.g. `random_trials` on two splits)."""
  if not select_results or len(select_results) != len(report_results):
    raise ValueError(
      f"best_of_n needs the same non-zero number of trials on both splits, got "
      f"{len(select_results)} selection and {len(report_results)} report results."
    )
  for s, r in zip(select_results, report_results):
    if isinstance(s, ColumnResult) and isinstance(r, ColumnResult) and s.name != r.name:
      raise ValueError(
        f"trial mismatch: selection {s.name!r} vs report {r.name!r}; pass the "
        "same trials in the same order on both splits."
      )
  sel = [float(getattr(x, "ppl", x)) for x in select_results]
  rep = [float(getattr(x, "ppl", x)) for x in report_results]
  i, j = int(np.argmin(sel)), int(np.argmin(rep))
  return BestOfN(
    trials=len(rep),
    selected=i,
    selected_select_ppl=sel[i],
    selected_ppl=rep[i],
    oracle=j,
    oracle_ppl=rep[j],
    mean_ppl=statistics.fmean(rep),
    median_ppl=statistics.median(rep),
    min_ppl=min(rep),
    max_ppl=max(rep),
  )
