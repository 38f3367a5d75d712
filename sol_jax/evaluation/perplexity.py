"""Dense perplexity on token blocks: the SOL protocol and full-sequence.

SOL protocol (method §12.1): dense prefill of x_0..x_{C-1}, then T teacher-forced
decode steps on x_C..x_{C+T-1}, scoring x_{C+1}..x_{C+T}. The decode runs
through the same cache path the controlled harness uses (one schedule row).
Full-sequence: one causal forward over x_0..x_{C+T-1} scoring x_1..x_{C+T}.
"""

from __future__ import annotations

import functools
import math
from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from sol_jax.efficiency import decode
from sol_jax.models import llama
from sol_jax.models.config import ModelConfig


@functools.partial(jax.jit, static_argnames=("cfg", "context_len", "horizon"))
def sol_protocol_nll(params, cfg: ModelConfig, blocks, context_len: int, horizon: int):
  """[B, C+T+1] blocks -> NLL [B, T] of the T scored tokens under dense decode."""
  _, _, prefix, _ = decode.dense_prefill(params, cfg, blocks[:, :context_len], criteria="none")
  logits = decode.dense_decode_logits(params, cfg, blocks, prefix, context_len, horizon)
  return -decode.token_logprob(logits, blocks[:, context_len + 1 : context_len + horizon + 1])


@functools.partial(jax.jit, static_argnames=("cfg",))
def full_sequence_nll(params, cfg: ModelConfig, blocks):
  """[B, N+1] blocks -> NLL [B, N] of every next token under one causal forward."""
  logits, _, _ = llama.prefill(params, cfg, blocks[:, :-1])
  return -decode.token_logprob(logits, blocks[:, 1:])


def batches(blocks: np.ndarray, batch_size: int) -> Iterable[np.ndarray]:
  for i in range(0, len(blocks), batch_size):
    yield blocks[i : i + batch_size]


def evaluate_dense(
  params,
  cfg: ModelConfig,
  blocks: np.ndarray,
  context_len: int,
  horizon: int,
  batch_size: int,
  progress: bool = True,
) -> dict:
  """Both perplexities over all blocks (means over every scored token)."""
  sol, full = [], []
  for batch in tqdm(
    list(batches(blocks, batch_size)), desc="dense eval (jax)", disable=not progress
  ):
    batch = jnp.asarray(batch)
    sol.append(np.asarray(sol_protocol_nll(params, cfg, batch, context_len, horizon)))
    full.append(np.asarray(full_sequence_nll(params, cfg, batch)))
  return perplexity_summary(np.concatenate(sol), np.concatenate(full))


def perplexity_summary(sol_nll: np.ndarray, full_nll: np.ndarray) -> dict:
  """SOL-protocol and full-sequence PPL (and token counts) from per-token NLLs."""
  return {
    "sol_ppl": math.exp(float(np.mean(sol_nll, dtype=np.float64))),
    "full_ppl": math.exp(float(np.mean(full_nll, dtype=np.float64))),
    "sol_tokens": int(sol_nll.size),
    "full_tokens": int(full_nll.size),
  }
