"""Schedule providers for the baselines: one entry point for the harness.

Content-independent providers return a full [rows, T] schedule of flat action
indices (constant, Fixed §12.3, Random §12.4); the EMC/DAC heuristics (§12.5)
are step functions for the harness's decode scan. Non-effective steps always
get `space.forced_dense_index`.
"""
from __future__ import annotations

import numpy as np

from sol_jax.efficiency.actions import ActionSpace
from sol_jax.evaluation.axis_levels import Targets, as_targets, axis_levels
from sol_jax.evaluation.fixed import FixedAllocator
from sol_jax.evaluation.heuristics import (HeuristicState, drift_signal, entropy_signal,
                                           heuristic_schedule, heuristic_step, init_state)
from sol_jax.evaluation.random_schedules import RandomScheduler, random_schedules, trial_seed

__all__ = [
    "FixedAllocator", "HeuristicState", "RandomScheduler", "Targets", "as_targets", "axis_levels",
    "constant_schedule", "drift_signal", "entropy_signal", "heuristic_schedule", "heuristic_step",
    "init_state", "random_schedules", "trial_seed",
]


def constant_schedule(action_index: int, rows: int, steps: int, space: ActionSpace | None = None) -> np.ndarray:
  """[rows, steps] int32 filled with one action (checked against `space` when given)."""
  if rows < 1 or steps < 1:
    raise ValueError(f"rows={rows} and steps={steps} must be positive.")
  if space is not None and not 0 <= action_index < space.num_actions:
    raise ValueError(f"action_index {action_index} is outside [0, {space.num_actions}) for this action space.")
  return np.full((rows, steps), action_index, np.int32)
