"""Explicit KV cache for SOL episodes: one shared prefix, one suffix per schedule.

Layout is head-major, [L, B, Hkv, S, dh], so decode attention reads keys as
contiguous [S, dh] panels (no per-step transpose of the prefix).

- `PrefixCache` holds the dense prefill of C tokens, stored once per input.
- `SuffixCache` holds the T controlled steps of one schedule. In an episode the
  K schedules of an input are a `vmap` over a schedule axis of the suffix only,
  so memory grows with B*C + B*K*T, never B*K*C.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from sol_jax.models.config import ModelConfig


@flax.struct.dataclass
class PrefixCache:
  k: jax.Array  # [L, B, Hkv, C, dh], RoPE already applied
  v: jax.Array  # [L, B, Hkv, C, dh]

  @property
  def length(self) -> int:
    return self.k.shape[3]


@flax.struct.dataclass
class SuffixCache:
  k: jax.Array  # [L, B, Hkv, T, dh]
  v: jax.Array  # [L, B, Hkv, T, dh]
  length: jax.Array  # int32 scalar: filled slots (shared by all rows)

  @property
  def capacity(self) -> int:
    return self.k.shape[3]


def init_suffix(cfg: ModelConfig, batch: int, capacity: int) -> SuffixCache:
  shape = (cfg.num_layers, batch, cfg.num_kv_heads, capacity, cfg.head_dim)
  zeros = jnp.zeros(shape, cfg.compute_dtype)
  return SuffixCache(k=zeros, v=zeros, length=jnp.zeros((), jnp.int32))


def suffix_schedule_axes(suffix: SuffixCache, axis: int = 0) -> SuffixCache:
  """`vmap` in_axes for a suffix whose schedule axis sits at `axis` of k/v."""
  return SuffixCache(k=axis, v=axis, length=None)


def init_schedule_suffix(
  cfg: ModelConfig, batch: int, schedules: int, capacity: int
) -> SuffixCache:
  """Suffix for B inputs x K schedules: k/v [K, L, B, Hkv, T, dh] (schedule axis 0).

  Schedule-major because `vmap` keeps a batched operand's mapped axis in front:
  with the K axis anywhere else every decode step transposed and copied the
  whole suffix cache (measured: two full copies per step in the compiled HLO).
  """
  shape = (schedules, cfg.num_layers, batch, cfg.num_kv_heads, capacity, cfg.head_dim)
  zeros = jnp.zeros(shape, cfg.compute_dtype)
  return SuffixCache(k=zeros, v=zeros, length=jnp.zeros((), jnp.int32))
