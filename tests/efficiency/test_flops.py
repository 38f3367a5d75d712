"""FLOPs cost model: dense identity, monotonicity, hand-computed values."""

import numpy as np
import pytest

from sol_jax.efficiency import flops
from sol_jax.efficiency.actions import load_action_variant
from sol_jax.models.config import ModelConfig

TINY = ModelConfig(
  vocab_size=32,
  hidden_size=8,
  intermediate_size=16,
  num_layers=2,
  num_heads=2,
  num_kv_heads=1,
  head_dim=4,
)
# Llama-3.2-1B dimensions.
LLAMA_1B = ModelConfig(
  vocab_size=128256,
  hidden_size=2048,
  intermediate_size=8192,
  num_layers=16,
  num_heads=32,
  num_kv_heads=8,
  head_dim=64,
)
MODES = [
  dict(),
  dict(token_count="pages", page_size=8),
  dict(quest_overhead=True, page_size=8),
  dict(token_count="pages", page_size=4, quest_overhead=True),
]


@pytest.mark.parametrize("kwargs", MODES)
def test_dense_action_is_exactly_one(kwargs):
  space = load_action_variant("FL").space
  kv = np.array([8, 100, 1025, 1040])
  rel = np.asarray(flops.action_relative_flops(LLAMA_1B, space, kv, **kwargs))
  assert rel.shape == (4, space.num_actions)
  assert np.all(rel[:, space.dense_index] == 1.0)
  if not kwargs.get("quest_overhead"):  # scoring overhead can exceed a tiny saving
    assert np.all(rel <= 1.0)


def test_hand_computed_tiny():
  # Per layer (D=8, H=2, Hkv=1, dh=4, F=16), kv_len = 10:
  #   proj 2*8*(8+8+8)=384, attn 4*2*4*n, gate/up 4*k*16, down 2*16*8*(b/16)=256*b/16.
  # Dense: 384 + 320 + 512 + 256 = 1472; 2 layers + head 2*8*32=512 -> 3456.
  # κ=0.5 (n=5), ρ=0.5 (k=4), b=8: 384 + 160 + 256 + 128 = 928 -> 2*928 + 512 = 2368.
  kw = dict(kappa=0.5, rho=0.5, bits=8, kv_len=10)
  np.testing.assert_allclose(flops.dense_decode_flops(TINY, 10), 3456)
  np.testing.assert_allclose(flops.decode_flops(TINY, **kw), 2368)
  np.testing.assert_allclose(flops.relative_flops(TINY, **kw), 2368 / 3456, rtol=1e-6)
  # Pages of S=4: n=5 -> 2 pages = 8 tokens: attn 256 -> 2*(384+256+256+128) + 512 = 2560.
  np.testing.assert_allclose(flops.decode_flops(TINY, **kw, token_count="pages", page_size=4), 2560)
  # Quest scoring: 2*H*dh*ceil(10/4) = 48 per layer.
  np.testing.assert_allclose(
    flops.decode_flops(TINY, **kw, quest_overhead=True, page_size=4), 2368 + 96
  )
  # Rounding up: κ=0.15 of 10 -> n=ceil(1.5)=2; ρ=0.3 of 8 -> k=ceil(2.4)=3.
  np.testing.assert_allclose(
    flops.decode_flops(TINY, 0.15, 0.3, 16, 10), 2 * (384 + 4 * 8 * 2 + 4 * 3 * 16 + 256) + 512
  )


def test_page_count_is_capped_at_kv_len():
  np.testing.assert_allclose(flops.kept_tokens(0.9, 10, "pages", 4), 10)  # 9 -> 12 -> capped
  np.testing.assert_allclose(flops.kept_tokens(0.1, 1001, "pages", 8), 104)  # method §4.2.1 example
  np.testing.assert_allclose(flops.kept_tokens(0.1, 1001), 101)
  np.testing.assert_allclose(flops.kept_tokens(0.01, 10), 1)  # at least one key


@pytest.mark.parametrize("kwargs", MODES[:3])
def test_monotone_in_each_axis(kwargs):
  space = load_action_variant("FL").space
  rel = np.asarray(flops.action_relative_flops(LLAMA_1B, space, 1040, **kwargs)).reshape(
    space.shape
  )
  assert np.all(np.diff(rel, axis=0) > 0)  # κ
  assert np.all(np.diff(rel, axis=1) > 0)  # ρ
  assert np.all(np.diff(rel, axis=2) > 0)  # b


def test_schedule_relative_flops_pools_over_steps():
  space = load_action_variant("3L").space
  actions = np.array([[0, space.dense_index, 13], [26, 5, 5]])
  kv = np.array([1025, 1026, 1027])
  got = flops.schedule_relative_flops(LLAMA_1B, space, actions, kv)
  spent = sum(
    float(flops.decode_flops(LLAMA_1B, space.kappa[a], space.rho[a], space.bits[a], kv[t]))
    for row in actions
    for t, a in enumerate(row)
  )
  dense = 2 * sum(float(flops.dense_decode_flops(LLAMA_1B, k)) for k in kv)
  np.testing.assert_allclose(got, spent / dense, rtol=1e-6)


def test_bad_options():
  with pytest.raises(ValueError, match="token_count"):
    flops.relative_flops(TINY, 0.5, 1.0, 16, 10, token_count="realized")
  with pytest.raises(ValueError, match="page_size"):
    flops.relative_flops(TINY, 0.5, 1.0, 16, 10, token_count="pages")
  with pytest.raises(ValueError, match="page_size"):
    flops.relative_flops(TINY, 0.5, 1.0, 16, 10, quest_overhead=True)
