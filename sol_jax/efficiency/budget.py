"""Nominal budget accounting over effective steps (method §7).

Usage is always the action's nominal (κ, ρ, b/16), never the realized mask
density or FLOPs (method Q8). Everything is jnp and vectorised over leading
(row) axes; steps that are not effective (method §4.6) are excluded.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from sol_jax.efficiency.actions import ActionSpace


class Usage(NamedTuple):
  """Sums of nominal usage over effective steps. ρ is summed raw (not / ρ_max)."""

  kappa: jax.Array
  rho: jax.Array
  eta: jax.Array
  count: jax.Array  # number of effective steps summed

  @classmethod
  def zeros(cls, shape: Sequence[int] = ()) -> "Usage":
    z = jnp.zeros(shape, jnp.float32)
    return cls(z, z, z, z)

  def merge(self, other: "Usage") -> "Usage":
    """Pools two sets of sums (e.g. two evaluation batches)."""
    return Usage(*(a + b for a, b in zip(self, other)))


class Averages(NamedTuple):
  kappa: jax.Array
  rho: jax.Array
  eta: jax.Array


def step_usage(action: jax.Array, space: ActionSpace) -> Averages:
  """Per-step nominal (κ_t, ρ_t / ρ_max, η_t = b_t / 16) of flat action indices."""
  kappa = jnp.asarray(space.kappa)[action]
  rho = jnp.asarray(space.rho)[action] / jnp.float32(space.rho_max)
  eta = jnp.asarray(space.eta)[action]
  return Averages(kappa, rho, eta)


def _effective_mask(action: jax.Array, effective: Optional[jax.Array]) -> jax.Array:
  if effective is None:
    return jnp.ones(jnp.shape(action), jnp.float32)
  return jnp.broadcast_to(jnp.asarray(effective), jnp.shape(action)).astype(jnp.float32)


def accumulate(
  usage: Usage, action: jax.Array, effective: Optional[jax.Array], space: ActionSpace
) -> Usage:
  """Adds one step of per-row actions to per-row running sums."""
  e = _effective_mask(action, effective)
  return Usage(
    usage.kappa + e * jnp.asarray(space.kappa)[action],
    usage.rho + e * jnp.asarray(space.rho)[action],
    usage.eta + e * jnp.asarray(space.eta)[action],
    usage.count + e,
  )


def schedule_usage(
  actions: jax.Array, effective: Optional[jax.Array], space: ActionSpace, axis=-1
) -> Usage:
  """Sums usage of a schedule `actions` (e.g. [rows, T]) over `axis` (None: all)."""
  e = _effective_mask(actions, effective)
  total = lambda x: jnp.sum(e * x, axis=axis)
  return Usage(
    total(jnp.asarray(space.kappa)[actions]),
    total(jnp.asarray(space.rho)[actions]),
    total(jnp.asarray(space.eta)[actions]),
    jnp.sum(e, axis=axis),
  )


def means(usage: Usage, space: ActionSpace) -> Averages:
  """Per-episode means with N_eff = max(1, Σ e_t); ρ divided by ρ_max (reward penalty)."""
  n = jnp.maximum(usage.count, 1.0)
  return Averages(usage.kappa / n, usage.rho / (n * jnp.float32(space.rho_max)), usage.eta / n)


def episode_averages(
  actions: jax.Array, effective: Optional[jax.Array], space: ActionSpace
) -> Averages:
  """(κ̄, ρ̄/ρ_max, η̄) per row of a [rows, T] schedule, as used by the budget penalty."""
  return means(schedule_usage(actions, effective, space), space)


def running_means(usage: Usage, targets: Averages, space: ActionSpace) -> Averages:
  """Means over the previous effective steps; the target where there are none (deviation 0)."""
  avg = means(usage, space)
  seen = usage.count > 0
  return Averages(*(jnp.where(seen, a, jnp.asarray(t, jnp.float32)) for a, t in zip(avg, targets)))


def realized_averages(usage: Usage) -> dict[str, jax.Array]:
  """Reported per-run budgets from usage pooled over all effective steps of all blocks.

  `avg_prune_keep` is the raw ρ average (not divided by ρ_max), as the reference reports it.
  """
  n = jnp.maximum(usage.count, 1.0)
  return {
    "avg_keep_effective": usage.kappa / n,
    "avg_prune_keep": usage.rho / n,
    "avg_quant_ratio": usage.eta / n,
  }


def pooled_realized(
  actions: jax.Array, effective: Optional[jax.Array], space: ActionSpace
) -> dict[str, jax.Array]:
  """`realized_averages` of one batch of schedules, pooled over every row and step."""
  return realized_averages(schedule_usage(actions, effective, space, axis=None))


def net_keep(kappa: jax.Array, rho: jax.Array, eta: jax.Array) -> jax.Array:
  """Pareto x-axis: the unweighted mean of the three ratios (method §7)."""
  return (kappa + rho + eta) / 3.0
