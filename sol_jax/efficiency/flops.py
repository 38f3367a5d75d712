"""Per-token FLOPs of one controlled decode step, relative to the dense step.

The reference has no FLOPs model (method Q8: its budgets are nominal ratios);
this is our addition, for a compute-based Pareto x-axis. One decode token of a
Llama layer costs (1 multiply-add = 2 FLOPs):

  q/k/v/o projections  2·D·(H·dh + 2·Hkv·dh + H·dh)
  attention            2·2·H·dh·n           (scores q·k and the weighted sum of values)
  MLP gate + up        2·2·k·F              (k = kept MLP-input channels)
  MLP down             2·F·D·(b/16)
  LM head (once)       2·D·V

Dense is n = kv_len, k = D, b = 16. Under an action (κ, ρ, b):
- n is the nominal token budget ceil(κ·kv_len) (clamped to [1, kv_len], fp32 as
  in the mechanism), or with `token_count="pages"` the page-rounded count
  min(ceil(n/S)·S, kv_len). The latter is what Quest keeps when the partial last
  page is not chosen and no score ties add pages; it is an upper bound otherwise.
- k = ceil(ρ·D) clamped to [1, D]: only k input columns of W_gate and W_up are used.
- Bit-width: the down projection's output is fake-quantized to b bits, which by
  itself saves no FLOPs. We model a b-bit output as costing b/16 of the down
  projection's MACs (a bit-proportional MAC cost, as on bit-serial or
  low-precision hardware). This is a modelling choice, not a measurement;
  q/k/v/o, gate/up and attention stay full precision.
- `quest_overhead=True` adds Quest's page scoring, 2·H·dh·ceil(kv_len/S) per
  layer, on steps that select (nominal n < kv_len). The page min/max updates are
  comparisons and are not counted.
The dense action therefore has relative FLOPs exactly 1.0 in every mode.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from sol_jax.efficiency.actions import MAX_BITS, ActionSpace
from sol_jax.models.config import ModelConfig

_TOKEN_COUNTS = ("nominal", "pages")


def _check(token_count: str, page_size: Optional[int], quest_overhead: bool) -> None:
  if token_count not in _TOKEN_COUNTS:
    raise ValueError(f"token_count={token_count!r}; use one of {_TOKEN_COUNTS}.")
  if (token_count == "pages" or quest_overhead) and (page_size is None or page_size < 1):
    raise ValueError(
      "token_count='pages' and quest_overhead=True need page_size, a positive integer "
      f"(Quest's page size S), got {page_size!r}."
    )


def kept_tokens(
  kappa: jax.Array, kv_len: jax.Array, token_count: str = "nominal", page_size: Optional[int] = None
) -> jax.Array:
  """Attended keys under keep fraction κ: nominal ceil(κ·kv_len) or page-rounded."""
  _check(token_count, page_size, False)
  kv = jnp.asarray(kv_len, jnp.float32)
  n = jnp.clip(jnp.ceil(jnp.asarray(kappa, jnp.float32) * kv), 1.0, kv)
  if token_count == "pages":
    s = jnp.float32(page_size)
    n = jnp.minimum(jnp.ceil(n / s) * s, kv)
  return n


def decode_flops(
  config: ModelConfig,
  kappa: jax.Array,
  rho: jax.Array,
  bits: jax.Array,
  kv_len: jax.Array,
  *,
  token_count: str = "nominal",
  page_size: Optional[int] = None,
  quest_overhead: bool = False,
) -> jax.Array:
  """FLOPs of one decode token under (κ, ρ, b); all array arguments broadcast."""
  _check(token_count, page_size, quest_overhead)
  d, f = float(config.hidden_size), float(config.intermediate_size)
  h, hkv, dh = float(config.num_heads), float(config.num_kv_heads), float(config.head_dim)
  kv = jnp.asarray(kv_len, jnp.float32)
  n = kept_tokens(kappa, kv, token_count, page_size)
  selects = kept_tokens(kappa, kv) < kv  # Quest scores pages whenever the nominal budget < kv_len
  k = jnp.clip(jnp.ceil(jnp.asarray(rho, jnp.float32) * jnp.float32(d)), 1.0, d)
  bit_share = jnp.asarray(bits, jnp.float32) / jnp.float32(MAX_BITS)
  proj = 2.0 * d * (2.0 * h * dh + 2.0 * hkv * dh)
  attn = 4.0 * h * dh * n
  gate_up = 4.0 * k * f
  down = 2.0 * f * d * bit_share
  layer = proj + attn + gate_up + down
  if quest_overhead:
    pages = jnp.ceil(kv / jnp.float32(page_size))
    layer = layer + jnp.where(selects, 2.0 * h * dh * pages, 0.0)
  return config.num_layers * layer + 2.0 * d * config.vocab_size


def dense_decode_flops(config: ModelConfig, kv_len: jax.Array) -> jax.Array:
  """FLOPs of one fully dense decode token."""
  return decode_flops(config, 1.0, 1.0, MAX_BITS, kv_len)


def relative_flops(
  config: ModelConfig,
  kappa: jax.Array,
  rho: jax.Array,
  bits: jax.Array,
  kv_len: jax.Array,
  **kwargs,
) -> jax.Array:
  """decode_flops(κ, ρ, b) / dense; keyword options as in `decode_flops`."""
  return decode_flops(config, kappa, rho, bits, kv_len, **kwargs) / dense_decode_flops(
    config, kv_len
  )


def action_relative_flops(
  config: ModelConfig, space: ActionSpace, kv_len: jax.Array, **kwargs
) -> jax.Array:
  """Relative FLOPs of every action of `space`: shape [..., A] for kv_len of shape [...]."""
  kv = jnp.asarray(kv_len, jnp.float32)[..., None]
  return relative_flops(config, space.kappa, space.rho, space.bits, kv, **kwargs)


def schedule_relative_flops(
  config: ModelConfig, space: ActionSpace, actions: jax.Array, kv_len: jax.Array, **kwargs
) -> jax.Array:
  """Total FLOPs of executed schedules `actions` (e.g. [rows, T]) over the dense total.

  kv_len broadcasts against `actions` (e.g. [T] or [rows, T]).
  """
  actions = jnp.asarray(actions)
  kv = jnp.broadcast_to(jnp.asarray(kv_len, jnp.float32), actions.shape)
  spent = decode_flops(
    config,
    jnp.asarray(space.kappa)[actions],
    jnp.asarray(space.rho)[actions],
    jnp.asarray(space.bits)[actions],
    kv,
    **kwargs,
  )
  return jnp.sum(spent) / jnp.sum(dense_decode_flops(config, kv))


def prefill_flops(config: ModelConfig, seq_len: int, logits_positions: int = 1) -> float:
  """FLOPs of one dense causal prefill of `seq_len` tokens (causal attention counted
  exactly, S(S+1)/2 query-key pairs), with the LM head on `logits_positions` tokens."""
  d, f = config.hidden_size, config.intermediate_size
  h, hkv, dh = config.num_heads, config.num_kv_heads, config.head_dim
  per_token = 2 * d * (2 * h * dh + 2 * hkv * dh) + 6 * d * f
  attention = 4 * h * dh * seq_len * (seq_len + 1) / 2
  return (
    config.num_layers * (per_token * seq_len + attention)
    + 2 * d * config.vocab_size * logits_positions
  )
