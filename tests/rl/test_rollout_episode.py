"""The rollout returns a typed `Episode`: every field always present, shapes as documented.

Only shapes are checked (`jax.eval_shape`, nothing is compiled): the values are
covered by the harness, objective and learning tests.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from sol_jax import config as config_lib
from sol_jax.evaluation.harness import Episode
from sol_jax.models import llama
from sol_jax.policy.agent import StepRecord
from sol_jax.policy.network import init_params
from sol_jax.rl import loop
from sol_jax.rl import train_step as ts
from tests.tiny_models import TINY_LLAMA_1L

MODEL = TINY_LLAMA_1L
C, T, B, K = 8, 4, 2, 3


@pytest.mark.parametrize("kl_weight", [0.0, 0.5])
def test_rollout_episode_fields(kl_weight):
  cfg = config_lib.apply_overrides(
    config_lib.ExperimentConfig(),
    [
      f"data.context_len={C}",
      f"data.horizon={T}",
      "actions.variant=2L",
      "policy.d_model=32",
      "policy.num_heads=2",
      "policy.max_len=16",
      f"rl.num_rollouts={K}",
      f"rl.task_w_kl={kl_weight}",
    ],
  )
  setup = loop.make_setup(cfg, MODEL)
  lm = jax.eval_shape(lambda: llama.init_params(MODEL, jax.random.PRNGKey(0)))
  params = jax.eval_shape(lambda: init_params(setup.policy, jax.random.PRNGKey(0)))
  blocks = jax.ShapeDtypeStruct((B, C + T + 1), jnp.int32)
  targets = jax.ShapeDtypeStruct((B, 3), jnp.float32)
  out = jax.eval_shape(
    lambda p, l, x, t: ts.rollout(setup, p, l, x, t, jax.random.PRNGKey(0)),
    params,
    lm,
    blocks,
    targets,
  )
  assert isinstance(out, Episode) and isinstance(out.records, StepRecord)
  assert out.nll.shape == out.actions.shape == (B, K, T) and out.effective.shape == (T,)
  assert out.records.action.shape == out.records.logp.shape == (B, K, T)
  assert out.records.hidden.shape == (B, K, T, MODEL.hidden_size)
  if kl_weight:
    assert out.kl.shape == (B, K, T)  # the KL reward needs it
  else:
    assert out.kl is None  # no dense reference decode was run
