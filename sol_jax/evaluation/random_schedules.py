"""Random matched-budget schedules (spec §12.4).

Per block (row) and per axis independently, n_hi of the block's R effective
steps run the axis at hi and the rest at lo, with lo/hi/p as for Fixed:
n_hi = round(p·R) for κ, round((target − lo)·R/(hi − lo)) for ρ and η. The
positions are a uniformly random permutation, so every block meets the budget
to within one step's rounding and only the timing is random. Trial i of a
best-of-N search uses seed 1234 + i (`trial_seed`); the generator is created
once per trial and continues across that trial's batches.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from sol_jax.efficiency.actions import ActionSpace
from sol_jax.evaluation.axis_levels import as_targets, axis_levels, effective_mask

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


def random_schedules(space: ActionSpace, targets: Sequence[float], rows: int, steps: int, seed: int,
                     effective: Optional[np.ndarray] = None) -> np.ndarray:
  """One batch of random matched-budget schedules, [rows, steps] int32."""
  return RandomScheduler(space, targets, seed).next_batch(rows, steps, effective)
