"""Harness providers for the EMC/DAC heuristics (method §12.5), alone or mixed with static columns.

Both are frozen (hashable) dataclasses for `harness.run_controlled`:

- `HeuristicProvider(kind, space)`: every column runs one heuristic. inputs =
  targets [B, K, 3] (κ*, raw ρ*, η* = b*/16), one target triple per column.
- `MixedProvider(space)`: each column is a precomputed static schedule, EMC or
  DAC, so that a whole baseline sweep shares ONE dense prefill per batch.
  inputs = `MixedInputs`.

`heuristic_columns` gives EMC/DAC columns for `plan.evaluate_plan`, which runs
them through `MixedProvider`. The step rule itself is `heuristics.py`.

Per-block residual budgets: the heuristic state covers the B·K rows and counts
the block's steps left. Non-effective steps (kv_len ≤ Ts+Tw+1) execute the dense
action and are excluded from the budget; since kv_len only grows, they all come
before the first effective step, so "steps left" decremented on every step
equals the block's effective steps left at each effective step (the count
`heuristic_schedule` starts from).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from sol_jax.efficiency.actions import ActionSpace
from sol_jax.evaluation.axis_levels import targets_label
from sol_jax.evaluation.harness import StepContext
from sol_jax.evaluation.heuristics import GAIN, TOL, HeuristicState, heuristic_step, init_state
from sol_jax.evaluation.schedule_eval import Column

KINDS = ("emc", "dac")
# Column kinds of MixedProvider.
STATIC, EMC, DAC = 0, 1, 2


def _check_targets(targets: jax.Array, batch: int, schedules: int) -> None:
  if targets.shape != (batch, schedules, 3):
    raise ValueError(
      f"heuristic targets must have shape [B, K, 3] = {(batch, schedules, 3)} "
      f"(kappa, rho, eta=bits/16 per column), got {targets.shape}."
    )


def _heuristic_act(
  space: ActionSpace,
  state: HeuristicState,
  signal: jax.Array,
  targets: jax.Array,
  ctx: StepContext,
  gain: float,
  tol: float,
) -> tuple[jax.Array, HeuristicState]:
  """One EMC/DAC step over [B, K] rows -> (actions [B, K], state)."""
  b, k = signal.shape
  new, action = heuristic_step(
    state,
    signal.reshape(b * k),
    targets.reshape(b * k, 3),
    space,
    effective=ctx.effective,
    gain=gain,
    tol=tol,
  )
  # Count non-effective steps as spent too (see module docstring).
  new = new._replace(left=jnp.where(ctx.effective, new.left, new.left - 1.0))
  return action.reshape(b, k), new


@dataclasses.dataclass(frozen=True)
class HeuristicProvider:
  """EMC (entropy signal) or DAC (hidden-state drift signal) in every column."""

  kind: str
  space: ActionSpace
  gain: float = GAIN
  tol: float = TOL

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"heuristic kind {self.kind!r} is unknown; use one of {KINDS}.")

  @property
  def needs_entropy(self) -> bool:
    return self.kind == "emc"

  @property
  def needs_drift(self) -> bool:
    return self.kind == "dac"

  def init(self, inputs, batch: int, schedules: int, horizon: int) -> HeuristicState:
    _check_targets(inputs, batch, schedules)
    return init_state(batch * schedules, horizon)

  def act(self, inputs, state, ctx: StepContext):
    signal = ctx.entropy if self.kind == "emc" else ctx.drift
    return _heuristic_act(self.space, state, signal, inputs, ctx, self.gain, self.tol)

  def observe(self, inputs, state, ctx, executed):
    return state


def heuristic_columns(
  kind: str, targets: Sequence[Sequence[float]], space: Optional[ActionSpace] = None
) -> list[Column]:
  """EMC or DAC at each target triple, choosing on `space` (None: the execution grid)."""
  return [
    Column(f"{kind} {targets_label(t)}", kind, targets=tuple(float(x) for x in t), grid=space)
    for t in targets
  ]


class MixedInputs(NamedTuple):
  """Per-column inputs of `MixedProvider`."""

  actions: jax.Array  # [B, K, T] int32 static schedule (ignored in heuristic columns)
  targets: jax.Array  # [B, K, 3] heuristic targets (ignored in static columns)
  kind: jax.Array  # [K] int32: STATIC, EMC or DAC


@dataclasses.dataclass(frozen=True)
class MixedProvider:
  """Static, EMC and DAC columns side by side in one controlled run.

  The heuristics choose on `space`; with `index_map` (space index -> index of
  the harness's execution grid, which must contain `space`'s levels) their
  choices are translated, so e.g. 3L heuristics run beside FL constants.
  Static schedules are given in execution-grid indices.
  """

  space: ActionSpace
  index_map: Optional[tuple[int, ...]] = None
  gain: float = GAIN
  tol: float = TOL
  needs_entropy = True
  needs_drift = True

  def init(self, inputs: MixedInputs, batch: int, schedules: int, horizon: int) -> HeuristicState:
    _check_targets(inputs.targets, batch, schedules)
    if inputs.kind.shape != (schedules,) or inputs.actions.shape != (batch, schedules, horizon):
      raise ValueError(
        f"MixedInputs: kind must be [K] = {(schedules,)} and actions [B, K, T] = "
        f"{(batch, schedules, horizon)}; got {inputs.kind.shape} and "
        f"{inputs.actions.shape}."
      )
    return init_state(batch * schedules, horizon)

  def act(self, inputs: MixedInputs, state, ctx: StepContext):
    kind = inputs.kind[None, :]
    signal = jnp.where(kind == EMC, ctx.entropy, ctx.drift)
    heuristic, state = _heuristic_act(
      self.space, state, signal, inputs.targets, ctx, self.gain, self.tol
    )
    if self.index_map is not None:
      heuristic = jnp.asarray(self.index_map, jnp.int32)[heuristic]
    static = jnp.take(inputs.actions, ctx.t, axis=2).astype(jnp.int32)
    return jnp.where(kind == STATIC, static, heuristic), state

  def observe(self, inputs, state, ctx, executed):
    return state
