"""The frozen Llama as Flax Linen modules, used purely functionally.

Two modes share one parameter tree:
- `prefill`: dense causal forward over [B, C] tokens -> logits, final-norm
  hidden states and a `PrefixCache`.
- `decode`: one token per row over [shared prefix, own suffix] with optional
  per-row efficiency `controls` -> logits, hidden, updated `SuffixCache`.

Layers run under `nn.scan` with the suffix cache in the scan carry, updated in
place with `dynamic_update_slice` (measured 2.5x faster decode than passing
caches as scan inputs/outputs, because CPU decode time is dominated by copies).

`controls` is duck-typed so that models never import efficiency code. It must
provide `attention_keep(aux, q, scores_prefix, scores_suffix, suffix_k, t)`,
`mlp_input(u)` and `mlp_output(y)`; `aux` is the per-layer slice of the opaque
`prefix_aux` pytree (e.g. Quest page bounds computed once per input).

Einsum letters (one convention across sol_jax): b batch rows, h heads (KV
heads under GQA), g query heads per KV head, q query positions, k key
positions, d head dim, m model width, p Quest pages.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from sol_jax.models import layers
from sol_jax.models.cache import PrefixCache, SuffixCache
from sol_jax.models.config import ModelConfig

PREFILL_QUERY_CHUNK = 128  # query rows per causal attention tile in prefill


class Attention(nn.Module):
  cfg: ModelConfig

  def setup(self):
    c, dt = self.cfg, self.cfg.compute_dtype
    self.q_proj = layers.dense(c.num_heads * c.head_dim, "q_proj", dt)
    self.k_proj = layers.dense(c.num_kv_heads * c.head_dim, "k_proj", dt)
    self.v_proj = layers.dense(c.num_kv_heads * c.head_dim, "v_proj", dt)
    self.o_proj = layers.dense(c.hidden_size, "o_proj", dt)
    self.inv_freq = layers.rope_inverse_frequencies(c)

  def qkv(self, x, positions):
    """x [B, S, D] -> q [B, Hkv, g, S, dh], k/v [B, Hkv, S, dh] with RoPE."""
    c = self.cfg
    b, s, _ = x.shape
    q = self.q_proj(x).reshape(b, s, c.num_heads, c.head_dim)
    k = self.k_proj(x).reshape(b, s, c.num_kv_heads, c.head_dim)
    v = self.v_proj(x).reshape(b, s, c.num_kv_heads, c.head_dim)
    q = layers.apply_rope(q, positions, self.inv_freq)
    k = layers.apply_rope(k, positions, self.inv_freq)
    g = c.num_heads // c.num_kv_heads
    q = q.reshape(b, s, c.num_kv_heads, g, c.head_dim).transpose(0, 2, 3, 1, 4)
    return q, k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)

  def out(self, ctx):
    """ctx [B, Hkv, g, S, dh] -> [B, S, D]."""
    b, _, _, s, _ = ctx.shape
    ctx = ctx.transpose(0, 3, 1, 2, 4).reshape(b, s, -1)
    return self.o_proj(ctx)

  def __call__(self, x, positions):
    """Dense causal self-attention over the call's own tokens (prefill).

    Queries go in chunks of PREFILL_QUERY_CHUNK, each against only the keys up
    to its last position: the masked upper triangle is never computed and the
    score tiles stay in cache (measured 2.3x faster at C=512 on CPU).
    """
    q, k, v = self.qkv(x, positions)
    scale = self.cfg.head_dim**-0.5
    s = x.shape[1]
    ctx = []
    for lo in range(0, s, PREFILL_QUERY_CHUNK):
      hi = min(lo + PREFILL_QUERY_CHUNK, s)
      scores = jnp.einsum("bhgqd,bhkd->bhgqk", q[..., lo:hi, :], k[:, :, :hi]) * scale
      causal = jnp.arange(lo, hi)[:, None] >= jnp.arange(hi)[None, :]
      probs = layers.masked_softmax(scores, causal).astype(v.dtype)
      ctx.append(jnp.einsum("bhgqk,bhkd->bhgqd", probs, v[:, :, :hi]))
    return self.out(jnp.concatenate(ctx, axis=-2)), k, v


def _decode_attention(attn: Attention, x, t, prefix_k, prefix_v, suffix, layer, aux, controls):
  """Decode attention; writes this token's k/v into `suffix` at (layer, slot t)."""
  c = attn.cfg
  prefix_len = prefix_k.shape[2]
  positions = jnp.full((x.shape[0], 1), prefix_len + t, jnp.int32)
  q, k, v = attn.qkv(x, positions)  # q [B,Hkv,g,1,dh], k/v [B,Hkv,1,dh]
  sk, sv = suffix
  sk = jax.lax.dynamic_update_slice(sk, k[None].astype(sk.dtype), (layer, 0, 0, t, 0))
  sv = jax.lax.dynamic_update_slice(sv, v[None].astype(sv.dtype), (layer, 0, 0, t, 0))
  layer_k = jax.lax.dynamic_index_in_dim(sk, layer, 0, keepdims=False)
  layer_v = jax.lax.dynamic_index_in_dim(sv, layer, 0, keepdims=False)
  q = q[:, :, :, 0]  # [B, Hkv, g, dh]
  scale = c.head_dim**-0.5
  scores_p = jnp.einsum("bhgd,bhkd->bhgk", q, prefix_k) * scale
  scores_s = jnp.einsum("bhgd,bhkd->bhgk", q, layer_k) * scale
  valid_s = (jnp.arange(layer_k.shape[2]) <= t)[None, None, None, :]
  keep_p = jnp.ones((1, 1, 1, prefix_len), bool)
  keep_s = valid_s
  if controls is not None:
    sel_p, sel_s = controls.attention_keep(aux, q, scores_p, scores_s, layer_k, t)
    keep_p, keep_s = keep_p & sel_p, keep_s & sel_s
  scores = jnp.concatenate([scores_p, scores_s], axis=-1)
  keep = jnp.concatenate(
    [jnp.broadcast_to(keep_p, scores_p.shape), jnp.broadcast_to(keep_s, scores_s.shape)], axis=-1
  )
  probs = layers.masked_softmax(scores, keep).astype(prefix_v.dtype)
  ctx = jnp.einsum("bhgk,bhkd->bhgd", probs[..., :prefix_len], prefix_v) + jnp.einsum(
    "bhgk,bhkd->bhgd", probs[..., prefix_len:], layer_v
  )
  return attn.out(ctx[:, :, :, None]), (sk, sv)


class Block(nn.Module):
  """Pre-norm decoder layer; the scan body over layers."""

  cfg: ModelConfig
  mode: str  # "prefill" | "decode"

  @nn.compact
  def __call__(self, carry, xs, broadcast):
    c, dt = self.cfg, self.cfg.compute_dtype
    attn = Attention(c, name="attn")
    attn_norm = layers.RMSNorm(c.rms_norm_eps, dt, name="attn_norm")
    mlp_norm = layers.RMSNorm(c.rms_norm_eps, dt, name="mlp_norm")
    mlp = layers.MLP(c, name="mlp")
    if self.mode == "prefill":
      x, positions = carry, broadcast
      h, k, v = attn(attn_norm(x), positions)
      x = x + h
      x = x + mlp(mlp_norm(x))
      return x, (k, v)
    x, suffix, layer = carry
    prefix_k, prefix_v, aux = xs
    t, controls = broadcast
    h, suffix = _decode_attention(
      attn, attn_norm(x), t, prefix_k, prefix_v, suffix, layer, aux, controls
    )
    x = x + h
    hooks = (None, None) if controls is None else (controls.mlp_input, controls.mlp_output)
    x = x + mlp(mlp_norm(x), *hooks)
    return (x, suffix, layer + 1), None


class Llama(nn.Module):
  cfg: ModelConfig
  mode: str = "prefill"

  def setup(self):
    c = self.cfg
    self.embed = nn.Embed(
      c.vocab_size, c.hidden_size, dtype=c.compute_dtype, param_dtype=jnp.float32, name="embed"
    )
    self.layers = nn.scan(
      Block,
      variable_axes={"params": 0},
      split_rngs={"params": True},
      in_axes=(0, nn.broadcast),
      length=c.num_layers,
    )(c, self.mode, name="layers")
    self.final_norm = layers.RMSNorm(c.rms_norm_eps, c.compute_dtype, name="final_norm")
    if not c.tie_word_embeddings:
      self.lm_head = layers.dense(c.vocab_size, "lm_head", c.compute_dtype)

  def logits(self, hidden):
    if self.cfg.tie_word_embeddings:
      return self.embed.attend(hidden)
    return self.lm_head(hidden)

  def __call__(self, *args, **kwargs):
    return self.prefill(*args, **kwargs) if self.mode == "prefill" else self.decode(*args, **kwargs)

  def prefill(self, tokens, positions=None, logits: str = "all"):
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
    x = self.embed(tokens)
    dummy_xs = jnp.zeros((self.cfg.num_layers,), jnp.int32)
    x, (k, v) = self.layers(x, dummy_xs, positions)
    hidden = self.final_norm(x)
    out = {
      "all": lambda: self.logits(hidden),
      "last": lambda: self.logits(hidden[:, -1]),
      "none": lambda: None,
    }[logits]()
    return out, hidden, PrefixCache(k=k, v=v)

  def decode(
    self, tokens, prefix: PrefixCache, suffix: SuffixCache, prefix_aux=None, controls=None
  ):
    t = suffix.length
    x = self.embed(tokens)[:, None]  # [B, 1, D]
    xs = (prefix.k, prefix.v, prefix_aux)
    carry = (x, (suffix.k, suffix.v), jnp.zeros((), jnp.int32))
    (x, (sk, sv), _), _ = self.layers(carry, xs, (t, controls))
    hidden = self.final_norm(x[:, 0])
    return self.logits(hidden), hidden, SuffixCache(k=sk, v=sv, length=t + 1)


# ---- functional API ---------------------------------------------------------


def init_params(cfg: ModelConfig, rng, seq_len: int = 8):
  tokens = jnp.zeros((1, seq_len), jnp.int32)
  return Llama(cfg, "prefill").init(rng, tokens, logits="last")["params"]


@functools.partial(jax.jit, static_argnames=("cfg", "logits"))
def prefill(params, cfg: ModelConfig, tokens, logits: str = "all"):
  """Dense prefill. Returns (logits or None, final-norm hidden [B, C, D], PrefixCache)."""
  return Llama(cfg, "prefill").apply({"params": params}, tokens, logits=logits)


def lm_head(params, cfg: ModelConfig, hidden):
  """Logits of final-norm hidden states [..., D] (e.g. a few gathered positions, so a
  scorer need not project every position onto the full vocabulary)."""
  return Llama(cfg, "prefill").apply({"params": params}, hidden, method=Llama.logits)


def decode_step(
  params,
  cfg: ModelConfig,
  tokens,
  prefix: PrefixCache,
  suffix: SuffixCache,
  prefix_aux: Any = None,
  controls: Optional[Any] = None,
):
  """One decode token per row (not jitted: callers jit/scan/vmap around it)."""
  return Llama(cfg, "decode").apply(
    {"params": params}, tokens, prefix, suffix, prefix_aux, controls
  )


def embed_tokens(params, tokens):
  """Rows of the input-embedding table (the policy's e_t), fp32."""
  return jnp.take(params["embed"]["embedding"], tokens, axis=0).astype(jnp.float32)
