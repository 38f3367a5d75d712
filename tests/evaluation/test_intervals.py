"""Paired bootstrap intervals (issue 10): against a plain loop, identities, signs, pairing."""

import math

import numpy as np
import pytest

from sol_jax.evaluation import PairedDiff, gap_closure, paired_bootstrap
from sol_jax.evaluation.intervals import resample_indices

T = 16


def blocks(n=40, seed=0, spread=1.0):
  """Per-block NLL sums with block difficulty varying by `spread` nats/token."""
  rng = np.random.default_rng(seed)
  difficulty = 2.5 + spread * rng.standard_normal(n)
  noise = 0.02 * rng.standard_normal((3, n))
  base = T * difficulty
  return base + T * noise[0], base + T * (0.03 + noise[1]), base - T * (0.2 + noise[2])


def loop_reference(a, b, d, tokens, idx, level):
  """One resample at a time in plain Python, on the same index draws."""
  tail = 100 * (1 - level) / 2

  def ppl(x, rows):
    return math.exp(sum(x[i] for i in rows) / sum(tokens[i] for i in rows))

  def stats(rows):
    pa, pb, pd = ppl(a, rows), ppl(b, rows), ppl(d, rows)
    return 100 * (pa / pb - 1), pa - pb, (pb - pa) / (pb - pd)

  point = stats(range(len(a)))
  boot = np.array([stats(rows) for rows in idx])
  out = []
  for k in range(3):
    lo, hi = np.percentile(boot[:, k], [tail, 100 - tail])
    out += [point[k], lo, hi]
  return out


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_matches_loop_reference(level):
  a, b, d = blocks()
  tokens = np.random.default_rng(1).integers(T - 4, T + 1, len(a))  # unequal counts too
  got = paired_bootstrap(a, b, tokens, nll_dense=d, resamples=500, seed=7, level=level)
  want = loop_reference(a, b, d, tokens, resample_indices(len(a), 500, 7), level)
  assert isinstance(got, PairedDiff)
  np.testing.assert_allclose(got, want, rtol=1e-9)
  assert got.diff_pct_lo < got.diff_pct < got.diff_pct_hi


def test_identical_columns_give_zero():
  a, _, _ = blocks()
  r = paired_bootstrap(a, a.copy(), T, resamples=300)
  assert r[:6] == (0.0,) * 6
  assert all(math.isnan(x) for x in (r.gap, r.gap_lo, r.gap_hi))  # no dense given


def test_uniformly_better_is_all_below_zero():
  _, b, _ = blocks()
  r = paired_bootstrap(b - 0.01 * T, b, T, resamples=2000, seed=3)
  assert r.diff_pct_hi < 0 and r.diff_ppl_hi < 0
  np.testing.assert_allclose(r.diff_pct, 100 * (math.exp(-0.01) - 1), rtol=1e-12)


def test_deterministic_given_seed():
  a, b, d = blocks()
  kw = dict(nll_dense=d, resamples=400)
  assert paired_bootstrap(a, b, T, seed=5, **kw) == paired_bootstrap(a, b, T, seed=5, **kw)
  assert paired_bootstrap(a, b, T, seed=5, **kw) != paired_bootstrap(a, b, T, seed=6, **kw)


def test_pairing_narrows_the_interval():
  """Block difficulty dominates: independent draws for A and B see it, paired ones cancel it."""
  a, b, _ = blocks(spread=1.0)
  paired = paired_bootstrap(a, b, T, resamples=2000, seed=0)
  ia = resample_indices(len(a), 2000, 1)
  ib = resample_indices(len(a), 2000, 2)
  unpaired = 100 * (np.exp(a[ia].sum(-1) / (T * len(a)) - b[ib].sum(-1) / (T * len(a))) - 1)
  lo, hi = np.percentile(unpaired, [2.5, 97.5])
  assert paired.diff_pct_hi < 0  # the paired interval resolves A's 3 % edge...
  assert lo < 0 < hi  # ...which block-difficulty noise hides without pairing
  assert (hi - lo) > 10 * (paired.diff_pct_hi - paired.diff_pct_lo)


def test_gap_closure():
  assert gap_closure(12.0, 14.0, 10.0) == 0.5
  assert gap_closure(14.0, 14.0, 10.0) == 0.0 and gap_closure(10.0, 14.0, 10.0) == 1.0
  np.testing.assert_allclose(gap_closure(np.array([12.0, 11.0]), 14.0, 10.0), [0.5, 0.75])
  assert math.isnan(gap_closure(10.0, 10.0, 10.0))


def test_bad_shapes():
  with pytest.raises(ValueError):
    paired_bootstrap(np.zeros(3), np.zeros(4), T)
  with pytest.raises(ValueError):
    paired_bootstrap(np.zeros(0), np.zeros(0), T)
