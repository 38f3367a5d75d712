"""Observation scalars and usage tracker against a slow python-loop reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sol_jax.policy import observation as ob


def _reference_scalars(usage, effective, targets, horizon):
  """Method §7/§8.1 written as plain loops over rows and steps."""
  n, t, _ = usage.shape
  out = np.zeros((n, t, 8))
  for r in range(n):
    for s in range(t):
      prev = [u for u, e in zip(usage[r, :s], effective[r, :s]) if e]
      means = np.mean(prev, axis=0) if prev else targets[r]
      out[r, s] = [(s + 1) / horizon, float(effective[r, s]), *targets[r], *(means - targets[r])]
  return out


def _episode(seed, n=5, t=7):
  rng = np.random.default_rng(seed)
  usage = np.stack(
    [
      rng.choice([0.1, 0.5, 1.0], size=(n, t)),
      rng.choice([0.4, 0.85, 1.0], size=(n, t)),
      rng.choice([5, 9, 16], size=(n, t)) / 16.0,
    ],
    axis=-1,
  )
  effective = rng.random((n, t)) < 0.7
  effective[0] = False  # a row with no effective step at all
  effective[1, :3] = False  # leading non-effective steps
  effective[2] = True
  targets = np.stack(
    [rng.uniform(0.1, 1.0, n), rng.uniform(0.4, 1.0, n), rng.uniform(0.3125, 1.0, n)], axis=-1
  )
  return usage.astype(np.float32), effective, targets.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
def test_step_scalars_with_tracker_match_loop(seed):
  usage, effective, targets = _episode(seed)
  n, t, _ = usage.shape
  want = _reference_scalars(usage, effective, targets, t)

  @jax.jit
  def run(usage, effective, targets):
    def body(tracker, xs):
      i, u, e = xs
      s = ob.step_scalars(i, t, e, targets, tracker)
      return ob.update(tracker, u[:, 0], u[:, 1], u[:, 2], e), s

    xs = (jnp.arange(t), jnp.swapaxes(usage, 0, 1), effective.T)
    tracker, s = jax.lax.scan(body, ob.init_tracker(n), xs)
    return tracker, jnp.swapaxes(s, 0, 1)

  tracker, got = run(usage, effective, targets)
  np.testing.assert_allclose(got, want, atol=1e-6)
  # Episode means for the penalty: N_eff = max(1, count), so 0 with no steps.
  eff = effective[..., None]
  want_ep = (usage * eff).sum(1) / np.maximum(eff.sum(1), 1)
  np.testing.assert_allclose(ob.episode_means(tracker), want_ep, atol=1e-6)
  assert np.all(np.asarray(ob.episode_means(tracker))[0] == 0)


@pytest.mark.parametrize("seed", [0, 3])
def test_episode_scalars_match_loop(seed):
  usage, effective, targets = _episode(seed)
  want = _reference_scalars(usage, effective, targets, horizon=16)
  got = ob.episode_scalars(usage, effective, targets, horizon=16)
  np.testing.assert_allclose(got, want, atol=1e-6)


def test_running_means_default_to_targets():
  targets = jnp.array([[0.3, 0.5, 0.7], [0.9, 0.8, 0.4]])
  tracker = ob.update(
    ob.init_tracker(2),
    jnp.array([0.2, 0.2]),
    jnp.array([1.0, 1.0]),
    jnp.array([0.5, 0.5]),
    jnp.array([True, False]),
  )
  np.testing.assert_allclose(ob.running_means(tracker, targets), [[0.2, 1.0, 0.5], [0.9, 0.8, 0.4]])


def test_progress_accepts_per_row_step():
  targets = jnp.full((2, 3), 0.5)
  s = ob.step_scalars(jnp.array([0, 3]), 4, jnp.ones(2, bool), targets, ob.init_tracker(2))
  np.testing.assert_allclose(s[:, 0], [0.25, 1.0])


def test_bad_shapes_raise():
  tracker = ob.init_tracker(3)
  with pytest.raises(ValueError, match=r"\[N, 3\]"):
    ob.running_means(tracker, jnp.ones((3, 2)))
  with pytest.raises(ValueError, match="rows"):
    ob.running_means(tracker, jnp.ones((2, 3)))
  with pytest.raises(ValueError, match="shape"):
    ob.update(tracker, jnp.ones(2), jnp.ones(2), jnp.ones(2), jnp.ones(2))
  with pytest.raises(ValueError, match="usage"):
    ob.episode_scalars(jnp.ones((3, 4)), jnp.ones((3, 4)), jnp.ones((3, 3)))
  with pytest.raises(ValueError, match="effective"):
    ob.episode_scalars(jnp.ones((3, 4, 3)), jnp.ones((3, 5)), jnp.ones((3, 3)))
  with pytest.raises(ValueError, match="batch"):
    ob.init_tracker(0)
