"""Per-axis level grids and the lo ≤ target ≤ hi brackets used by the baselines.

The static baselines work in the units the run reports (method §7): κ, raw ρ
(not divided by ρ_max) and η = b/16. Levels are kept in the config's list order
so a level position maps straight into `ActionSpace.index_from_levels`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Sequence

import numpy as np

from sol_jax.efficiency.actions import MAX_BITS, ActionSpace

SNAP_TOL = 1e-6  # a target this close to a level is that level (float noise in realized averages)


class Targets(NamedTuple):
  """Per-axis targets: token keep κ, raw MLP-input keep ρ, quant ratio η = b/16."""

  kappa: float
  rho: float
  eta: float


def as_targets(targets: Sequence[float]) -> Targets:
  values = tuple(float(t) for t in targets)
  if len(values) != 3 or not all(math.isfinite(v) for v in values):
    raise ValueError(
      f"targets must be three finite numbers (kappa, rho, eta=bits/16), got {targets!r}."
    )
  return Targets(*values)


class Bracket(NamedTuple):
  """Adjacent levels around a (clamped) target; positions are in list order."""

  target: float  # clamped to the axis range
  lo: float
  hi: float
  lo_pos: int
  hi_pos: int

  @property
  def share(self) -> float:
    """p = (target - lo) / (hi - lo); 0 when the target sits on a level."""
    return (self.target - self.lo) / (self.hi - self.lo) if self.hi > self.lo else 0.0


@dataclasses.dataclass(frozen=True)
class AxisLevels:
  name: str
  values: tuple[float, ...]  # list order

  @property
  def sorted_order(self) -> np.ndarray:
    """List positions sorted by level value."""
    return np.argsort(np.asarray(self.values), kind="stable")

  @property
  def sorted_values(self) -> np.ndarray:
    return np.asarray(self.values, np.float64)[self.sorted_order]

  @property
  def vmin(self) -> float:
    return min(self.values)

  @property
  def vmax(self) -> float:
    return max(self.values)

  def bracket(self, target: float) -> Bracket:
    """lo = largest level ≤ target, hi = smallest level ≥ target, target clamped to the grid."""
    target = min(max(float(target), self.vmin), self.vmax)
    values = np.asarray(self.values, np.float64)
    near = np.abs(values - target) <= SNAP_TOL
    if near.any():
      pos = int(np.flatnonzero(near)[0])
      return Bracket(self.values[pos], self.values[pos], self.values[pos], pos, pos)
    lo_pos = int(np.where(values <= target, values, -np.inf).argmax())
    hi_pos = int(np.where(values >= target, values, np.inf).argmin())
    return Bracket(target, self.values[lo_pos], self.values[hi_pos], lo_pos, hi_pos)


def axis_levels(space: ActionSpace) -> tuple[AxisLevels, AxisLevels, AxisLevels]:
  """(token κ, prune ρ, quant η) level grids of an action space."""
  return (
    AxisLevels("token", space.keep_fracs),
    AxisLevels("prune", space.prune_fracs),
    AxisLevels("quant", tuple(b / MAX_BITS for b in space.quant_bits)),
  )


def targets_label(targets: Sequence[float]) -> str:
  """'(0.45, 0.7, 0.5)': the target triple as it appears in column names."""
  return "(" + ", ".join(f"{float(x):.3g}" for x in targets) + ")"


def effective_mask(rows: int, steps: int, effective=None) -> np.ndarray:
  """[rows, steps] bool mask; None means every step is effective."""
  if effective is None:
    return np.ones((rows, steps), bool)
  eff = np.broadcast_to(np.asarray(effective, bool), (rows, steps))
  return np.array(eff)
