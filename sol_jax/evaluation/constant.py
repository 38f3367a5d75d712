"""The constant baseline: one action at every step of every block.

A constant column is the simplest static schedule; the harness still executes
the dense action on non-effective steps (method §4.6), so a constant column's
realized averages count only the effective steps.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from sol_jax.efficiency.actions import ActionSpace
from sol_jax.evaluation.schedule_eval import Column


@dataclasses.dataclass
class ConstantGenerator:
  """Schedule generator that repeats one flat action index."""

  action: int

  def next_batch(self, rows: int, steps: int, effective=None) -> np.ndarray:
    del effective  # the harness executes the dense action on non-effective steps
    return np.full((rows, steps), self.action, np.int32)


def constant_schedule(
  action_index: int, rows: int, steps: int, space: Optional[ActionSpace] = None
) -> np.ndarray:
  """[rows, steps] int32 filled with one action (checked against `space` when given)."""
  if rows < 1 or steps < 1:
    raise ValueError(f"rows={rows} and steps={steps} must be positive.")
  if space is not None and not 0 <= action_index < space.num_actions:
    raise ValueError(
      f"action_index {action_index} is outside [0, {space.num_actions}) for this action space."
    )
  return ConstantGenerator(action_index).next_batch(rows, steps)


def constant_columns(space: ActionSpace, actions: Optional[Sequence[int]] = None) -> list[Column]:
  """One column per constant action (all of the grid by default), named by its tag."""
  actions = range(space.num_actions) if actions is None else actions
  return [
    Column(space.tags[a], make=lambda a=int(a): ConstantGenerator(a), grid=space) for a in actions
  ]
