"""KV-pollution impulse test (method §12.8, paper Fig. 7): how long a compressed step keeps hurting.

Per window of P + c + τ + 1 tokens: a dense prefill of P tokens, then c + τ
teacher-forced steps in K columns sharing the prefix. Column 0 is dense at every
step (the reference); every other column compresses the first c steps (the
impulse) and runs dense for the τ tail steps, so any excess NLL in the tail is
carried by the KV entries the impulse wrote. Columns: one grid level of a single
axis (the others dense), Fixed, or the policy choosing its own first c actions.

ΔNLL per step is taken against the dense column of the same call, %Δ = (e^ΔNLL − 1)·100:
- direct: mean over windows of %Δ of the mean ΔNLL over the c impulse steps;
- tail: the same over the τ tail steps; worst-10 %: the mean of the largest tenth
  of the windows' tail values;
- p90 / p95 over windows of the per-window peak tail %Δ (any one tail step);
- the curve: median, p10 and p90 over windows of ΔNLL at each tail offset.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np

from sol_jax.efficiency.actions import ActionSpace
from sol_jax.evaluation.axis_levels import axis_levels

AXIS_NAMES = ("kappa", "rho", "bits")


def single_axis_actions(space: ActionSpace) -> dict[str, int]:
  """{"kappa=0.3": flat action, ...}: every non-top level of one axis, the others at top."""
  axes = axis_levels(space)
  top = [int(np.argmax(ax.values)) for ax in axes]
  out = {}
  for a, (name, ax) in enumerate(zip(AXIS_NAMES, axes)):
    for i, value in enumerate(ax.values):
      if i == top[a]:
        continue
      pos = list(top)
      pos[a] = i
      level = round(value * 16) if name == "bits" else round(value, 3)
      out[f"{name}={level:g}"] = int(space.index_from_levels(*pos))
  return out


def impulse_schedule(first: np.ndarray, horizon: int, dense: int) -> np.ndarray:
  """[B, K, c] impulse actions -> [B, K, horizon] with column 0 and the tail dense."""
  b, k, c = first.shape
  out = np.full((b, k, horizon), dense, np.int32)
  out[:, 1:, :c] = first[:, 1:]
  return out


@dataclasses.dataclass(frozen=True)
class ImpulseOf:
  """A harness provider: `inner` picks the first `steps` actions of columns >= 1;
  column 0 and every later step run the dense action."""

  inner: Any
  steps: int
  dense: int

  @property
  def needs_entropy(self):
    return self.inner.needs_entropy

  @property
  def needs_drift(self):
    return self.inner.needs_drift

  def init(self, inputs, batch, schedules, horizon):
    return self.inner.init(inputs, batch, schedules, horizon)

  def act(self, inputs, state, ctx):
    chosen, state = self.inner.act(inputs, state, ctx)
    column = jnp.arange(chosen.shape[1])[None, :]
    keep = (ctx.t < self.steps) & (column > 0)
    return jnp.where(keep, chosen, jnp.int32(self.dense)), state

  def observe(self, inputs, state, ctx, executed):
    return self.inner.observe(inputs, state, ctx, executed)


class ImpulseMetrics(NamedTuple):
  direct: float  # mean %Δ over the c impulse steps
  tail: float  # mean %Δ over the τ tail steps
  tail_worst10: float  # mean of the worst 10 % of windows' tail %Δ
  peak_p90: float  # p90 over windows of the peak tail %Δ
  peak_p95: float
  curve_median: np.ndarray  # [τ] ΔNLL at each tail offset, median over windows
  curve_p10: np.ndarray
  curve_p90: np.ndarray


def pct(delta_nll):
  return (np.exp(delta_nll) - 1.0) * 100.0


def impulse_metrics(delta: np.ndarray, steps: int) -> ImpulseMetrics:
  """delta [windows, c + τ] ΔNLL against dense -> the §12.8 metrics."""
  delta = np.asarray(delta, np.float64)
  direct = pct(delta[:, :steps].mean(axis=1))
  tail = delta[:, steps:]
  tail_pct = pct(tail.mean(axis=1))
  worst = np.sort(tail_pct)[::-1][: max(1, int(np.ceil(0.1 * len(tail_pct))))]
  peak = pct(tail.max(axis=1))
  return ImpulseMetrics(
    direct=float(direct.mean()),
    tail=float(tail_pct.mean()),
    tail_worst10=float(worst.mean()),
    peak_p90=float(np.percentile(peak, 90)),
    peak_p95=float(np.percentile(peak, 95)),
    curve_median=np.median(tail, axis=0),
    curve_p10=np.percentile(tail, 10, axis=0),
    curve_p90=np.percentile(tail, 90, axis=0),
  )


def random_windows(stream: np.ndarray, length: int, count: int, seed: int) -> np.ndarray:
  """`count` windows of `length` tokens at random offsets of a token stream (sorted)."""
  if len(stream) < length:
    raise ValueError(f"the text has {len(stream)} tokens, fewer than one window of {length}")
  rng = np.random.default_rng(seed)
  room = len(stream) - length + 1
  starts = np.sort(rng.choice(room, size=count, replace=count > room))
  return np.stack([stream[s : s + length] for s in starts]).astype(np.int32)


def summary_rows(names: Sequence[str], deltas: dict[str, np.ndarray], steps: int) -> list[dict]:
  rows = []
  for name in names:
    m = impulse_metrics(deltas[name], steps)
    rows.append(
      {
        "column": name,
        "direct_pct": m.direct,
        "tail_pct": m.tail,
        "tail_worst10_pct": m.tail_worst10,
        "peak_p90_pct": m.peak_p90,
        "peak_p95_pct": m.peak_p95,
        "tail_first_median_dnll": float(m.curve_median[0]),
        "tail_last_median_dnll": float(m.curve_median[-1]),
      }
    )
  return rows
