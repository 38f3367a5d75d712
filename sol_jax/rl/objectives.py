"""The GRPO objective as pure jnp functions (method §9.2-9.6).

Arrays are laid out [B, K, T] (inputs, schedules of one input, steps) unless a
docstring says otherwise. Mode strings, γ, the tolerance and the coefficients
are static Python values (they pick code paths); everything else may be traced,
so every function here runs under `jax.jit` and `jax.vmap`.

Pipeline of one data batch (`compute_advantages` chains it):
  r [B,K,T] -> G = rewards_to_go(r) -> Pen = budget_penalty(episode means)
  -> R = returns(G, Pen) -> Â = group_advantages(R) -> A = whiten(Â).

With rl.penalty_mode="expected" (a deviation, BUILD_NOTES session 8) R = G, and
the loss adds `expected_penalty` -- the penalty of the policy's expected usage on
the visited states, differentiable in the policy -- scaled like the returns were.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp

from sol_jax.config import RLCfg
from sol_jax.efficiency.actions import ActionSpace

AGGREGATIONS = ("sum", "max", "none")
GRPO_LEVELS = ("process", "outcome")
GROUP_NORMS = ("center", "zscore")
STD_FLOOR = 1e-6  # clamp for every standard deviation we divide by (method §9.5)
NUM_AXES = 3  # (κ, ρ/ρ_max, η)

ArrayLike = Union[jax.Array, float, Sequence[float]]


def _float(x: ArrayLike) -> jax.Array:
  """At least float32, so integer or weakly-typed inputs do not truncate."""
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _choice(name: str, value: str, allowed: Sequence[str]) -> None:
  if value not in allowed:
    raise ValueError(f"{name}={value!r} is not supported; use one of {tuple(allowed)}.")


def step_rewards(
  logp_token: jax.Array, kl: Optional[jax.Array] = None, kl_weight: float = 0.0
) -> jax.Array:
  """r_t = (1 − w) log p_eff(x_{t+1}) − w KL(p_dense ‖ p_eff) (method §9.2).

  With w = 0 (every official config) this is the raw log-likelihood of the
  teacher token under the compressed model, and `kl` is not needed.
  """
  w = float(kl_weight)
  if not 0.0 <= w <= 1.0:
    raise ValueError(f"kl_weight={kl_weight} must be in [0, 1] (config rl.task_w_kl).")
  logp = _float(logp_token)
  if w == 0.0:
    return logp
  if kl is None:
    raise ValueError(
      f"kl_weight={w} > 0 needs the per-step KL(dense ‖ compressed); "
      "pass kl= from the dense reference decode."
    )
  return (1.0 - w) * logp - w * _float(kl)


def rewards_to_go(rewards: jax.Array, agg: str = "sum", gamma: float = 0.85) -> jax.Array:
  """Aggregates per-step rewards along the last (step) axis (method §9.3).

  "sum": G_t = Σ_{j≥t} γ^{j−t} r_j. "max": M_t = max(r_t, γ·M_{t+1}), M_{T−1} = r_{T−1}.
  "none", or γ outside [0, 1): r unchanged (γ is static: a Python float).
  """
  _choice("reward_agg", agg, AGGREGATIONS)
  r = _float(rewards)
  if r.ndim < 1 or r.shape[-1] < 1:
    raise ValueError(f"rewards must have a non-empty step axis last, got shape {r.shape}.")
  gamma = float(gamma)
  if agg == "none" or not 0.0 <= gamma < 1.0:
    return r
  if agg == "sum":
    combine = lambda r_t, later: r_t + gamma * later
  else:
    combine = lambda r_t, later: jnp.maximum(r_t, gamma * later)

  def body(later, r_t):
    out = combine(r_t, later)
    return out, out

  steps = jnp.moveaxis(r, -1, 0)
  # Seed the reverse scan with the last step itself: a −inf seed for "max" would
  # give 0·(−inf) = nan at γ = 0.
  _, earlier = jax.lax.scan(body, steps[-1], steps[:-1], reverse=True)
  return jnp.moveaxis(jnp.concatenate([earlier, steps[-1:]], axis=0), 0, -1)


def dead_zone_square(gap: jax.Array, tolerance: float = 0.02) -> jax.Array:
  """φ(g) = max(|g| − tol, 0)²: two-sided, zero inside the dead zone (method §9.4)."""
  return jnp.square(jnp.maximum(jnp.abs(_float(gap)) - jnp.float32(tolerance), 0.0))


def budget_penalty(
  episode_means: jax.Array, targets: jax.Array, alphas: ArrayLike, tolerance: float = 0.02
) -> jax.Array:
  """Pen = Σ_axis α · φ(mean − target) per rollout (method §9.4).

  Args:
    episode_means: [B, K, 3] episode averages (κ̄, ρ̄/ρ_max, η̄) over effective
      steps, e.g. `policy.observation.episode_means(tracker).reshape(B, K, 3)`.
    targets: [B, 3] per-input targets (κ*, ρ*, η*), shared by the K rollouts;
      [B, K, 3] is accepted too.
    alphas: [3] weights (α_κ, α_ρ, α_η). The caller must already have zeroed
      the weight of every single-level axis, i.e. pass
      `space.penalty_weights(cfg.alpha_kappa, cfg.alpha_rho, cfg.alpha_eta)`
      (`compute_advantages` does).
    tolerance: dead-zone half-width (config rl.penalty_tolerance).

  Returns:
    [B, K] penalties, in nats.
  """
  means, targets, alphas = _float(episode_means), _float(targets), _float(alphas)
  if means.ndim < 1 or means.shape[-1] != NUM_AXES:
    raise ValueError(f"episode_means must end in the 3 axes (κ, ρ, η), got shape {means.shape}.")
  if alphas.shape != (NUM_AXES,):
    raise ValueError(f"alphas must have shape (3,) = (α_κ, α_ρ, α_η), got {alphas.shape}.")
  if targets.ndim == means.ndim - 1:
    targets = jnp.expand_dims(targets, -2)  # one target triple per input, over K
  try:
    jnp.broadcast_shapes(means.shape, targets.shape)
  except ValueError:
    raise ValueError(
      f"targets shape {targets.shape} does not broadcast against episode_means "
      f"{means.shape}; pass [B, 3] or [B, K, 3] targets."
    ) from None
  return jnp.sum(alphas * dead_zone_square(means - targets, tolerance), axis=-1)


def returns(rewards_to_go: jax.Array, penalty: jax.Array, level: str = "process") -> jax.Array:
  """R [B, K, T]: the episode penalty subtracted undiscounted from every step (method §9.4).

  "process": R_t = G_t − Pen. "outcome": R_t = G_0 − Pen at every step.
  """
  _choice("grpo_level", level, GRPO_LEVELS)
  g, pen = _float(rewards_to_go), _float(penalty)
  if pen.shape != g.shape[:-1]:
    raise ValueError(
      f"penalty must have shape {g.shape[:-1]} (the rewards-to-go without the "
      f"step axis), got {pen.shape}."
    )
  if level == "outcome":
    g = jnp.broadcast_to(g[..., :1], g.shape)
  return g - pen[..., None]


def group_advantages(values: jax.Array, norm: str = "center") -> jax.Array:
  """Â [B, K, T]: per input and step, the returns R centred over the K rollouts (method §9.5.1).

  "zscore" also divides by the population std over K, clamped to ≥ 1e-6.
  """
  _choice("grpo_norm", norm, GROUP_NORMS)
  r = _float(values)
  if r.ndim != 3:
    raise ValueError(f"returns must be [B, K, T] (inputs, rollouts, steps), got shape {r.shape}.")
  centred = r - jnp.mean(r, axis=1, keepdims=True)
  if norm == "zscore":
    centred = centred / jnp.maximum(jnp.std(r, axis=1, keepdims=True), STD_FLOOR)
  return centred


def whiten(advantages: jax.Array, enabled: bool = True) -> jax.Array:
  """(A − mean) / max(std, 1e-6) over ALL entries of one data batch (method §9.5.2).

  Call it per data batch, before buffering, never per minibatch.
  """
  a = _float(advantages)
  if not enabled:
    return a
  return (a - jnp.mean(a)) / jnp.maximum(jnp.std(a), STD_FLOOR)


class AdvantageTerms(NamedTuple):
  """Every intermediate of `compute_advantages`, for logging. All [B, K, T] but `penalty`."""

  advantages: jax.Array  # A, what the loss uses
  rewards_to_go: jax.Array  # G
  penalty: jax.Array  # [B, K] of the realized usage (always computed, for logging)
  returns: jax.Array  # R = G − Pen ("sampled") or G ("expected")
  scale: jax.Array  # [] what the centred returns were divided by (1 without whitening)


def compute_advantages(
  rewards: jax.Array, episode_means: jax.Array, targets: jax.Array, cfg: RLCfg, space: ActionSpace
) -> AdvantageTerms:
  """Method §9.3-9.5 for one data batch, configured by `cfg` (rl section).

  Args:
    rewards: [B, K, T] per-step rewards (`step_rewards`).
    episode_means: [B, K, 3] episode usage averages (see `budget_penalty`).
    targets: [B, 3] sampled targets (`rl.targets.sample_targets`).
    cfg: the rl config; its α of single-level axes of `space` are forced to 0.
    space: the action grid.
  """
  g = rewards_to_go(rewards, cfg.reward_agg, cfg.reward_gamma)
  alphas = space.penalty_weights(cfg.alpha_kappa, cfg.alpha_rho, cfg.alpha_eta)
  pen = budget_penalty(episode_means, targets, alphas, cfg.penalty_tolerance)
  if pen.shape != g.shape[:-1]:
    raise ValueError(
      f"episode_means {jnp.shape(episode_means)} and rewards {g.shape} disagree "
      "on [B, K]; pass both per input and rollout."
    )
  in_returns = pen if cfg.penalty_mode == "sampled" else jnp.zeros_like(pen)
  r = returns(g, in_returns, cfg.grpo_level)
  centred = group_advantages(r, cfg.grpo_norm)
  adv = whiten(centred, cfg.adv_whiten_global)
  scale = jnp.maximum(jnp.std(centred), STD_FLOOR) if cfg.adv_whiten_global else jnp.ones(())
  return AdvantageTerms(adv, g, pen, r, scale)


def expected_penalty(
  probs: jax.Array,
  features: jax.Array,
  effective: jax.Array,
  targets: jax.Array,
  alphas: ArrayLike,
  tolerance: float = 0.02,
) -> jax.Array:
  """Pen of the *expected* episode usage: [N] from probs [N, T, A] (penalty_mode="expected").

  features [A, 3] per-action usage (κ, ρ/ρ_max, η); effective [N, T] (1: the step
  counts); targets [N, 3]. The expected usage of step t is Σ_a π(a | o_t) f_a, its
  episode mean is taken over effective steps, and the penalty is `budget_penalty`'s.
  Unlike the sampled penalty it does not vary with which actions were drawn, so it
  adds no sampling noise to the gradient; it does not see a rollout's own misses.
  """
  probs, f, e = _float(probs), _float(features), _float(effective)
  usage = jnp.einsum("nta,ac->ntc", probs, f)
  means = jnp.sum(usage * e[..., None], axis=1) / jnp.maximum(jnp.sum(e, axis=1), 1.0)[:, None]
  return budget_penalty(means, targets, alphas, tolerance)


def _masked_mean(x: jax.Array, mask: Optional[jax.Array]) -> jax.Array:
  if mask is None:
    return jnp.mean(x)
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def policy_loss(
  logp_new: jax.Array,
  logp_old: jax.Array,
  advantages: jax.Array,
  entropy: jax.Array,
  clip: float = 0.2,
  entropy_coef: float = 0.05,
  mask: Optional[jax.Array] = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """PPO-clip surrogate with an entropy bonus, no KL and no value term (method §9.6).

  Args:
    logp_new: [N, T] tempered log π_new(a) of the stored actions (differentiable).
    logp_old: [N, T] tempered log-probabilities stored at rollout time.
    advantages: [N, T] whitened advantages.
    entropy: [N, T] entropy of the tempered π_new (differentiable).
    clip: ε of clip(ratio, 1 − ε, 1 + ε).
    entropy_coef: c in L = L_pg − c · mean(H).
    mask: optional [N, T] 1/0 weights to drop padded decisions; the means then
      run over the unmasked entries only (default: all entries).

  Returns:
    (loss, metrics) with metrics pg_loss, entropy, clip_fraction (share of
    entries with |ratio − 1| > ε) and approx_kl (the k3 estimator
    mean((ratio − 1) − log ratio) of KL(old ‖ new), ≥ 0).
  """
  logp_new, entropy = _float(logp_new), _float(entropy)
  logp_old = jax.lax.stop_gradient(_float(logp_old))
  adv = jax.lax.stop_gradient(_float(advantages))
  shapes = {jnp.shape(x) for x in (logp_new, logp_old, adv, entropy)}
  if mask is not None:
    mask = _float(mask)
    shapes.add(mask.shape)
  if len(shapes) != 1:
    raise ValueError(
      "logp_new, logp_old, advantages, entropy (and mask) must share one "
      f"[N, T] shape, got {[jnp.shape(x) for x in (logp_new, logp_old, adv, entropy)]}"
      + (f" and mask {mask.shape}" if mask is not None else "")
      + "."
    )
  log_ratio = logp_new - logp_old
  ratio = jnp.exp(log_ratio)
  surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip, 1.0 + clip) * adv)
  pg_loss = -_masked_mean(surrogate, mask)
  mean_entropy = _masked_mean(entropy, mask)
  loss = pg_loss - entropy_coef * mean_entropy
  ratio_sg, log_ratio_sg = jax.lax.stop_gradient(ratio), jax.lax.stop_gradient(log_ratio)
  metrics = {
    "pg_loss": jax.lax.stop_gradient(pg_loss),
    "entropy": jax.lax.stop_gradient(mean_entropy),
    "clip_fraction": _masked_mean((jnp.abs(ratio_sg - 1.0) > clip).astype(jnp.float32), mask),
    "approx_kl": _masked_mean((ratio_sg - 1.0) - log_ratio_sg, mask),
  }
  return loss, metrics
