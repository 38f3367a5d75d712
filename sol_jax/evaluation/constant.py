"""The constant baseline (one action at every step of every block) and replays.

`ReplaySchedule` plays back recorded per-block actions (e.g. a policy's or
Fixed's `ColumnResult.block_actions`) in any batch layout: the same schedule
evaluated twice measures the evaluation's own noise floor (issue 10).

A constant column is the simplest static schedule; the harness still executes
the dense action on non-effective steps (method §4.6), so a constant column's
realized averages count only the effective steps.
"""

from __future__ import annotations

import dataclasses
import functools
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


class ReplaySchedule:
  """Replays [blocks, T] recorded actions block by block, across batches of any size."""

  def __init__(self, actions: np.ndarray):
    self.actions = np.asarray(actions, np.int32)
    self.offset = 0

  def next_batch(self, rows: int, steps: int, effective=None) -> np.ndarray:
    del effective  # recorded actions already hold the dense action on non-effective steps
    end = self.offset + rows
    if end > len(self.actions) or steps != self.actions.shape[1]:
      raise ValueError(
        f"replay of {self.actions.shape} recorded actions asked for rows "
        f"{self.offset}:{end} x {steps} steps; replay over the same blocks and horizon"
      )
    out, self.offset = self.actions[self.offset : end], end
    return out


def replay_columns(results: Sequence, space: ActionSpace, prefix: str = "replay") -> list[Column]:
  """One column replaying each result's `block_actions` (in `space`'s indices)."""
  return [
    Column(f"{prefix} {r.name}", make=lambda a=r.block_actions: ReplaySchedule(a), grid=space)
    for r in results
  ]


def shuffle_steps(actions: np.ndarray, seed: int) -> np.ndarray:
  """[blocks, T] actions with each step's column permuted across blocks (one permutation per step).

  Keeps every step's joint action mix, hence the per-step and overall budgets,
  exactly; breaks the tie between a block's text and the actions it got.
  """
  actions = np.asarray(actions, np.int32)
  rng = np.random.default_rng(seed)
  cols = [actions[rng.permutation(len(actions)), t] for t in range(actions.shape[1])]
  return np.stack(cols, axis=1) if cols else actions.copy()


def shuffled_columns(results: Sequence, space: ActionSpace, seed: int, names: Sequence[str]):
  """One column replaying each result's `block_actions` shuffled across blocks per step."""
  shuffled = [shuffle_steps(r.block_actions, seed) for r in results]
  return [
    Column(n, make=functools.partial(ReplaySchedule, a), grid=space)
    for n, a in zip(names, shuffled)
  ]
