"""Evaluate compute schedules on real text: the ruler every result is read with.

Per batch of blocks (method §12.1): a dense prefill of C tokens, then T
teacher-forced controlled steps for K schedules per block at once (B*K rows
sharing each block's prefix). A *provider* chooses every row's action at every
step; it is a static, hashable object with three pure methods:

  init(inputs, batch, schedules, horizon) -> state
  act(inputs, state, ctx: StepContext) -> (actions [B, K] int32, state)
  observe(inputs, state, ctx, executed [B, K]) -> state

`inputs` is a pytree of arrays (a precomputed schedule, targets, policy
params...). Non-effective steps (kv_len <= Ts+Tw+1) execute the dense action.
A provider may also define `record(inputs, state, ctx, chosen) -> pytree` of
per-step [B, K, ...] arrays, returned stacked as `Episode.records` [B, K, T, ...]
(the RL rollout stores observations and log-probs this way).

With `reference_logits` [B, T, V] (the dense decode's), `Episode.kl` [B, K, T]
holds KL(p_dense || p_controlled) per step, for the KL reward option.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from sol_jax.efficiency import decode
from sol_jax.efficiency.actions import ActionSpace, force_dense, is_effective
from sol_jax.efficiency.controls import ControlSettings
from sol_jax.evaluation.heuristics import drift_signal, entropy_signal
from sol_jax.models import llama
from sol_jax.models.config import ModelConfig


class StepContext(NamedTuple):
  t: jax.Array  # step index
  effective: jax.Array  # bool scalar: may this step compress?
  tokens: jax.Array  # [B] input token x_{C+t}
  token_embed: jax.Array  # [B, D] its input embedding (fp32)
  hidden: jax.Array  # [B, K, D] final-norm hidden of the previous position
  entropy: jax.Array  # [B, K] EMC signal from the previous step's logits (0 if unused)
  drift: jax.Array  # [B, K] DAC signal for this step (0 if unused)


class Episode(NamedTuple):
  """What `run_controlled` returns, for B blocks x K schedules x T steps."""

  nll: jax.Array  # [B, K, T] -log p(next token) under the executed actions
  actions: jax.Array  # [B, K, T] executed actions (dense where forced)
  effective: jax.Array  # [T] bool: may step t compress?
  records: Any = ()  # the provider's `record` pytree, leaves [B, K, T, ...]; () without one
  kl: Optional[jax.Array] = None  # [B, K, T] KL(dense || controlled); None without reference


@dataclasses.dataclass(frozen=True)
class StaticSchedule:
  """Precomputed action indices: inputs = actions [B, K, T]."""

  needs_entropy = False
  needs_drift = False

  def init(self, inputs, batch, schedules, horizon):
    return ()

  def act(self, inputs, state, ctx):
    return jnp.take(inputs, ctx.t, axis=2).astype(jnp.int32), state

  def observe(self, inputs, state, ctx, executed):
    return state


@functools.partial(
  jax.jit,
  static_argnames=("cfg", "space", "settings", "provider", "context_len", "horizon", "schedules"),
)
def run_controlled(
  params,
  blocks,
  inputs,
  *,
  cfg: ModelConfig,
  space: ActionSpace,
  settings: ControlSettings,
  provider: Any,
  context_len: int,
  horizon: int,
  schedules: int,
  reference_logits=None,
) -> Episode:
  """[B, C+T+1] blocks -> the `Episode` of K schedules per block."""
  return controlled_episode(
    params,
    blocks,
    inputs,
    cfg=cfg,
    space=space,
    settings=settings,
    provider=provider,
    context_len=context_len,
    horizon=horizon,
    schedules=schedules,
    reference_logits=reference_logits,
  )


def controlled_episode(
  params,
  blocks,
  inputs,
  *,
  cfg: ModelConfig,
  space: ActionSpace,
  settings: ControlSettings,
  provider: Any,
  context_len: int,
  horizon: int,
  schedules: int,
  reference_logits=None,
) -> Episode:
  """Un-jitted body of `run_controlled`, for use inside a larger jitted step."""
  c, k = context_len, schedules
  b = blocks.shape[0]
  logits0, h0, prefix, aux = decode.dense_prefill(
    params, cfg, blocks[:, :c], settings.criteria, settings.page_size
  )
  emb = lambda tok: llama.embed_tokens(params, tok)
  zeros = jnp.zeros((b, k), jnp.float32)
  entropy0 = (
    jnp.broadcast_to(entropy_signal(logits0)[:, None], (b, k)) if provider.needs_entropy else zeros
  )
  drift0 = (
    jnp.broadcast_to(drift_signal(emb(blocks[:, c - 1]), emb(blocks[:, c]))[:, None], (b, k))
    if provider.needs_drift
    else zeros
  )
  hidden0 = jnp.broadcast_to(h0[:, None].astype(jnp.float32), (b, k, h0.shape[-1]))
  carry = (
    decode.new_suffix(cfg, b, k, horizon),
    provider.init(inputs, b, k, horizon),
    hidden0,
    hidden0,
    entropy0,
    drift0,
  )

  record_fn = getattr(provider, "record", None)

  def step(carry, xs):
    t, ref_logits = xs
    suffix, state, hidden, hidden_prev, entropy, drift = carry
    tokens = jax.lax.dynamic_index_in_dim(blocks, c + t, 1, keepdims=False)
    labels = jax.lax.dynamic_index_in_dim(blocks, c + t + 1, 1, keepdims=False)
    if provider.needs_drift:
      drift = jnp.where(t == 0, drift, drift_signal(hidden, hidden_prev))
    effective = is_effective(c + t + 1, settings.sink_tokens, settings.window_tokens)
    ctx = StepContext(t, effective, tokens, emb(tokens), hidden, entropy, drift)
    chosen, state = provider.act(inputs, state, ctx)
    record = record_fn(inputs, state, ctx, chosen) if record_fn else ()
    executed = force_dense(chosen, effective, space)
    controls = settings.for_actions(space, executed)
    logits, new_hidden, suffix = decode.schedule_step(
      params, cfg, tokens, prefix, aux, suffix, controls
    )
    nll = -decode.token_logprob(logits, labels[:, None])
    kl = () if ref_logits is None else kl_divergence(ref_logits[:, None], logits)
    if provider.needs_entropy:
      entropy = entropy_signal(logits)
    new_hidden = new_hidden.astype(jnp.float32)
    state = provider.observe(inputs, state, ctx._replace(hidden=new_hidden), executed)
    return (suffix, state, new_hidden, hidden, entropy, drift), (
      nll,
      executed,
      effective,
      kl,
      record,
    )

  ref = None if reference_logits is None else jnp.moveaxis(reference_logits, 1, 0)
  _, (nll, actions, effective, kl, records) = jax.lax.scan(step, carry, (jnp.arange(horizon), ref))
  steps_last = lambda x: jnp.moveaxis(x, 0, 2)  # [T, B, K, ...] -> [B, K, T, ...]
  return Episode(
    nll=steps_last(nll),
    actions=steps_last(actions),
    effective=effective,
    records=jax.tree.map(steps_last, records),
    kl=None if reference_logits is None else steps_last(kl),
  )


def kl_divergence(p_logits, q_logits):
  """KL(p || q) over the vocabulary in fp32."""
  logp = jax.nn.log_softmax(p_logits.astype(jnp.float32), axis=-1)
  logq = jax.nn.log_softmax(q_logits.astype(jnp.float32), axis=-1)
  return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)
