"""Exact top-k masks without sorting: radix bisection on order-preserving keys.

XLA's CPU sort is slow; the k-th largest value is found instead by fixing its
32 key bits from the most significant down, each step one vectorised compare
and count. Measured 4x faster than `jnp.sort` for [3840, 576] rows, and exact,
including ties. The counts run over a leading axis (keys moved to [N, ...]) so
each step is a vertical add across rows rather than a short horizontal
reduction per row: 1.2-1.35x faster for Quest's [1152, 66] and the MLP's
[128, 576] (BUILD_NOTES.md).
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
  key_first = jnp.moveaxis(key, -1, 0)  # [N, ...]
  k = jnp.broadcast_to(jnp.asarray(k, jnp.int32), x.shape[:-1])

  def fix_bit(i, ans):
    cand = ans | (jnp.uint32(1) << (31 - i).astype(jnp.uint32))
    enough = (key_first >= cand).sum(0, dtype=jnp.int32) >= k
    return jnp.where(enough, cand, ans)

  ans = jax.lax.fori_loop(0, 32, fix_bit, jnp.zeros(x.shape[:-1], jnp.uint32))
  return key >= ans[..., None]
