"""The "Fixed" (uniform, static) baseline matched to target averages (method §12.3).

Everything Fixed lives here: the allocator (`FixedAllocator`), its schedule
columns (`fixed_columns`) and the matched evaluation (`fixed_matched`, e.g.
Fixed at a trained policy's realized averages).

Not one constant action: per axis, a content-independent two-level round-robin
mixture of the levels lo ≤ target ≤ hi.
- Token axis: a fixed share p per step: round(p·B_eff) of the effective rows
  get hi, rows chosen round-robin from offset (t·n_hi) mod B_eff.
- Prune and quant axes: residual correction pooled over the batch and over
  every batch of the evaluation, so the pooled average tracks the target; the
  round-robin offsets are ((t+17)·n_hi) and ((t+37)·n_hi) mod B_eff.

`StepFixedAllocator` is the same baseline matched *per step t of the episode* (one
allocator per step): a static schedule with the policy's positional profile. It
separates what a policy gains from *when* in the episode it spends (a compressed
step's KV entries hurt every later step) from what it gains by reading the text.

Rounding bounds (R: effective rows in a step, N: all effective slots so far):
token |κ̄ − κ*| ≤ (hi−lo)/(2·R) (every step, hence pooled too); prune/quant
|pooled mean − target| ≤ (hi−lo)/(2·N), because the carried residual
Σ(level − target) never exceeds (hi−lo)/2 in size.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import numpy as np

from sol_jax.efficiency.actions import ActionSpace
from sol_jax.efficiency.controls import ControlSettings
from sol_jax.evaluation.axis_levels import as_targets, axis_levels, effective_mask, targets_label
from sol_jax.evaluation.plan import evaluate_plan
from sol_jax.evaluation.schedule_eval import Column, ColumnResult
from sol_jax.models.config import ModelConfig

# Per-axis round-robin phase: token, prune, quant (the reference's decorrelation).
ROUND_ROBIN_PHASE = (0, 17, 37)


class FixedAllocator:
  """Stateful Fixed schedule generator: carries the pooled prune/quant sums across batches.

  `targets` are (κ̄, ρ̄, η̄) in the units a run reports (`avg_keep_effective`,
  raw `avg_prune_keep`, `avg_quant_ratio`), usually the policy's realized ones.
  """

  def __init__(self, space: ActionSpace, targets: Sequence[float]):
    self.space = space
    self.targets = as_targets(targets)
    self.axes = axis_levels(space)
    self.brackets = tuple(ax.bracket(t) for ax, t in zip(self.axes, self.targets))
    self.level_sums = [0.0, 0.0, 0.0]  # pooled over all effective slots so far
    self.slots = 0

  def _count_hi(self, axis: int, slots: int) -> int:
    br = self.brackets[axis]
    if br.hi == br.lo:
      return 0
    if axis == 0:
      share = br.share
    else:
      # The level the next `slots` slots must average for the pooled mean to hit the target.
      ax = self.axes[axis]
      required = (br.target * (self.slots + slots) - self.level_sums[axis]) / slots
      required = min(max(required, ax.vmin), ax.vmax)
      share = min(max((required - br.lo) / (br.hi - br.lo), 0.0), 1.0)
    return int(np.rint(share * slots))  # round half to even, like Python's round

  def next_batch(
    self, rows: int, steps: int, effective: Optional[np.ndarray] = None, first_step: int = 0
  ) -> np.ndarray:
    """[rows, steps] int32 action indices; non-effective slots get the forced dense action.

    first_step: the episode step of column 0 (it sets the round-robin offsets).
    """
    if rows < 1 or steps < 1:
      raise ValueError(f"rows={rows} and steps={steps} must be positive.")
    eff = effective_mask(rows, steps, effective)
    level_pos = np.zeros((3, rows, steps), np.int64)
    for t in range(steps):
      mask = eff[:, t]
      slots = int(mask.sum())
      if slots == 0:
        continue
      rank = np.cumsum(mask) - 1  # position among this step's effective rows
      for axis, br in enumerate(self.brackets):
        n_hi = self._count_hi(axis, slots)
        offset = ((first_step + t + ROUND_ROBIN_PHASE[axis]) * n_hi) % slots
        is_hi = mask & ((rank - offset) % slots < n_hi)
        level_pos[axis, :, t] = np.where(is_hi, br.hi_pos, br.lo_pos)
        self.level_sums[axis] += n_hi * br.hi + (slots - n_hi) * br.lo
      self.slots += slots
    actions = self.space.index_from_levels(*level_pos)
    return np.where(eff, actions, self.space.forced_dense_index).astype(np.int32)

  @property
  def pooled_means(self) -> tuple[float, float, float]:
    """Realized per-axis averages of everything allocated so far."""
    n = max(self.slots, 1)
    return tuple(s / n for s in self.level_sums)


class StepFixedAllocator:
  """Fixed matched separately at every step t: `targets[t]` = (κ̄_t, ρ̄_t, η̄_t)."""

  def __init__(self, space: ActionSpace, targets: Sequence[Sequence[float]]):
    self.allocators = [FixedAllocator(space, t) for t in targets]

  def next_batch(self, rows: int, steps: int, effective: Optional[np.ndarray] = None) -> np.ndarray:
    if steps != len(self.allocators):
      raise ValueError(f"per-step Fixed has {len(self.allocators)} steps' targets, asked {steps}")
    eff = effective_mask(rows, steps, effective)
    return np.concatenate(
      [
        a.next_batch(rows, 1, eff[:, t : t + 1], first_step=t)
        for t, a in enumerate(self.allocators)
      ],
      axis=1,
    )


def per_step_realized(
  actions: np.ndarray, space: ActionSpace, effective: Optional[np.ndarray] = None
) -> np.ndarray:
  """[T, 3] realized (κ̄_t, ρ̄_t raw, η̄_t) per step of a [blocks, T] recorded schedule.

  effective: [T] or [blocks, T] flags of the steps that were controlled (default all),
  e.g. `schedule_eval.effective_steps`. A step with no effective slot gets the dense
  levels (its slots are forced dense anyway).
  """
  actions = np.asarray(actions)
  if actions.ndim != 2:
    raise ValueError(f"actions must be [blocks, T], got shape {actions.shape}")
  eff = np.broadcast_to(
    np.ones(actions.shape[1], bool) if effective is None else np.asarray(effective, bool),
    actions.shape,
  )
  n = eff.sum(0)
  out = []
  for values in (space.kappa, space.rho, space.eta):
    v = np.asarray(values, np.float64)
    mean = (v[actions] * eff).sum(0) / np.maximum(n, 1)
    out.append(np.where(n > 0, mean, v[space.forced_dense_index]))
  return np.stack(out, axis=-1)


def step_fixed_columns(
  space: ActionSpace, per_step_targets: Sequence[np.ndarray], names: Sequence[str]
) -> list[Column]:
  """Per-step Fixed, one column per [T, 3] target profile."""
  return [
    Column(n, make=functools.partial(StepFixedAllocator, space, np.asarray(t)), grid=space)
    for n, t in zip(names, per_step_targets)
  ]


def fixed_columns(
  space: ActionSpace, targets: Sequence[Sequence[float]], names: Optional[Sequence[str]] = None
) -> list[Column]:
  """Fixed matched to each target triple (κ̄, ρ̄, η̄): one `FixedAllocator` per column."""
  names = names or [f"fixed {targets_label(t)}" for t in targets]
  return [
    Column(n, make=lambda t=tuple(t): FixedAllocator(space, t), grid=space)
    for n, t in zip(names, targets)
  ]


def fixed_matched(
  params,
  cfg: ModelConfig,
  space: ActionSpace,
  settings: ControlSettings,
  blocks: np.ndarray,
  targets: Sequence[Sequence[float]],
  names: Optional[Sequence[str]] = None,
  **kwargs,
) -> list[ColumnResult]:
  """Fixed matched to given realized averages (κ̄, ρ̄, η̄), one column per triple.

  kwargs go to `evaluate_plan` (context_len, horizon, batch_size, progress, desc).
  """
  return evaluate_plan(
    params, cfg, space, settings, blocks, fixed_columns(space, targets, names), **kwargs
  )
