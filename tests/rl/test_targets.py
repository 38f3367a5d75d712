"""Budget target sampling (method §9.1): list > range > default, per axis."""

import dataclasses

import jax
import numpy as np
import pytest

from sol_jax.config import RLCfg
from sol_jax.rl.targets import sample_targets

N = 4000  # draws for the distribution checks


def _cfg(**kw):
  return dataclasses.replace(RLCfg(), **kw)


def test_deterministic_given_rng():
  cfg = RLCfg()
  a = sample_targets(jax.random.key(3), cfg, 8)
  b = sample_targets(jax.random.key(3), cfg, 8)
  c = sample_targets(jax.random.key(4), cfg, 8)
  assert a.shape == (8, 3) and a.dtype == np.float32
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  jitted = jax.jit(sample_targets, static_argnums=(1, 2))
  np.testing.assert_array_equal(jitted(jax.random.key(3), cfg, 8), a)


def test_ranges_are_uniform():
  # Defaults are ranges on all three axes: κ [0.1, 1], ρ [0.4, 1], η [0.3125, 1].
  t = np.asarray(sample_targets(jax.random.key(0), RLCfg(), N))
  for col, (lo, hi) in enumerate([(0.1, 1.0), (0.4, 1.0), (0.3125, 1.0)]):
    x = t[:, col]
    assert x.min() >= lo and x.max() <= hi
    # Uniform: mean (lo+hi)/2 and std (hi-lo)/sqrt(12); 5 sigma of the estimator.
    sd = (hi - lo) / np.sqrt(12)
    assert abs(x.mean() - (lo + hi) / 2) < 5 * sd / np.sqrt(N)
    assert abs(x.std() - sd) < 0.05 * sd
    # Each decile of the range gets about a tenth of the draws.
    counts = np.histogram(x, bins=10, range=(lo, hi))[0]
    assert np.all(np.abs(counts - N / 10) < 5 * np.sqrt(N / 10))


def test_list_wins_over_range_and_is_uniform():
  levels = (0.2, 0.35, 0.9)
  cfg = _cfg(budget_kappa_list=levels, budget_kappa_min=0.1, budget_kappa_max=1.0)
  kappa = np.asarray(sample_targets(jax.random.key(1), cfg, N))[:, 0]
  values, counts = np.unique(kappa, return_counts=True)
  np.testing.assert_allclose(values, levels, rtol=1e-7)
  assert np.all(np.abs(counts - N / 3) < 5 * np.sqrt(N / 3))


def test_default_when_no_list_and_no_range():
  cfg = _cfg(
    budget_rho_min=None,
    budget_rho_max=None,
    budget_eta_min=None,
    budget_eta_max=None,
    budget_rho_default=0.6,
    budget_eta_default=7 / 16,
  )
  t = np.asarray(sample_targets(jax.random.key(2), cfg, 5))
  np.testing.assert_array_equal(t[:, 1], np.float32(0.6))
  np.testing.assert_array_equal(t[:, 2], np.float32(0.4375))
  assert len(np.unique(t[:, 0])) == 5  # κ still drawn from its range


def test_axes_draw_independently():
  # Reconfiguring one axis leaves the others' draws unchanged.
  a = sample_targets(jax.random.key(5), RLCfg(), 16)
  b = sample_targets(jax.random.key(5), _cfg(budget_rho_list=(0.5, 0.7)), 16)
  np.testing.assert_array_equal(a[:, 0], b[:, 0])
  np.testing.assert_array_equal(a[:, 2], b[:, 2])
  assert set(np.asarray(b[:, 1]).tolist()) <= {np.float32(0.5), np.float32(0.7)}


@pytest.mark.parametrize("batch", [0, -1, 2.0, True])
def test_bad_batch_raises(batch):
  with pytest.raises(ValueError, match="batch"):
    sample_targets(jax.random.key(0), RLCfg(), batch)
