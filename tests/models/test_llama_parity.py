"""Parity of the Flax Llama with transformers' PyTorch Llama (eager, fp32)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from transformers.models.llama import modeling_llama as hf_llama

from sol_jax.models import layers, llama
from sol_jax.models.cache import init_suffix
from sol_jax.models.registry import load_model

TOL = 1e-5

VARIANTS = {
  "gqa_untied": dict(num_key_value_heads=2, tie_word_embeddings=False),
  "mha_tied": dict(num_key_value_heads=4, tie_word_embeddings=True),
  "gqa_llama3_scaling": dict(
    num_key_value_heads=2,
    tie_word_embeddings=False,
    rope_scaling={
      "rope_type": "llama3",
      "factor": 8.0,
      "low_freq_factor": 1.0,
      "high_freq_factor": 4.0,
      "original_max_position_embeddings": 32,
    },
    rope_theta=500000.0,
  ),
}


def _hf_model(tmp_path, **overrides):
  torch.manual_seed(0)
  kw = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=112,
    num_hidden_layers=3,
    num_attention_heads=4,
    max_position_embeddings=256,
    rms_norm_eps=1e-5,
  )
  kw.update(overrides)
  hf_cfg = transformers.LlamaConfig(**kw)
  hf_cfg._attn_implementation = "eager"
  model = transformers.LlamaForCausalLM(hf_cfg).eval()
  # Random norm weights so that a wrong RMSNorm scale cannot hide behind ones.
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name:
        p.copy_(1 + 0.1 * torch.randn_like(p))
  model.save_pretrained(tmp_path, safe_serialization=True)
  cfg, params = load_model(str(tmp_path))
  return model, cfg, params


@pytest.fixture(params=list(VARIANTS), scope="module")
def models(request, tmp_path_factory):
  return _hf_model(tmp_path_factory.mktemp(request.param), **VARIANTS[request.param])


def _tokens(batch=2, length=24, vocab=96, seed=0):
  return np.random.RandomState(seed).randint(0, vocab, (batch, length))


def _layer_params(params, i):
  return jax.tree.map(lambda x: x[i], params["layers"])


def test_end_to_end_logits(models):
  model, cfg, params = models
  tokens = _tokens()
  with torch.no_grad():
    ref = model(torch.tensor(tokens), output_hidden_states=True)
  logits, hidden, _ = llama.prefill(params, cfg, jnp.asarray(tokens))
  np.testing.assert_allclose(np.asarray(logits), ref.logits.numpy(), atol=TOL, rtol=0)
  # The policy reads the final-norm hidden state: HF's last `hidden_states` entry.
  np.testing.assert_allclose(np.asarray(hidden), ref.hidden_states[-1].numpy(), atol=TOL, rtol=0)


def test_prefill_spanning_several_query_tiles(models):
  """Lengths past PREFILL_QUERY_CHUNK (ragged last tile) match the eager reference."""
  model, cfg, params = models
  length = 2 * llama.PREFILL_QUERY_CHUNK + 37
  tokens = _tokens(batch=1, length=length, seed=3)
  with torch.no_grad():
    ref = model(torch.tensor(tokens)).logits.numpy()
  logits, _, prefix = llama.prefill(params, cfg, jnp.asarray(tokens))
  assert prefix.k.shape[3] == length
  np.testing.assert_allclose(np.asarray(logits), ref, atol=TOL, rtol=0)


def test_components(models):
  model, cfg, params = models
  hf_layer = model.model.layers[1]
  lp = _layer_params(params, 1)
  x = np.random.RandomState(1).randn(2, 10, cfg.hidden_size).astype(np.float32)
  xt = torch.tensor(x)
  pos = np.broadcast_to(np.arange(10), (2, 10))
  rope = model.model.rotary_emb
  cos, sin = rope(xt, torch.tensor(pos))
  with torch.no_grad():
    # RMSNorm
    ours = layers.RMSNorm(cfg.rms_norm_eps).apply({"params": lp["attn_norm"]}, x)
    np.testing.assert_allclose(ours, hf_layer.input_layernorm(xt).numpy(), atol=TOL, rtol=0)
    # RoPE on a [B, S, heads, dh] tensor
    q = np.random.RandomState(2).randn(2, 10, 4, cfg.head_dim).astype(np.float32)
    qt = torch.tensor(q).transpose(1, 2)
    ref_q, _ = hf_llama.apply_rotary_pos_emb(qt, qt, cos, sin)
    ours = layers.apply_rope(jnp.asarray(q), jnp.asarray(pos), layers.rope_inverse_frequencies(cfg))
    np.testing.assert_allclose(ours, ref_q.transpose(1, 2).numpy(), atol=TOL, rtol=0)
    # Attention (causal)
    mask = torch.full((10, 10), torch.finfo(torch.float32).min).triu(1)[None, None]
    ref_attn, _ = hf_layer.self_attn(xt, (cos, sin), attention_mask=mask)
    ours, _, _ = llama.Attention(cfg).apply({"params": lp["attn"]}, x, jnp.asarray(pos))
    np.testing.assert_allclose(ours, ref_attn.numpy(), atol=TOL, rtol=0)
    # MLP
    ours = layers.MLP(cfg).apply({"params": lp["mlp"]}, x)
    np.testing.assert_allclose(ours, hf_layer.mlp(xt).numpy(), atol=TOL, rtol=0)
    # Whole decoder layer
    ref_block = hf_layer(xt, attention_mask=mask, position_embeddings=(cos, sin))
    ref_block = ref_block[0] if isinstance(ref_block, tuple) else ref_block
    ours, _ = llama.Block(cfg, "prefill").apply(
      {"params": lp}, jnp.asarray(x), None, jnp.asarray(pos)
    )
    np.testing.assert_allclose(ours, ref_block.numpy(), atol=TOL, rtol=0)


def test_prefill_then_decode_matches_full_forward(models):
  _, cfg, params = models
  tokens = _tokens(length=20)
  full, full_hidden, _ = llama.prefill(params, cfg, jnp.asarray(tokens))
  c = 12
  _, _, prefix = llama.prefill(params, cfg, jnp.asarray(tokens[:, :c]), logits="none")
  suffix = init_suffix(cfg, tokens.shape[0], 8)
  step = jax.jit(lambda tok, sfx: llama.decode_step(params, cfg, tok, prefix, sfx))
  for t in range(8):
    logits, hidden, suffix = step(jnp.asarray(tokens[:, c + t]), suffix)
    np.testing.assert_allclose(logits, full[:, c + t], atol=TOL, rtol=0)
    np.testing.assert_allclose(hidden, full_hidden[:, c + t], atol=TOL, rtol=0)
  assert int(suffix.length) == 8


def test_bf16_forward_close_to_fp32(models):
  _, cfg, params = models
  tokens = jnp.asarray(_tokens())
  ref, _, _ = llama.prefill(params, cfg, tokens)
  low, _, _ = llama.prefill(params, cfg.replace(dtype="bfloat16"), tokens)
  assert low.dtype == jnp.bfloat16
  # bf16 has ~3 significant digits; logits here are O(1).
  assert float(jnp.abs(low.astype(jnp.float32) - ref).max()) < 0.1
