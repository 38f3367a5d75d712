"""Controlled decoding of K counterfactual schedules over one shared prefix.

`schedule_step` is `decode_step` vmapped over the schedule axis K with the
frozen params and the input's prefix cache (and its Quest page bounds)
broadcast: rows are [B, K], row order input-major. The tokens are either [B],
shared by the K schedules (teacher forcing, broadcast like the prefix), or
[B, K], one per row (K sampled continuations or K answer choices sharing one
context prefix), mapped along with the suffix and the controls.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sol_jax.efficiency.controls import Controls, prefix_aux
from sol_jax.models import llama
from sol_jax.models.cache import (
  PrefixCache,
  SuffixCache,
  init_schedule_suffix,
  suffix_schedule_axes,
)
from sol_jax.models.config import ModelConfig


def dense_prefill(params, cfg: ModelConfig, tokens, criteria: str = "quest", page_size: int = 8):
  """Dense prefill of [B, C] tokens -> (last logits [B,V], last hidden [B,D], prefix, aux)."""
  logits, hidden, prefix = llama.prefill(params, cfg, tokens, logits="last")
  return logits, hidden[:, -1], prefix, prefix_aux(prefix, criteria, page_size)


def schedule_step(
  params,
  cfg: ModelConfig,
  tokens,
  prefix: PrefixCache,
  aux,
  suffix: SuffixCache,
  controls: Controls,
):
  """One controlled step for B inputs x K schedules.

  tokens [B] (shared by the K schedules) or [B, K] (one per row), suffix k/v
  [K, L, B, Hkv, T, dh], controls arrays [B, K] -> logits [B, K, V], hidden
  [B, K, D], new suffix.
  """
  step = lambda tok, sfx, ctl: llama.decode_step(params, cfg, tok, prefix, sfx, aux, ctl)
  axes = suffix_schedule_axes(suffix)
  in_axes = (_token_axis(tokens), axes, controls.schedule_axes(1))
  return jax.vmap(step, in_axes=in_axes, out_axes=(1, 1, axes))(tokens, suffix, controls)


def dense_schedule_step(params, cfg: ModelConfig, tokens, prefix: PrefixCache, suffix: SuffixCache):
  """The uncontrolled step (controls=None) over the same [B, K] row layout; tokens [B] or [B, K]."""
  step = lambda tok, sfx: llama.decode_step(params, cfg, tok, prefix, sfx)
  axes = suffix_schedule_axes(suffix)
  return jax.vmap(step, in_axes=(_token_axis(tokens), axes), out_axes=(1, 1, axes))(tokens, suffix)


def _token_axis(tokens):
  """vmap axis of a step's tokens: None for [B] (broadcast to the K schedules), 1 for [B, K]."""
  if tokens.ndim not in (1, 2):
    raise ValueError(f"decode tokens must be [B] or [B, K], got shape {tokens.shape}")
  return None if tokens.ndim == 1 else 1


def new_suffix(cfg: ModelConfig, batch: int, schedules: int, horizon: int) -> SuffixCache:
  return init_schedule_suffix(cfg, batch, schedules, horizon)


def token_logprob(logits, labels):
  """log softmax(logits)[label] in fp32. logits [..., V], labels broadcastable to [...]."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  labels = jnp.broadcast_to(labels, logp.shape[:-1])
  return jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]


def dense_decode_logits(
  params, cfg: ModelConfig, blocks, prefix: PrefixCache, context_len: int, horizon: int
):
  """Dense teacher-forced decode of x_C..x_{C+T-1} after `prefix` -> logits [B, T, V]."""
  suffix = new_suffix(cfg, blocks.shape[0], 1, horizon)

  def step(suffix, t):
    tok = jax.lax.dynamic_index_in_dim(blocks, context_len + t, 1, keepdims=False)
    logits, _, suffix = dense_schedule_step(params, cfg, tok, prefix, suffix)
    return suffix, logits[:, 0]

  return jnp.moveaxis(jax.lax.scan(step, suffix, jnp.arange(horizon))[1], 0, 1)
