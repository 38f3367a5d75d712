"""A budget-head start for fresh policies: the max-entropy schedule that meets the targets.

With the PyTorch-style init the policy is near-uniform whatever the targets
ask, so GRPO first spends hundreds of data batches learning to read them
(BUILD_NOTES, "faster start"). `fit_budget_head` instead fits only the budget
head, before any LM step, so that the initial policy softmax(head(τ) / temper)
is close to the maximum-entropy distribution over actions whose expected
usage (κ, ρ/ρ_max, η) equals τ: a policy that already meets every target in
expectation and is otherwise as uniform (exploratory) as it can be. That
distribution is an exponential family, p_a ∝ exp(λ·f_a), whose λ solves the
convex dual min_λ logΣ_a exp(λ·f_a) − λ·τ (`max_entropy_probs`, Newton).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sol_jax.efficiency import budget
from sol_jax.efficiency.actions import ActionSpace
from sol_jax.policy.network import BUDGET_PARAMS, BudgetHead, PolicyConfig

# Targets at a grid's extreme level need λ → ±∞; they are pulled inside the
# reachable range by this fraction of the range.
EDGE_MARGIN = 0.02


def usage_features(space: ActionSpace) -> np.ndarray:
  """[A, 3] per-action usage (κ, ρ/ρ_max, η) -- what the budget penalty averages.

  A constant of the grid, so also callable while a jitted function is traced.
  """
  with jax.ensure_compile_time_eval():
    usage = budget.step_usage(np.arange(space.num_actions), space)
  return np.stack([np.asarray(u) for u in usage], axis=-1).astype(np.float32)


def max_entropy_probs(features: jax.Array, targets: jax.Array, iters: int = 30) -> jax.Array:
  """[N, A] max-entropy distributions over the A actions with E[f] = each target.

  features [A, 3]; targets [N, 3], clipped into the reachable box (minus EDGE_MARGIN).
  Axes on which every action has the same usage are ignored.
  """
  f = jnp.asarray(features, jnp.float32)
  lo, hi = f.min(0), f.max(0)
  span = hi - lo
  live = span > 0
  tau = jnp.clip(targets, lo + EDGE_MARGIN * span, hi - EDGE_MARGIN * span)
  fc = jnp.where(live, (f - lo) / jnp.where(live, span, 1.0), 0.0)  # [A, 3] in [0, 1]
  tc = jnp.where(live, (tau - lo) / jnp.where(live, span, 1.0), 0.0)

  def solve(t):
    def newton(lam, _):
      p = jax.nn.softmax(fc @ lam)
      mean = p @ fc
      cov = (fc * p[:, None]).T @ fc - jnp.outer(mean, mean)
      cov = cov + jnp.diag(jnp.where(live, 1e-6, 1.0))
      step = jnp.linalg.solve(cov, mean - t)
      return lam - jnp.clip(step, -4.0, 4.0), None  # damped: far targets converge too

    lam, _ = jax.lax.scan(newton, jnp.zeros(3, jnp.float32), None, length=iters)
    return jax.nn.softmax(fc @ lam)

  return jax.vmap(solve)(tc)


def fit_budget_head(
  cfg: PolicyConfig,
  params,
  features: np.ndarray,
  sample_targets: Callable[[jax.Array, int], jax.Array],
  rng: jax.Array,
  *,
  steps: int = 2000,
  samples: int = 4096,
  learning_rate: float = 1e-2,
):
  """`params` with the budget head fitted to the max-entropy distributions.

  sample_targets(key, n) -> [n, 3] targets as training draws them. Minimises
  KL(p_maxent(τ) || softmax(head(τ) / temperature)) over `samples` draws (the
  max-entropy solutions computed once), full-batch Adam with a cosine decay;
  every other parameter is returned unchanged.
  """
  feats = jnp.asarray(features, jnp.float32)
  if feats.shape != (cfg.num_actions, 3):
    raise ValueError(f"features must be [A, 3] = {(cfg.num_actions, 3)}, got {feats.shape}.")
  head = BudgetHead(cfg)
  opt = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))

  @jax.jit
  def run(budget, key):
    tau = sample_targets(key, samples)
    want = max_entropy_probs(feats, tau)
    neg_entropy = jnp.sum(want * jnp.log(jnp.maximum(want, 1e-30)), axis=-1)

    def kl(p):
      logq = jax.nn.log_softmax(head.apply({"params": p}, tau) / cfg.temperature)
      return jnp.mean(neg_entropy - jnp.sum(want * logq, axis=-1))

    def step(carry, _):
      p, state = carry
      grads = jax.grad(kl)(p)
      updates, state = opt.update(grads, state, p)
      return (optax.apply_updates(p, updates), state), None

    (budget, _), _ = jax.lax.scan(step, (budget, opt.init(budget)), None, length=steps)
    return budget

  budget = run({k: params[k] for k in BUDGET_PARAMS}, rng)
  return {**params, **budget}


def expected_usage(cfg: PolicyConfig, params, features: np.ndarray, targets: jax.Array):
  """[N, 3] usage the budget head alone expects at `targets` (tempered softmax)."""
  budget = {k: params[k] for k in BUDGET_PARAMS}
  logits = BudgetHead(cfg).apply({"params": budget}, jnp.asarray(targets, jnp.float32))
  return jax.nn.softmax(logits / cfg.temperature) @ jnp.asarray(features, jnp.float32)
