"""Policy observations: per-step inputs and the 8 budget scalars (method §7, §8.1).

Everything here is a pure jnp function over rows (rollouts), so it runs inside
the rollout `lax.scan` and vmaps over the schedule axis.
"""

from __future__ import annotations

from typing import NamedTuple, Union

import jax
import jax.numpy as jnp

NUM_SCALARS = 8  # [(t+1)/T, eff, kappa*, rho*, eta*, 3 running deviations]
NUM_AXES = 3  # kappa (token keep), rho / rho_max (MLP-input keep), eta = b / 16

ArrayLike = Union[jax.Array, float, int]


class PolicyObs(NamedTuple):
  """Policy input for one step ([N, ...]) or an episode ([N, T, ...]).

  `targets` is always [N, 3]: the budget targets are constant within an episode.
  """

  hidden: jax.Array  # [..., D] post-final-norm LM hidden at the previous position
  token_embed: jax.Array  # [..., D_emb] input-embedding row of the current token
  scalars: jax.Array  # [..., 8] from `step_scalars` / `episode_scalars`
  prev_action: jax.Array  # [...] int; the BOS index A at t = 0
  targets: jax.Array  # [N, 3] raw (kappa*, rho*, eta*)


class UsageTracker(NamedTuple):
  """Per-row sums of nominal usage over effective steps, and their count."""

  sums: jax.Array  # [N, 3] float32
  count: jax.Array  # [N] float32; the same mask gates all three axes


def _check_targets(targets: jax.Array, rows: int | None = None) -> None:
  if targets.ndim != 2 or targets.shape[-1] != NUM_AXES:
    raise ValueError(f"targets must have shape [N, 3] (kappa*, rho*, eta*), got {targets.shape}.")
  if rows is not None and targets.shape[0] != rows:
    raise ValueError(
      f"targets has {targets.shape[0]} rows but the tracker/usage has {rows}; "
      "pass one target triple per row."
    )


def init_tracker(batch: int) -> UsageTracker:
  """An empty tracker for `batch` rows (start of an episode or after a refresh)."""
  if batch < 1:
    raise ValueError(f"batch must be >= 1, got {batch}.")
  return UsageTracker(
    sums=jnp.zeros((batch, NUM_AXES), jnp.float32), count=jnp.zeros((batch,), jnp.float32)
  )


def update(
  tracker: UsageTracker,
  kappa: jax.Array,
  rho_ratio: jax.Array,
  eta: jax.Array,
  effective: jax.Array,
) -> UsageTracker:
  """Adds one step's nominal usage; non-effective rows are left unchanged.

  Args:
    tracker: the state before this step.
    kappa, rho_ratio, eta: [N] executed action's kappa, rho / rho_max, b / 16.
    effective: [N] bool (or 0/1) effective-step flag.
  """
  usage = jnp.stack([jnp.asarray(kappa), jnp.asarray(rho_ratio), jnp.asarray(eta)], axis=-1).astype(
    jnp.float32
  )
  if usage.shape != tracker.sums.shape:
    raise ValueError(
      f"kappa/rho_ratio/eta must each have shape [N]={tracker.count.shape}, "
      f"got stacked shape {usage.shape}."
    )
  eff = jnp.asarray(effective).astype(jnp.float32)
  return UsageTracker(sums=tracker.sums + eff[:, None] * usage, count=tracker.count + eff)


def running_means(tracker: UsageTracker, targets: jax.Array) -> jax.Array:
  """[N, 3] means over the effective steps so far; the target where there are none."""
  _check_targets(targets, tracker.count.shape[0])
  has = tracker.count[:, None] > 0
  means = tracker.sums / jnp.maximum(tracker.count, 1.0)[:, None]
  return jnp.where(has, means, targets.astype(jnp.float32))


def episode_means(tracker: UsageTracker) -> jax.Array:
  """[N, 3] episode-average usage for the budget penalty: sums / max(1, N_eff)."""
  return tracker.sums / jnp.maximum(tracker.count, 1.0)[:, None]


def _assemble(
  progress: jax.Array, effective: jax.Array, targets: jax.Array, means: jax.Array
) -> jax.Array:
  """Concatenates the 8 scalars; `targets` broadcasts against `means`."""
  targets = jnp.broadcast_to(targets, means.shape)
  return jnp.concatenate(
    [progress[..., None], effective[..., None], targets, means - targets], axis=-1
  )


def step_scalars(
  t: ArrayLike, horizon: ArrayLike, effective: jax.Array, targets: jax.Array, tracker: UsageTracker
) -> jax.Array:
  """[N, 8] scalars for step t, from the tracker of steps strictly before t.

  Args:
    t: step index within the episode, scalar or [N] (may be traced).
    horizon: the progress denominator T (runtime episode length at inference).
    effective: [N] effective flag of step t.
    targets: [N, 3] raw targets.
    tracker: usage over steps 0 .. t-1 (call `update` only after this).
  """
  targets = jnp.asarray(targets, jnp.float32)
  means = running_means(tracker, targets)
  rows = targets.shape[0]
  progress = (jnp.asarray(t, jnp.float32) + 1.0) / jnp.asarray(horizon, jnp.float32)
  progress = jnp.broadcast_to(progress, (rows,))
  eff = jnp.broadcast_to(jnp.asarray(effective).astype(jnp.float32), (rows,))
  return _assemble(progress, eff, targets, means)


def _exclusive_cumsum(x: jax.Array) -> jax.Array:
  """Cumulative sum over axis 1 shifted right by one (0 at t = 0)."""
  pad = [(0, 0)] * x.ndim
  pad[1] = (1, 0)
  return jnp.pad(jnp.cumsum(x, axis=1), pad)[:, :-1]


def episode_scalars(
  usage: jax.Array, effective: jax.Array, targets: jax.Array, horizon: ArrayLike | None = None
) -> jax.Array:
  """[N, T, 8] scalars for a whole episode at once (exclusive prefix sums).

  Args:
    usage: [N, T, 3] nominal (kappa, rho / rho_max, eta) of the executed actions.
    effective: [N, T] effective-step flags.
    targets: [N, 3] raw targets.
    horizon: progress denominator; defaults to T.
  """
  usage = jnp.asarray(usage, jnp.float32)
  if usage.ndim != 3 or usage.shape[-1] != NUM_AXES:
    raise ValueError(f"usage must have shape [N, T, 3], got {usage.shape}.")
  rows, steps, _ = usage.shape
  if jnp.shape(effective) != (rows, steps):
    raise ValueError(
      f"effective must have shape [N, T]={(rows, steps)}, got {jnp.shape(effective)}."
    )
  targets = jnp.asarray(targets, jnp.float32)
  _check_targets(targets, rows)
  eff = jnp.asarray(effective).astype(jnp.float32)
  # Exclusive prefix sums: the features at t see only steps < t.
  sums = _exclusive_cumsum(eff[..., None] * usage)
  count = _exclusive_cumsum(eff)
  means = jnp.where(
    count[..., None] > 0, sums / jnp.maximum(count, 1.0)[..., None], targets[:, None, :]
  )
  horizon = steps if horizon is None else horizon
  progress = (jnp.arange(steps, dtype=jnp.float32) + 1.0) / jnp.asarray(horizon, jnp.float32)
  progress = jnp.broadcast_to(progress, (rows, steps))
  return _assemble(progress, eff, targets[:, None, :], means)
