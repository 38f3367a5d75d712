"""Tiny models shared by the tests (the fixtures around them are in tests/conftest.py).

A plain module, not conftest, so that scripts run in a subprocess
(tests/rl/sharded_step_check.py) can import it too: `from tests.tiny_models
import TINY_LLAMA`.

Files whose model sizes matter to their assertions keep their own configs:
test_flops (hand-counted FLOPs), test_learning (hand-built weights), the
parity tests' HF configs (test_llama_parity, test_loaders), parallel_checks
(a vocabulary that does not split on purpose; its sharded prefill's tolerance
was measured on its own 16-wide model) and test_network (every policy dimension
distinct, so a transposed weight cannot go unnoticed).
"""

from __future__ import annotations

import dataclasses

import jax

from sol_jax.models import llama
from sol_jax.models.config import ModelConfig

# Two layers, GQA (4 query heads over 2 KV heads), head_dim 8: the smallest Llama
# that still exercises the layer scan, the KV-head grouping and Quest pages.
TINY_LLAMA = ModelConfig(
  vocab_size=64,
  hidden_size=32,
  intermediate_size=48,
  num_layers=2,
  num_heads=4,
  num_kv_heads=2,
  head_dim=8,
)

# One layer: the cheapest model for whole-loop tests (train, resume, run dirs).
TINY_LLAMA_1L = dataclasses.replace(TINY_LLAMA, num_layers=1)


def tiny_llama_params(seed: int = 0) -> dict:
  """Random TINY_LLAMA params, initialised op by op (not jitted).

  Eager and jitted init differ in the last bit of the embedding, so the tests
  that always used the eager init keep it.
  """
  return llama.init_params(TINY_LLAMA, jax.random.PRNGKey(seed))
