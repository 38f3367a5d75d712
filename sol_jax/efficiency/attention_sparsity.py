"""Token-level attention sparsity for one decode token (method §4.2).

All functions see one layer and one query token per row:
  q [B, Hkv, g, dh] (RoPE'd), scores [B, Hkv, g, C] over the shared prefix and
  [B, Hkv, g, T] over the row's own suffix, whose slots > t are not yet written.
They return boolean keep masks of the same shapes. kv_len = C + t + 1 counts the
current token, which sits at suffix slot t.

Quest pages are aligned at cache index 0. With C a multiple of the page size the
prefix pages are complete, so their elementwise key min/max are computed once
per input (`prefix_page_bounds`) and shared by all K schedules and all steps;
only the suffix pages are bounded at each step.
"""

from __future__ import annotations

import jax.numpy as jnp

from sol_jax.efficiency.selection import top_k_mask
from sol_jax.models.cache import PrefixCache


def prefix_page_bounds(prefix: PrefixCache, page_size: int):
  """(min, max) over each page of the prefix keys: [L, B, Hkv, C/S, dh] each."""
  l, b, h, c, d = prefix.k.shape
  if c % page_size:
    raise ValueError(
      f"Quest needs the context length C={c} to be a multiple of the page "
      f"size {page_size}; choose C or page_size so that C % page_size == 0."
    )
  pages = prefix.k.reshape(l, b, h, c // page_size, page_size, d)
  return pages.min(axis=4), pages.max(axis=4)


def token_budget(kappa, kv_len):
  """n = ceil(kappa * kv_len) in fp32, clamped to [1, kv_len] (method §4.2.1 step 1)."""
  kv = jnp.asarray(kv_len, jnp.float32)
  n = jnp.ceil(jnp.asarray(kappa, jnp.float32) * kv)
  return jnp.clip(n, 1, kv).astype(jnp.int32)


def _upper_bound_scores(q, page_min, page_max):
  """Σ_d max(q·M, q·m) = q⁺·M + q⁻·m, as two matmuls. -> [B, Hkv, g, P]."""
  q32 = q.astype(jnp.float32)
  pos, neg = jnp.maximum(q32, 0), jnp.minimum(q32, 0)
  return jnp.einsum("bhgd,bhpd->bhgp", pos, page_max.astype(jnp.float32)) + jnp.einsum(
    "bhgd,bhpd->bhgp", neg, page_min.astype(jnp.float32)
  )


def quest_keep(q, prefix_bounds, suffix_k, t, kappa, page_size: int):
  """Quest page selection, independent per query head; ties with the threshold kept."""
  pmin, pmax = prefix_bounds
  b, h, cap, d = suffix_k.shape
  n_prefix_pages = pmin.shape[2]
  prefix_len = n_prefix_pages * page_size
  s = page_size
  n_suffix_pages = -(-cap // s)
  pad = n_suffix_pages * s - cap
  slot_valid = jnp.arange(cap + pad) <= t
  sk = jnp.pad(suffix_k.astype(jnp.float32), ((0, 0), (0, 0), (0, pad), (0, 0)))
  sk = sk.reshape(b, h, n_suffix_pages, s, d)
  valid = slot_valid.reshape(1, 1, n_suffix_pages, s, 1)
  smin = jnp.where(valid, sk, jnp.inf).min(axis=3)
  smax = jnp.where(valid, sk, -jnp.inf).max(axis=3)
  page_valid = jnp.arange(n_suffix_pages) * s <= t
  # Empty suffix pages have ±inf bounds; zero them before the matmul, mask after.
  smin = jnp.where(page_valid[None, None, :, None], smin, 0)
  smax = jnp.where(page_valid[None, None, :, None], smax, 0)
  scores = jnp.concatenate(
    [_upper_bound_scores(q, pmin, pmax), _upper_bound_scores(q, smin, smax)], axis=-1
  )
  allowed = jnp.concatenate([jnp.ones((n_prefix_pages,), bool), page_valid])
  scores = jnp.where(allowed, scores, -jnp.inf)

  kv_len = prefix_len + t + 1
  n = token_budget(kappa, kv_len)  # [B]
  n_allowed = n_prefix_pages + t // s + 1
  n_pages = jnp.minimum(-(-n // s), n_allowed)
  keep_page = allowed & top_k_mask(scores, n_pages[:, None, None])
  keep_p = jnp.repeat(keep_page[..., :n_prefix_pages], s, axis=-1)
  keep_s = jnp.repeat(keep_page[..., n_prefix_pages:], s, axis=-1)[..., :cap]
  keep_s = keep_s & (jnp.arange(cap) <= t)
  # Fallback: if nothing survived (only possible with NaN scores), keep the current token.
  none = ~(keep_p.any(-1, keepdims=True) | keep_s.any(-1, keepdims=True))
  keep_s = keep_s | (none & (jnp.arange(cap) == t))
  return keep_p, keep_s


def protect_sink_window(keep_p, keep_s, t, sink: int, window: int):
  """Optionally always keep positions [0, Ts) and the last Tw+1 (incl. current)."""
  prefix_len, cap = keep_p.shape[-1], keep_s.shape[-1]
  kv_len = prefix_len + t + 1
  pos_p = jnp.arange(prefix_len)
  pos_s = prefix_len + jnp.arange(cap)
  force = lambda pos: (pos < sink) | ((pos >= kv_len - window - 1) & (pos < kv_len))
  return keep_p | force(pos_p), keep_s | force(pos_s)


def recency_keep(prefix_len: int, cap: int, t, kappa, sink: int, window: int):
  """Sink + sliding window whose width grows with κ (method §4.2.2). Same for all heads."""
  kv_len = prefix_len + t + 1
  n_old = kv_len - sink - window - 1
  n_e = jnp.ceil(jnp.asarray(kappa, jnp.float32) * jnp.asarray(n_old, jnp.float32)).astype(
    jnp.int32
  )
  start = jnp.maximum(sink, kv_len - window - 1 - n_e)[:, None]  # [B, 1]
  everything = kv_len <= sink + window + 1

  def keep(pos):
    k = (pos[None] < sink) | ((pos[None] >= start) & (pos[None] < kv_len))
    return (k | everything)[:, None, None, :]

  return keep(jnp.arange(prefix_len)), keep(prefix_len + jnp.arange(cap))


def relevancy_keep(scores_p, scores_s, t, kappa, sink: int, window: int):
  """Oracle top-κ by exact logit among non-sink, non-window positions (method §4.2.3)."""
  prefix_len, cap = scores_p.shape[-1], scores_s.shape[-1]
  kv_len = prefix_len + t + 1
  scores = jnp.concatenate([scores_p, scores_s], axis=-1).astype(jnp.float32)
  pos = jnp.concatenate([jnp.arange(prefix_len), prefix_len + jnp.arange(cap)])
  valid = pos < kv_len
  # The reference's recent window is Tw+2 valid positions (method Q14).
  always = valid & ((pos < sink) | (pos >= kv_len - window - 2))
  eligible = valid & ~always
  n_elig = eligible.sum()
  k = jnp.ceil(jnp.asarray(kappa, jnp.float32) * n_elig.astype(jnp.float32)).astype(jnp.int32)
  masked = jnp.where(eligible, scores, -jnp.inf)
  chosen = (
    eligible & top_k_mask(masked, jnp.maximum(k, 1)[:, None, None]) & (k > 0)[:, None, None, None]
  )
  keep = always | chosen
  return keep[..., :prefix_len], keep[..., prefix_len:]
