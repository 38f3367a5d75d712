"""EMC and DAC hand-crafted controllers (method §12.5) as jnp step functions.

Both share one step rule and differ only in the signal u ∈ [0, 1] (per row):
EMC uses the normalised entropy of the previous step's next-token distribution
(`entropy_signal`), DAC the hidden-state drift ½(1 − cos) (`drift_signal`).
Per axis, with the block's running sum s and count n over previous effective
steps and R effective steps left (the current one included):
  1. c = (target·(n + R) − s) / R, clipped to the axis range;
  2. lo/hi: the grid levels bracketing c;
  3. p = (c − lo)/(hi − lo) + γ_h·(u − 0.5), clipped to [0, 1] (γ_h = 0.35);
  4. choose hi if p ≥ 0.5, else lo;
  5. feasible-band clamp: the band [need − v_max·(R−1), need − v_min·(R−1)] with
     need = target·(n + R) − s holds the values that still let the block's
     average hit the target. A choice in the band (within `tol`) stays; otherwise
     the band level nearest to it is taken; if no level lies in the band, the
     level nearest to the band.
With c on a level, lo = hi = c. Units: κ, raw ρ, η = b/16 (targets likewise).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sol_jax.efficiency.actions import ActionSpace
from sol_jax.evaluation.axis_levels import axis_levels

GAIN = 0.35
# Level spacings are ≥ 1/16 in every grid; 1e-4 absorbs float32 noise in running sums.
TOL = 1e-4


class HeuristicState(NamedTuple):
  sums: jax.Array  # [rows, 3] level sums over the block's previous effective steps
  count: jax.Array  # [rows] previous effective steps
  left: jax.Array  # [rows] effective steps left in the block, the next one included


def init_state(rows: int, horizon) -> HeuristicState:
  """Fresh per-block state; `horizon` is the block's number of effective steps (scalar or [rows])."""
  left = jnp.broadcast_to(jnp.asarray(horizon, jnp.float32), (rows,))
  return HeuristicState(jnp.zeros((rows, 3), jnp.float32), jnp.zeros((rows,), jnp.float32), left)


def _choose_level(levels: jax.Array, target, level_sum, count, left, signal, gain, tol):
  """Sorted-level position chosen for one axis, [rows]."""
  vmin, vmax = levels[0], levels[-1]
  r = jnp.maximum(left, 1.0)
  total = target * (count + r)
  need = total - level_sum
  c = jnp.clip(need / r, vmin, vmax)
  top = levels.shape[0] - 1
  lo = jnp.clip(jnp.searchsorted(levels, c + tol, side="right") - 1, 0, top)
  hi = jnp.clip(jnp.searchsorted(levels, c - tol, side="left"), 0, top)
  gap = levels[hi] - levels[lo]
  frac = jnp.where(hi > lo, (c - levels[lo]) / jnp.where(hi > lo, gap, 1.0), 0.0)
  p = jnp.clip(frac + gain * (signal - 0.5), 0.0, 1.0)
  choice = jnp.where(p >= 0.5, hi, lo)
  # Feasible band for this step's value given R - 1 steps after it.
  band_lo = need - vmax * (r - 1.0)
  band_hi = need - vmin * (r - 1.0)
  allowed = (levels >= band_lo[:, None] - tol) & (levels <= band_hi[:, None] + tol)
  chosen_value = levels[choice]
  in_band = jnp.take_along_axis(allowed, choice[:, None], axis=1)[:, 0]
  nearest_in_band = jnp.argmin(
    jnp.where(allowed, jnp.abs(levels - chosen_value[:, None]), jnp.inf), axis=1
  )
  nearest_to_band = jnp.argmin(
    jnp.abs(levels - jnp.clip(chosen_value, band_lo, band_hi)[:, None]), axis=1
  )
  return jnp.where(
    in_band, choice, jnp.where(allowed.any(axis=1), nearest_in_band, nearest_to_band)
  )


def heuristic_step(
  state: HeuristicState,
  signal: jax.Array,
  targets: jax.Array,
  space: ActionSpace,
  *,
  effective: Optional[jax.Array] = None,
  gain: float = GAIN,
  tol: float = TOL,
) -> tuple[HeuristicState, jax.Array]:
  """One EMC/DAC decision per row. targets: [3] or [rows, 3] (κ*, ρ*, η*)."""
  rows = state.count.shape[0]
  signal = jnp.broadcast_to(jnp.asarray(signal, jnp.float32), (rows,))
  targets = jnp.broadcast_to(jnp.asarray(targets, jnp.float32), (rows, 3))
  eff = jnp.ones((rows,), bool) if effective is None else jnp.broadcast_to(effective, (rows,))
  positions, values = [], []
  for axis, ax in enumerate(axis_levels(space)):
    levels = jnp.asarray(ax.sorted_values, jnp.float32)
    pos = _choose_level(
      levels, targets[:, axis], state.sums[:, axis], state.count, state.left, signal, gain, tol
    )
    positions.append(jnp.asarray(ax.sorted_order, jnp.int32)[pos])
    values.append(levels[pos])
  action = jnp.where(eff, space.index_from_levels(*positions), space.forced_dense_index).astype(
    jnp.int32
  )
  e = eff.astype(jnp.float32)
  new_state = HeuristicState(
    state.sums + e[:, None] * jnp.stack(values, axis=1), state.count + e, state.left - e
  )
  return new_state, action


@functools.partial(jax.jit, static_argnums=0, static_argnames=("gain", "tol"))
def heuristic_schedule(
  space: ActionSpace,
  targets: jax.Array,
  signals: jax.Array,
  effective: Optional[jax.Array] = None,
  **kwargs,
) -> jax.Array:
  """Runs `heuristic_step` over precomputed signals [rows, T] (one block per row) -> [rows, T]."""
  signals = jnp.asarray(signals, jnp.float32)
  rows, steps = signals.shape
  eff = (
    jnp.ones((rows, steps), bool)
    if effective is None
    else jnp.broadcast_to(effective, (rows, steps))
  )
  state = init_state(rows, eff.sum(axis=1))

  def body(carry, xs):
    u, e = xs
    return heuristic_step(carry, u, targets, space, effective=e, **kwargs)

  _, actions = jax.lax.scan(body, state, (signals.T, eff.T))
  return actions.T


def entropy_signal(logits: jax.Array, mix: float = 1.0) -> jax.Array:
  """EMC signal: mix·H/ln V + (1 − mix)·(1 − (p_top1 − p_top2)) over the last axis."""
  vocab = logits.shape[-1]
  if vocab < 2:
    raise ValueError(
      f"entropy_signal needs a vocabulary of at least 2 tokens, got logits of shape {logits.shape}."
    )
  logp = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
  p = jnp.exp(logp)
  entropy = -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)
  u = mix * entropy / np.log(vocab)
  if mix != 1.0:
    top2 = jax.lax.top_k(p, 2)[0]
    u = u + (1.0 - mix) * (1.0 - (top2[..., 0] - top2[..., 1]))
  return jnp.clip(u, 0.0, 1.0)


def drift_signal(h_prev: jax.Array, h_prev2: jax.Array, eps: float = 1e-8) -> jax.Array:
  """DAC signal: ½(1 − cos(h_{t−1}, h_{t−2})) over the last axis."""
  a = jnp.asarray(h_prev, jnp.float32)
  b = jnp.asarray(h_prev2, jnp.float32)
  norms = jnp.maximum(jnp.linalg.norm(a, axis=-1), eps) * jnp.maximum(
    jnp.linalg.norm(b, axis=-1), eps
  )
  cos = jnp.sum(a * b, axis=-1) / norms
  return jnp.clip(0.5 * (1.0 - cos), 0.0, 1.0)
