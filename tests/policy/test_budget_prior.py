"""The max-entropy budget-head start (`policy.budget_prior`, train.budget_head_init)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from sol_jax import config as config_lib
from sol_jax.efficiency.actions import load_action_variant
from sol_jax.policy import budget_prior as bp
from sol_jax.policy.network import BUDGET_PARAMS, PolicyConfig, init_params
from sol_jax.rl import loop
from sol_jax.rl.targets import sample_targets
from sol_jax.rl.train_step import init_train_state
from tests.tiny_models import TINY_LLAMA

SPACE = load_action_variant("3L").space
FEATS = bp.usage_features(SPACE)
CFG = config_lib.load_config("smollm2_3L_cpu")
POLICY = PolicyConfig(
  num_actions=SPACE.num_actions, obs_hidden_dim=8, embed_dim=8, d_model=16, num_heads=2
)


def draw(key, n):
  return sample_targets(key, CFG.rl, n)


def scipy_max_entropy(features, target):
  """The obvious reference: maximise entropy over the simplex subject to E[f] = target."""
  a = len(features)
  cons = [{"type": "eq", "fun": lambda p: p.sum() - 1.0}]
  cons += [{"type": "eq", "fun": lambda p, j=j: p @ features[:, j] - target[j]} for j in range(3)]
  res = minimize(
    lambda p: np.sum(p * np.log(np.maximum(p, 1e-300))),
    np.full(a, 1.0 / a),
    bounds=[(1e-12, 1.0)] * a,
    constraints=cons,
    method="SLSQP",
    options={"ftol": 1e-12, "maxiter": 500},
  )
  assert res.success, res.message
  return res.x


def test_max_entropy_probs_match_scipy_and_meet_targets():
  targets = np.array(
    [[0.5, 0.7, 0.6], [0.15, 0.45, 0.35], [0.95, 0.98, 0.9], [0.3, 0.9, 0.5]], np.float32
  )
  p = np.asarray(bp.max_entropy_probs(FEATS, targets), np.float64)
  np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(p @ FEATS, targets, atol=1e-4)
  for row, t in zip(p, targets):
    np.testing.assert_allclose(row, scipy_max_entropy(FEATS.astype(np.float64), t), atol=2e-3)


def test_max_entropy_probs_clip_unreachable_targets():
  lo, hi = FEATS.min(0), FEATS.max(0)
  p = np.asarray(bp.max_entropy_probs(FEATS, np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])))
  assert np.all(np.isfinite(p))
  edge = bp.EDGE_MARGIN * (hi - lo)
  np.testing.assert_allclose(p @ FEATS, [lo + edge, hi - edge], atol=1e-4)


def test_fitted_head_meets_targets_and_touches_only_the_budget_head():
  params = init_params(POLICY, jax.random.PRNGKey(0))
  targets = draw(jax.random.PRNGKey(9), 512)
  lo, hi = FEATS.min(0), FEATS.max(0)
  want = np.clip(targets, lo + bp.EDGE_MARGIN * (hi - lo), hi - bp.EDGE_MARGIN * (hi - lo))
  miss = lambda p: np.abs(np.asarray(bp.expected_usage(POLICY, p, FEATS, targets)) - want)
  # The PyTorch init ignores the targets (why training starts near-uniform).
  assert miss(params).mean() > 0.1
  fitted = bp.fit_budget_head(POLICY, params, FEATS, draw, jax.random.PRNGKey(1))
  assert miss(fitted).mean(0).max() < 0.025, miss(fitted).mean(0)
  for name in params:
    same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), params[name], fitted[name])
    assert all(jax.tree.leaves(same)) == (name not in BUDGET_PARAMS), name


def test_init_train_state_budget_head_init():
  cfg = config_lib.load_config(
    "smollm2_3L_cpu", ["policy.d_model=16", "policy.num_heads=2", "policy.max_len=32"]
  )
  setup = loop.make_setup(cfg, TINY_LLAMA)
  torch_init = init_train_state(setup, 3)
  a = init_train_state(setup, 3, "max_entropy")
  b = init_train_state(setup, 3, "max_entropy")
  assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a.params, b.params))
  assert not jnp.array_equal(
    a.params["budget_out"]["kernel"], torch_init.params["budget_out"]["kernel"]
  )
  np.testing.assert_array_equal(
    a.params["obs_proj"]["kernel"], torch_init.params["obs_proj"]["kernel"]
  )
  with pytest.raises(ValueError, match="budget_head_init"):
    init_train_state(setup, 3, "uniform")
  with pytest.raises(ValueError, match="budget_head_init"):
    config_lib.load_config("smollm2_3L_cpu", ["train.budget_head_init=uniform"])
