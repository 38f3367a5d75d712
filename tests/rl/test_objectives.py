"""GRPO objective pieces against hand-computed cases and numpy loops (method §9.2-9.6)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sol_jax.config import RLCfg
from sol_jax.efficiency.actions import ActionSpace
from sol_jax.rl import objectives as ob

# ---------------------------------------------------------------- references


def _np_rewards_to_go(r, agg, gamma):
  """Direct definitions: double loop for the sum, backward loop for the max."""
  r = np.asarray(r, np.float64)
  if agg == "none" or not 0.0 <= gamma < 1.0:
    return r
  out = np.zeros_like(r)
  steps = r.shape[-1]
  for idx in np.ndindex(r.shape[:-1]):
    for t in range(steps):
      if agg == "sum":
        out[idx + (t,)] = sum(gamma ** (j - t) * r[idx + (j,)] for j in range(t, steps))
    if agg == "max":
      out[idx + (steps - 1,)] = r[idx + (steps - 1,)]
      for t in range(steps - 2, -1, -1):
        out[idx + (t,)] = max(r[idx + (t,)], gamma * out[idx + (t + 1,)])
  return out


def _np_penalty(means, targets, alphas, tol):
  b, k, _ = means.shape
  out = np.zeros((b, k))
  for i in range(b):
    for j in range(k):
      for ax in range(3):
        gap = means[i, j, ax] - targets[i, ax]
        out[i, j] += alphas[ax] * max(abs(gap) - tol, 0.0) ** 2
  return out


def _np_group(r, norm):
  b, k, t = r.shape
  out = np.zeros_like(r, dtype=np.float64)
  for i in range(b):
    for s in range(t):
      col = r[i, :, s].astype(np.float64)
      c = col - col.mean()
      if norm == "zscore":
        c = c / max(np.sqrt(np.mean((col - col.mean()) ** 2)), 1e-6)
      out[i, :, s] = c
  return out


def _np_whiten(a):
  a = np.asarray(a, np.float64)
  return (a - a.mean()) / max(a.std(), 1e-6)


# ------------------------------------------------------------ rewards to go


def test_sum_gamma_085_hand_computed():
  r = jnp.array([[[-2.0, -1.0, -3.0]]])
  # G2 = -3; G1 = -1 + 0.85 * -3 = -3.55; G0 = -2 + 0.85 * -3.55 = -5.0175.
  np.testing.assert_allclose(
    ob.rewards_to_go(r, "sum", 0.85)[0, 0], [-5.0175, -3.55, -3.0], rtol=1e-6
  )


def test_max_hand_computed():
  r = jnp.array([[[-2.0, -1.0, -3.0]]])
  # M2 = -3; M1 = max(-1, -2.55) = -1; M0 = max(-2, 0.85 * -1) = -0.85.
  np.testing.assert_allclose(ob.rewards_to_go(r, "max", 0.85)[0, 0], [-0.85, -1.0, -3.0], rtol=1e-6)


@pytest.mark.parametrize("agg", ["sum", "max"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 0.85])
def test_rewards_to_go_matches_loop(agg, gamma):
  r = np.random.default_rng(0).normal(-2.5, 1.0, (2, 3, 5)).astype(np.float32)
  got = jax.jit(ob.rewards_to_go, static_argnums=(1, 2))(r, agg, gamma)
  np.testing.assert_allclose(got, _np_rewards_to_go(r, agg, gamma), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
  "agg,gamma",
  [("none", 0.85), ("sum", 1.0), ("max", 1.0), ("sum", -0.5), ("sum", 0.0), ("max", 0.0)],
)
def test_raw_rewards_when_not_aggregated(agg, gamma):
  r = np.random.default_rng(1).normal(size=(2, 2, 4)).astype(np.float32)
  if agg == "max" and gamma == 0.0:  # max(r_t, 0 * M) = max(r_t, 0)
    want = np.maximum(r, 0.0)
    want[..., -1] = r[..., -1]
  else:
    want = r
  np.testing.assert_allclose(ob.rewards_to_go(r, agg, gamma), want, rtol=0, atol=0)


def test_single_step_episode():
  r = jnp.array([[[-1.5]], [[-0.5]]])
  for agg in ("sum", "max"):
    np.testing.assert_array_equal(ob.rewards_to_go(r, agg, 0.85), r)


def test_bad_aggregation_raises():
  with pytest.raises(ValueError, match="reward_agg"):
    ob.rewards_to_go(jnp.zeros((1, 2, 3)), "mean", 0.85)


def test_step_rewards_kl_mix():
  logp, kl = jnp.array([-2.0, -3.0]), jnp.array([0.5, 0.1])
  np.testing.assert_array_equal(ob.step_rewards(logp), logp)
  np.testing.assert_allclose(
    ob.step_rewards(logp, kl, 0.25), [0.75 * -2.0 - 0.25 * 0.5, 0.75 * -3.0 - 0.25 * 0.1], rtol=1e-6
  )
  with pytest.raises(ValueError, match="kl"):
    ob.step_rewards(logp, None, 0.5)


# ----------------------------------------------------------- budget penalty


def test_scale_check_from_spec():
  # 0.10 miss on κ, α_κ = 100: 100 * (0.10 - 0.02)^2 = 0.64 nats.
  pen = ob.budget_penalty(
    jnp.array([[[0.6, 0.7, 0.5]]]), jnp.array([[0.5, 0.7, 0.5]]), [100.0, 100.0, 200.0]
  )
  np.testing.assert_allclose(pen, [[0.64]], rtol=1e-5)


def test_dead_zone_boundary():
  f32 = np.float32(0.02)
  means = jnp.array([[[f32, 0.0, 0.0], [0.0, 0.0, 0.0], [0.05, 0.0, 0.0], [0.0, 0.03, 0.0]]])
  targets = jnp.array([[0.0, 0.0, f32]])
  # Rows: κ gap +0.02 (edge); η gap -0.02 (edge); κ gap 0.05; ρ gap 0.03 plus η edge.
  pen = ob.budget_penalty(means, targets, [1.0, 10.0, 100.0], tolerance=0.02)
  np.testing.assert_array_equal(pen[0, :2], [0.0, 0.0])
  np.testing.assert_allclose(pen[0, 2:], [0.03**2, 10.0 * 0.01**2], rtol=1e-4)


def test_penalty_two_sided_and_broadcast_over_k():
  rng = np.random.default_rng(2)
  means = rng.uniform(0.0, 1.0, (3, 4, 3)).astype(np.float32)
  targets = rng.uniform(0.0, 1.0, (3, 3)).astype(np.float32)
  alphas = np.array([100.0, 100.0, 200.0], np.float32)
  got = jax.jit(ob.budget_penalty)(means, targets, alphas)
  np.testing.assert_allclose(got, _np_penalty(means, targets, alphas, 0.02), rtol=1e-5, atol=1e-6)
  # Per-rollout targets give the same result.
  tiled = np.repeat(targets[:, None], 4, axis=1)
  np.testing.assert_allclose(ob.budget_penalty(means, tiled, alphas), got, rtol=1e-6)


def test_penalty_bad_shapes():
  with pytest.raises(ValueError, match="alphas"):
    ob.budget_penalty(jnp.zeros((1, 2, 3)), jnp.zeros((1, 3)), [1.0, 1.0])
  with pytest.raises(ValueError, match="targets"):
    ob.budget_penalty(jnp.zeros((2, 2, 3)), jnp.zeros((3, 3)), [1.0, 1.0, 1.0])
  with pytest.raises(ValueError, match="3 axes"):
    ob.budget_penalty(jnp.zeros((2, 2, 2)), jnp.zeros((2, 2)), [1.0, 1.0, 1.0])


# ------------------------------------------------------------------ returns


def test_returns_process_and_outcome():
  g = jnp.array([[[-5.0, -3.0, -1.0], [-4.0, -2.0, -0.5]]])
  pen = jnp.array([[0.5, 2.0]])
  np.testing.assert_allclose(
    ob.returns(g, pen, "process"), [[[-5.5, -3.5, -1.5], [-6.0, -4.0, -2.5]]]
  )
  np.testing.assert_allclose(
    ob.returns(g, pen, "outcome"), [[[-5.5, -5.5, -5.5], [-6.0, -6.0, -6.0]]]
  )
  with pytest.raises(ValueError, match="penalty"):
    ob.returns(g, jnp.zeros((2,)), "process")
  with pytest.raises(ValueError, match="grpo_level"):
    ob.returns(g, pen, "episode")


# --------------------------------------------------------------- advantages


def test_center_hand_computed_and_zero_mean():
  r = jnp.array([[[1.0, 4.0], [3.0, 0.0], [5.0, 2.0]]])  # B=1, K=3, T=2
  a = ob.group_advantages(r, "center")
  np.testing.assert_allclose(a, [[[-2.0, 2.0], [0.0, -2.0], [2.0, 0.0]]], atol=1e-6)
  big = np.random.default_rng(3).normal(-10, 3, (4, 8, 6)).astype(np.float32)
  a = ob.group_advantages(big, "center")
  np.testing.assert_allclose(np.mean(np.asarray(a), axis=1), 0.0, atol=1e-5)
  np.testing.assert_allclose(a, _np_group(big, "center"), atol=1e-5)


def test_zscore_matches_loop_and_constant_group():
  r = np.random.default_rng(4).normal(-3, 2, (2, 5, 3)).astype(np.float32)
  r[1, :, 0] = -2.5  # a constant group: std clamps to 1e-6, no nan
  a = np.asarray(ob.group_advantages(r, "zscore"))
  np.testing.assert_allclose(a, _np_group(r, "zscore"), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(a[1, :, 0], 0.0)
  np.testing.assert_allclose(a[0].std(axis=0), 1.0, rtol=1e-5)


def test_group_advantages_needs_bkt():
  with pytest.raises(ValueError, match=r"\[B, K, T\]"):
    ob.group_advantages(jnp.zeros((4, 3)), "center")
  with pytest.raises(ValueError, match="grpo_norm"):
    ob.group_advantages(jnp.zeros((1, 2, 3)), "rank")


def test_whiten_mean_zero_std_one():
  a = np.random.default_rng(5).normal(3.0, 7.0, (2, 4, 3)).astype(np.float32)
  w = np.asarray(ob.whiten(a, True))
  np.testing.assert_allclose(w.mean(), 0.0, atol=1e-6)
  np.testing.assert_allclose(w.std(), 1.0, rtol=1e-5)
  np.testing.assert_allclose(w, _np_whiten(a), rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(ob.whiten(a, False), a)
  np.testing.assert_array_equal(ob.whiten(jnp.full((2, 2, 2), 4.0), True), 0.0)


def _advantage_inputs(seed: int, b: int = 2, k: int = 4, t: int = 3):
  """Random per-step rewards [b, k, t], episode usage means [b, k, 3] and targets [b, 3]."""
  rng = np.random.default_rng(seed)
  rewards = rng.normal(-2.5, 1.0, (b, k, t)).astype(np.float32)
  means = rng.uniform(0.3, 1.0, (b, k, 3)).astype(np.float32)
  targets = rng.uniform(0.3, 1.0, (b, 3)).astype(np.float32)
  return rewards, means, targets


def test_compute_advantages_pipeline_and_single_level_alpha():
  # Quant axis has one level: its α must be forced to 0 whatever the config says.
  space = ActionSpace.from_config([0.5, 1.0], ["s50", "s100"], ["q16"])
  cfg = dataclasses.replace(RLCfg(), grpo_norm="zscore")
  rewards, means, targets = _advantage_inputs(seed=6)
  out = ob.compute_advantages(rewards, means, targets, cfg, space)
  g = _np_rewards_to_go(rewards, "sum", 0.85)
  pen = _np_penalty(means, targets, [100.0, 100.0, 0.0], 0.02)
  r = g - pen[..., None]
  want = _np_whiten(_np_group(r, "zscore"))
  np.testing.assert_allclose(out.rewards_to_go, g, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out.penalty, pen, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out.returns, r, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out.advantages, want, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="disagree"):
    ob.compute_advantages(rewards, means[:, :2], targets, cfg, space)


def test_expected_mode_keeps_the_penalty_out_of_the_returns():
  space = ActionSpace.from_config([0.5, 1.0], ["s50", "s100"], ["q8", "q16"])
  cfg = dataclasses.replace(RLCfg(), penalty_mode="expected")
  rewards, means, targets = _advantage_inputs(seed=7)
  out = ob.compute_advantages(rewards, means, targets, cfg, space)
  g = _np_rewards_to_go(rewards, "sum", 0.85)
  np.testing.assert_allclose(out.returns, g, rtol=1e-5, atol=1e-5)  # no penalty in R
  np.testing.assert_allclose(
    out.penalty, _np_penalty(means, targets, [100.0, 100.0, 200.0], 0.02), 1e-5
  )
  centred = _np_group(g, "center")
  np.testing.assert_allclose(out.scale, centred.std(), rtol=1e-5)
  np.testing.assert_allclose(out.advantages, _np_whiten(centred), rtol=1e-4, atol=1e-5)
  sampled = ob.compute_advantages(rewards, means, targets, RLCfg(), space)
  np.testing.assert_allclose(sampled.scale, _np_group(sampled.returns, "center").std(), 1e-5)
  with pytest.raises(ValueError, match="penalty_mode"):
    dataclasses.replace(RLCfg(), penalty_mode="expected", grpo_norm="zscore")


def test_expected_penalty_by_hand():
  features = np.array([[0.1, 1.0, 1.0], [1.0, 0.4, 0.5]], np.float32)  # two actions
  # One-hot probabilities: the expected usage is the realized one.
  onehot = np.array([[[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]], np.float32)
  eff = np.array([[1.0, 1.0, 1.0, 0.0]], np.float32)  # the last step does not count
  targets = np.array([[0.5, 0.6, 0.8]], np.float32)
  alphas = np.array([100.0, 100.0, 200.0], np.float32)
  got = ob.expected_penalty(onehot, features, eff, targets, alphas, 0.02)
  means = np.array([[[0.7, 0.6, 2 / 3]]], np.float32)  # over the 3 effective steps
  want = _np_penalty(means, targets, [100.0, 100.0, 200.0], 0.02)[:, 0]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Mixed probabilities: the usage is the expectation, e.g. 50/50 -> the midpoint.
  half = np.full((1, 4, 2), 0.5, np.float32)
  mid = ob.expected_penalty(half, features, np.ones((1, 4)), targets, alphas, 0.02)
  want = _np_penalty(np.array([[[0.55, 0.7, 0.75]]]), targets, [100, 100, 200], 0.02)
  np.testing.assert_allclose(mid, want[:, 0], rtol=1e-5)
  # Differentiable in the probabilities: more of the cheap action lowers κ̄ toward 0.5.
  grad = jax.grad(lambda q: ob.expected_penalty(q, features, eff, targets, alphas)[0])(onehot)
  assert grad[0, 0, 0] < grad[0, 0, 1]


# ---------------------------------------------------------------------- loss


def test_loss_at_ratio_one():
  rng = np.random.default_rng(7)
  logp = rng.normal(-2.0, 0.5, (3, 4)).astype(np.float32)
  adv = rng.normal(size=(3, 4)).astype(np.float32)
  ent = rng.uniform(0.5, 3.0, (3, 4)).astype(np.float32)
  loss, m = ob.policy_loss(logp, logp, adv, ent, clip=0.2, entropy_coef=0.05)
  np.testing.assert_allclose(loss, -adv.mean() - 0.05 * ent.mean(), rtol=1e-5)
  np.testing.assert_allclose(m["pg_loss"], -adv.mean(), rtol=1e-5)
  np.testing.assert_allclose(m["entropy"], ent.mean(), rtol=1e-6)
  assert float(m["clip_fraction"]) == 0.0
  assert float(m["approx_kl"]) == 0.0


def test_clipping_four_quadrants_hand_computed():
  # ratio 1.5, 1.5, 0.5, 0.5 against A = +1, -1, +1, -1; H = 0 to isolate L_pg.
  ratio = np.array([[1.5, 1.5, 0.5, 0.5]], np.float32)
  adv = np.array([[1.0, -1.0, 1.0, -1.0]], np.float32)
  old = np.full((1, 4), -1.0, np.float32)
  new = old + np.log(ratio)
  # min(r A, clip(r) A): 1.2 (clipped), -1.5, 0.5, -0.8 (clipped).
  want_pg = -np.mean([1.2, -1.5, 0.5, -0.8])
  loss, m = ob.policy_loss(new, old, adv, np.zeros((1, 4)), clip=0.2, entropy_coef=0.05)
  np.testing.assert_allclose(loss, want_pg, rtol=1e-5)
  np.testing.assert_allclose(m["clip_fraction"], 1.0)
  want_kl = np.mean((ratio - 1.0) - np.log(ratio))
  np.testing.assert_allclose(m["approx_kl"], want_kl, rtol=1e-5)
  # Clipped entries carry no gradient; unclipped ones get -r A / N.
  grad = jax.grad(lambda x: ob.policy_loss(x, old, adv, jnp.zeros((1, 4)))[0])(jnp.asarray(new))
  np.testing.assert_allclose(grad, [[0.0, 1.5 / 4, -0.5 / 4, 0.0]], rtol=1e-5, atol=1e-7)


def test_clip_kicks_in_just_above_1_2():
  old = np.zeros((1, 2), np.float32)
  new = np.log(np.array([[1.19, 1.21]], np.float32))
  adv = np.ones((1, 2), np.float32)
  _, m = ob.policy_loss(new, old, adv, np.zeros((1, 2)))
  np.testing.assert_allclose(m["pg_loss"], -(1.19 + 1.2) / 2, rtol=1e-5)
  np.testing.assert_allclose(m["clip_fraction"], 0.5)


def test_loss_gradients_and_mask():
  rng = np.random.default_rng(8)
  old = rng.normal(-2.0, 0.5, (2, 3)).astype(np.float32)
  new = old + rng.normal(0, 0.05, (2, 3)).astype(np.float32)  # all within the clip
  adv = rng.normal(size=(2, 3)).astype(np.float32)
  ent = rng.uniform(0.5, 2.0, (2, 3)).astype(np.float32)
  g_new, g_ent = jax.grad(lambda x, h: ob.policy_loss(x, old, adv, h)[0], argnums=(0, 1))(
    jnp.asarray(new), jnp.asarray(ent)
  )
  np.testing.assert_allclose(g_new, -np.exp(new - old) * adv / 6, rtol=1e-5)
  np.testing.assert_allclose(g_ent, np.full((2, 3), -0.05 / 6), rtol=1e-6)
  # A mask averages over the kept entries only, as if the rest were absent.
  mask = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
  keep = mask.astype(bool)
  lm, mm = ob.policy_loss(new, old, adv, ent, mask=mask)
  ratio = np.exp(new[keep] - old[keep])
  np.testing.assert_allclose(lm, -np.mean(ratio * adv[keep]) - 0.05 * ent[keep].mean(), rtol=1e-5)
  np.testing.assert_allclose(mm["entropy"], ent[keep].mean(), rtol=1e-6)


def test_loss_shape_mismatch():
  with pytest.raises(ValueError, match="share one"):
    ob.policy_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.zeros((2, 3)))
