"""Budget accounting against hand-computed small cases (method §7)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sol_jax.efficiency import budget
from sol_jax.efficiency.actions import ActionSpace

# ρ_max = 0.8 so that the ρ / ρ_max normalisation is visible.
SPACE = ActionSpace.from_config([0.2, 1.0], ["s40", "s80"], ["q4", "q16"])


def idx(kappa, rho, bits):
  return SPACE.lookup(kappa, rho, bits)


def test_step_usage_is_nominal():
  a = jnp.array([idx(0.2, 0.4, 4), idx(1.0, 0.8, 16)])
  u = budget.step_usage(a, SPACE)
  np.testing.assert_allclose(u.kappa, [0.2, 1.0])
  np.testing.assert_allclose(u.rho, [0.5, 1.0])  # 0.4 / 0.8, 0.8 / 0.8
  np.testing.assert_allclose(u.eta, [0.25, 1.0])


def test_episode_averages_hand_computed():
  actions = jnp.array(
    [
      [idx(0.2, 0.4, 4), idx(1.0, 0.8, 4), idx(0.2, 0.8, 16)],
      [idx(1.0, 0.8, 16), idx(0.2, 0.4, 4), idx(0.2, 0.4, 16)],
      [idx(0.2, 0.4, 4), idx(0.2, 0.4, 4), idx(0.2, 0.4, 4)],
    ]
  )
  effective = jnp.array([[1, 1, 1], [0, 1, 1], [0, 0, 0]], bool)
  avg = jax.jit(budget.episode_averages, static_argnums=2)(actions, effective, SPACE)
  # Row 0: κ (0.2+1+0.2)/3, ρ/ρmax (0.5+1+1)/3, η (0.25+0.25+1)/3.
  # Row 1: first step excluded: κ (0.2+0.2)/2, ρ (0.5+0.5)/2, η (0.25+1)/2.
  # Row 2: no effective step: N_eff = 1, sums 0.
  np.testing.assert_allclose(avg.kappa, [1.4 / 3, 0.2, 0.0], rtol=1e-6)
  np.testing.assert_allclose(avg.rho, [2.5 / 3, 0.5, 0.0], rtol=1e-6)
  np.testing.assert_allclose(avg.eta, [1.5 / 3, 0.625, 0.0], rtol=1e-6)


def test_pooled_realized_is_not_divided_by_rho_max():
  actions = jnp.array(
    [[idx(0.2, 0.4, 4), idx(1.0, 0.8, 16)], [idx(1.0, 0.4, 16), idx(0.2, 0.8, 16)]]
  )
  effective = jnp.array([[True, True], [False, True]])
  out = budget.pooled_realized(actions, effective, SPACE)
  # Effective steps: (0.2, 0.4, 4), (1.0, 0.8, 16), (0.2, 0.8, 16).
  np.testing.assert_allclose(out["avg_keep_effective"], 1.4 / 3, rtol=1e-6)
  np.testing.assert_allclose(out["avg_prune_keep"], 2.0 / 3, rtol=1e-6)
  np.testing.assert_allclose(out["avg_quant_ratio"], 2.25 / 3, rtol=1e-6)
  # Pooling two batches equals pooling their concatenation.
  first = budget.schedule_usage(actions[:1], effective[:1], SPACE, axis=None)
  second = budget.schedule_usage(actions[1:], effective[1:], SPACE, axis=None)
  merged = budget.realized_averages(first.merge(second))
  for key, value in out.items():
    np.testing.assert_allclose(merged[key], value, rtol=1e-6)


def test_running_means_and_accumulate():
  targets = budget.Averages(0.3, 0.7, 0.5)
  usage = budget.Usage.zeros((2,))
  first = budget.running_means(usage, targets, SPACE)
  np.testing.assert_allclose(np.stack(first), [[0.3, 0.3], [0.7, 0.7], [0.5, 0.5]])  # deviation 0
  steps = [
    jnp.array([idx(0.2, 0.4, 4), idx(1.0, 0.8, 16)]),
    jnp.array([idx(1.0, 0.8, 16), idx(0.2, 0.4, 4)]),
  ]
  usage = budget.accumulate(usage, steps[0], jnp.array([True, False]), SPACE)
  after = budget.running_means(usage, targets, SPACE)
  # Row 0 has one effective step; row 1 none yet (still the target).
  np.testing.assert_allclose(np.stack(after), [[0.2, 0.3], [0.5, 0.7], [0.25, 0.5]], rtol=1e-6)
  usage = budget.accumulate(usage, steps[1], None, SPACE)
  whole = budget.schedule_usage(jnp.stack(steps, 1), jnp.array([[1, 1], [0, 1]], bool), SPACE)
  for a, b in zip(usage, whole):
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_net_keep():
  np.testing.assert_allclose(budget.net_keep(0.4, 0.7, 0.25), 0.45)
  avg = budget.episode_averages(jnp.array([[idx(0.2, 0.4, 4)]]), None, SPACE)
  np.testing.assert_allclose(budget.net_keep(*avg), (0.2 + 0.5 + 0.25) / 3, rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_numpy_loop_on_random_schedules(seed):
  rng = np.random.default_rng(seed)
  actions = rng.integers(0, SPACE.num_actions, (5, 7))
  effective = rng.random((5, 7)) < 0.7
  avg = budget.episode_averages(jnp.asarray(actions), jnp.asarray(effective), SPACE)
  for r in range(5):
    picked = [a for a, e in zip(actions[r], effective[r]) if e]
    n = max(1, len(picked))
    kap = sum(SPACE.keep_fracs[SPACE.levels_of(a)[0]] for a in picked) / n
    rho = sum(SPACE.prune_fracs[SPACE.levels_of(a)[1]] / 0.8 for a in picked) / n
    eta = sum(SPACE.quant_bits[SPACE.levels_of(a)[2]] / 16 for a in picked) / n
    np.testing.assert_allclose(
      [avg.kappa[r], avg.rho[r], avg.eta[r]], [kap, rho, eta], rtol=1e-5, atol=1e-7
    )
