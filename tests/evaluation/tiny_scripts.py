"""Run an experiment script's `main` on the tiny Llama (shared by the script tests)."""

import jax

from experiments import cli
from sol_jax.policy import network
from tests.evaluation.test_generate import CharTokenizer


def patch_tiny(monkeypatch, script, tiny_llama):
  """The script loads the tiny Llama, a character tokenizer and a random policy (step 7)."""
  monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
  monkeypatch.setattr(script, "load_model", lambda source, dtype: tiny_llama)
  monkeypatch.setattr(script, "load_tokenizer", lambda source: CharTokenizer())

  def policy(cfg, model_cfg):
    setup = script.make_setup(cfg, model_cfg)
    return network.init_params(setup.policy, jax.random.PRNGKey(0)), 7, None

  monkeypatch.setattr(script, "trained_policy", policy)
  return script
