"""Llama building blocks: RMSNorm, RoPE, SwiGLU MLP, attention softmax.

Numerics follow transformers' eager Llama so that fp32 parity holds to ~1e-6:
RMSNorm and softmax run in fp32, RoPE angles are computed in fp32 and cast to
the activation dtype before rotating.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sol_jax.models.config import ModelConfig

NEG_INF = float(np.finfo(np.float32).min)  # mask value; HF uses finfo(dtype).min


class RMSNorm(nn.Module):
  eps: float
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    return scale.astype(self.dtype) * x32.astype(self.dtype)


def rope_inverse_frequencies(cfg: ModelConfig) -> np.ndarray:
  """Per-pair inverse frequencies, with Llama-3 `rope_scaling` applied."""
  dim = cfg.head_dim
  inv_freq = 1.0 / (
    cfg.rope_theta ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim)
  )
  scaling = cfg.rope_scaling_dict
  if scaling is None:
    return inv_freq.astype(np.float32)
  factor = scaling["factor"]
  low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
  old_len = scaling["original_max_position_embeddings"]
  wavelen = 2 * math.pi / inv_freq
  # Long wavelengths are slowed by `factor`; short ones kept; the band between
  # is interpolated smoothly (Llama-3.1 recipe).
  scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
  smooth = (old_len / wavelen - low) / (high - low)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  medium = ~(wavelen < old_len / high) & ~(wavelen > old_len / low)
  return np.where(medium, smoothed, scaled).astype(np.float32)


def apply_rope(x, positions, inv_freq):
  """Rotate-half RoPE. x: [..., S, heads, dh]; positions: [..., S] int."""
  angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)  # [..., S, dh/2]
  angles = jnp.concatenate([angles, angles], axis=-1)[..., None, :]  # broadcast over heads
  cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
  return x * cos + rotated * sin


def masked_softmax(scores, keep):
  """fp32 softmax over the last axis; positions with keep=False get ~zero weight."""
  scores = jnp.where(keep, scores.astype(jnp.float32), NEG_INF)
  return jax.nn.softmax(scores, axis=-1)


def dense(features: int, name: str, dtype):
  return nn.Dense(features, use_bias=False, dtype=dtype, param_dtype=jnp.float32, name=name)


class MLP(nn.Module):
  """SwiGLU MLP. `input_fn`/`output_fn` are the efficiency hooks (identity if None)."""

  cfg: ModelConfig

  @nn.compact
  def __call__(self, u, input_fn=None, output_fn=None):
    dt = self.cfg.compute_dtype
    if input_fn is not None:
      u = input_fn(u)
    gate = dense(self.cfg.intermediate_size, "gate_proj", dt)(u)
    up = dense(self.cfg.intermediate_size, "up_proj", dt)(u)
    y = dense(self.cfg.hidden_size, "down_proj", dt)(nn.silu(gate) * up)
    if output_fn is not None:
      y = output_fn(y)
    return y
