"""MLP-input structured pruning (method §4.3) and MLP-output fake quantization (§4.4)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from sol_jax.efficiency.selection import top_k_mask

MIN_BITS, MAX_BITS = 2, 16


def check_bits(bits) -> None:
  """Rejects concrete bit-widths outside [2, 16] (traced values are not checked)."""
  try:
    arr = np.asarray(bits)
  except Exception:  # a tracer: validated where the schedule was built
    return
  if arr.size and (arr.min() < MIN_BITS or arr.max() > MAX_BITS):
    raise ValueError(
      f"bit-width must lie in [{MIN_BITS}, {MAX_BITS}], got values in "
      f"[{arr.min()}, {arr.max()}]; use 16 for 'no quantization'."
    )


def prune_count(rho, width: int, dtype=jnp.float32):
  """k = ceil(ρ·D) computed in the activation dtype (as the reference), clamped to [1, D]."""
  k = jnp.ceil(jnp.asarray(rho, dtype) * jnp.asarray(width, dtype)).astype(jnp.int32)
  return jnp.clip(k, 1, width)


def prune_mlp_input(u, rho):
  """Keeps, per token, the ceil(ρ·D) channels of largest |u| (ties kept); zeros the rest.

  u: [B, ..., D]; rho: [B]. Each token is scored on its own (decode has one token).
  """
  width = u.shape[-1]
  k = prune_count(rho, width, u.dtype).reshape((-1,) + (1,) * (u.ndim - 1))
  keep = top_k_mask(jnp.abs(u), jnp.broadcast_to(k, u.shape[:-1] + (1,))[..., 0])
  return jnp.where(keep, u, jnp.zeros_like(u))


def fake_quantize(y, bits):
  """Per-token symmetric absmax fake quantization in fp32; bits >= 16 is the identity.

  y: [B, ..., D]; bits: [B] ints. qmax = 2^(b-1) - 1, round half to even.
  """
  shape = (-1,) + (1,) * (y.ndim - 1)
  b = jnp.asarray(bits).reshape(shape)
  qmax = 2.0 ** (b.astype(jnp.float32) - 1.0) - 1.0
  y32 = y.astype(jnp.float32)
  scale = jnp.maximum(jnp.abs(y32).max(axis=-1, keepdims=True), 1e-8) / qmax
  q = scale * jnp.clip(jnp.round(y32 / scale), -qmax, qmax)
  return jnp.where(b >= MAX_BITS, y, q.astype(y.dtype))
