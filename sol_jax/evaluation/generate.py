"""Free-running generation with a compute provider in the loop (method §12.7).

`generate` continues each prompt token by token. A *provider* (the harness
protocol: the policy, a static schedule such as Fixed or a constant action, or
None for the uncontrolled dense model) picks every token's action from the
current hidden state, exactly as in `harness.controlled_episode`; the step runs
under that action, and the next token is the argmax (greedy) or a sample
(temperature, optional top-k / top-p) of its logits, fed back as the next input.

Windows and the dense-replay refresh (method §12.6). A policy episode lasts the
config's horizon T. Generation runs in windows of T controlled steps; before
each window the whole text so far (prompt + generated tokens) is prefilled
densely again, so the compressed KV entries of the previous window are replaced
by dense ones, and a fresh provider episode starts (t = 0, fresh policy cache
and budget trackers). Window w: the context is x_0 .. x_{L-1}; x_0 .. x_{L-2}
are the prefix and x_{L-1} is the first controlled input, so *every* generated
token comes out of a controlled step. With L - 1 = C this is the harness's
block layout: a T-step generation teacher-forced through `run_controlled` on
[prompt, generated] scores the same log-probabilities.

Prefix lengths. The decode step's prefix cache has a static length, the
attention has no mask for a padded prefix, and Quest pages are aligned at cache
position 0, so a prefix must be a multiple of the page size. The context before
the first controlled input (M = L - 1 tokens) is therefore split into a densely
prefilled prefix of C0 = floor(M / G) * G tokens (G = `prefix_bucket`, a multiple
of the Quest page size) and r = M - C0 < G tokens decoded densely one by one into
the suffix ("warm-up", controls=None) before the T controlled steps. The suffix
has G - 1 + T slots whatever r is. Each distinct C0 compiles the prefill and
the window once (the refresh grows the context by T tokens per window, so a
generation of N tokens compiles about (P + N) / max(G, T) windows); a larger G
trades fewer compilations for more warm-up steps (on average (G - 1) / 2 per
window). Within a compiled window nothing recompiles.

Rows. K samples per prompt (`samples`) are independent continuations. In the
first window they share the prompt's prefix cache (one prefill, [1, K] rows,
per-row tokens through `decode.schedule_step`); after a refresh each row has
its own context, so the prefill has K rows ([K, 1] layout). The provider always
sees the rows flattened as [K, 1] (batch K, one schedule each): its `inputs`
are laid out that way (e.g. policy targets [K, 1, 3], a static schedule
[K, 1, T]). Prompts are generated one after another.

What is returned per prompt (`Generation`): per sample (`Continuation`) the
token ids, the text, each token's executed action (-1 for the uncontrolled
dense model) with its κ, ρ and bits, whether the step was effective, the
log-probability of the chosen token under the distribution it was decoded with
(the controlled model, before temperature / top-k / top-p), and the realized
budgets pooled over its effective steps as `budget.realized_averages` pools
them; `Generation.budgets` pools every sample of the prompt.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from sol_jax.efficiency import budget, decode
from sol_jax.efficiency.actions import ActionSpace, force_dense, is_effective
from sol_jax.efficiency.controls import ControlSettings, prefix_aux
from sol_jax.evaluation.harness import StepContext
from sol_jax.evaluation.heuristics import drift_signal, entropy_signal
from sol_jax.models import llama
from sol_jax.models.cache import PrefixCache
from sol_jax.models.config import ModelConfig

STOP_REASONS = ("length", "eos", "stop")


@dataclasses.dataclass(frozen=True)
class Sampling:
  """How the next token is chosen: temperature 0 is greedy (argmax)."""

  temperature: float = 0.0
  top_k: int = 0  # > 0: sample among the k most likely tokens only
  top_p: float = 1.0  # < 1: sample from the smallest set with probability >= top_p

  def __post_init__(self):
    if self.temperature < 0 or self.top_k < 0 or not 0.0 < self.top_p <= 1.0:
      raise ValueError(
        f"sampling needs temperature >= 0, top_k >= 0 and top_p in (0, 1]; got {self}"
      )

  @property
  def greedy(self) -> bool:
    return self.temperature == 0.0


@dataclasses.dataclass(frozen=True)
class ConstantProvider:
  """Every row runs one action (flat index) at every step (dense where forced)."""

  action: int
  needs_entropy = False
  needs_drift = False

  def init(self, inputs, batch, schedules, horizon):
    return ()

  def act(self, inputs, state, ctx):
    return jnp.full(ctx.hidden.shape[:2], self.action, jnp.int32), state

  def observe(self, inputs, state, ctx, executed):
    return state


@dataclasses.dataclass
class Continuation:
  """One generated continuation; per-token arrays have the same length as `tokens`."""

  tokens: np.ndarray  # [n] int32 generated ids (an EOS or the stop string's token included)
  text: str  # the decoded continuation, cut before a stop string (EOS not shown)
  logprobs: np.ndarray  # [n] log p(token) under the (controlled) model that chose it
  actions: np.ndarray  # [n] executed flat action index; -1 for the uncontrolled model
  kappa: np.ndarray  # [n] executed κ
  rho: np.ndarray  # [n] executed ρ (raw)
  bits: np.ndarray  # [n] executed MLP-output bits
  effective: np.ndarray  # [n] bool: did the step count in the budgets (method §4.6)?
  stop_reason: str  # "length" | "eos" | "stop"

  @property
  def usage(self) -> budget.Usage:
    e = self.effective.astype(np.float64)
    return budget.Usage(
      float(np.sum(e * self.kappa)),
      float(np.sum(e * self.rho)),
      float(np.sum(e * self.bits / 16.0)),
      float(np.sum(e)),
    )

  @property
  def budgets(self) -> dict[str, float]:
    return _budgets(self.usage)


@dataclasses.dataclass
class Generation:
  prompt: str
  prompt_tokens: np.ndarray  # [P] int32
  samples: list[Continuation]

  @property
  def budgets(self) -> dict[str, float]:
    """Realized budgets pooled over every effective step of every sample."""
    return pooled_budgets(self.samples)


def pooled_budgets(continuations: Sequence["Continuation"]) -> dict[str, float]:
  """Realized budgets pooled over every effective step of the continuations."""
  usage = budget.Usage(0.0, 0.0, 0.0, 0.0)
  for c in continuations:
    usage = usage.merge(c.usage)
  return _budgets(usage)


def _budgets(usage: budget.Usage) -> dict[str, float]:
  out = {k: float(v) for k, v in budget.realized_averages(usage).items()}
  out["net_keep"] = float(
    budget.net_keep(out["avg_keep_effective"], out["avg_prune_keep"], out["avg_quant_ratio"])
  )
  out["effective_steps"] = float(usage.count)
  return out


class WindowOut(NamedTuple):
  tokens: jax.Array  # [T, Bp, Kp] chosen next tokens
  logprobs: jax.Array  # [T, Bp, Kp]
  actions: jax.Array  # [T, Bp, Kp] executed (-1 without a provider)
  effective: jax.Array  # [T]
  greedy: jax.Array  # [T, Bp, Kp] bool: the token is the argmax of its logits


def choose_tokens(logits: jax.Array, key: jax.Array, sampling: Sampling) -> jax.Array:
  """Next tokens from logits [..., V] (fp32): argmax, or a tempered top-k / top-p sample."""
  if sampling.greedy:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  z = logits.astype(jnp.float32) / jnp.float32(sampling.temperature)
  if 0 < sampling.top_k < z.shape[-1]:
    kth = jax.lax.top_k(z, sampling.top_k)[0][..., -1:]
    z = jnp.where(z < kth, -jnp.inf, z)
  if sampling.top_p < 1.0:
    desc = -jnp.sort(-z, axis=-1)
    probs = jax.nn.softmax(desc, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # probability of the strictly likelier tokens
    keep = before < sampling.top_p  # the first token is always kept
    cutoff = jnp.min(jnp.where(keep, desc, jnp.inf), axis=-1, keepdims=True)
    z = jnp.where(z < cutoff, -jnp.inf, z)
  return jax.random.categorical(key, z, axis=-1).astype(jnp.int32)


def _prefill(params, cfg: ModelConfig, tokens, settings: ControlSettings):
  """Dense prefill of [B, C0] tokens; an empty prefix (C0 = 0) gets zero state."""
  b, c0 = tokens.shape
  if c0 == 0:
    shape = (cfg.num_layers, b, cfg.num_kv_heads, 0, cfg.head_dim)
    prefix = PrefixCache(
      k=jnp.zeros(shape, cfg.compute_dtype), v=jnp.zeros(shape, cfg.compute_dtype)
    )
    logits = jnp.zeros((b, cfg.vocab_size), jnp.float32)
    hidden = jnp.zeros((b, cfg.hidden_size), jnp.float32)
    return logits, hidden, prefix, prefix_aux(prefix, settings.criteria, settings.page_size)
  return decode.dense_prefill(params, cfg, tokens, settings.criteria, settings.page_size)


@functools.partial(
  jax.jit,
  static_argnames=("cfg", "space", "settings", "provider", "horizon", "capacity", "sampling"),
)
def generate_window(
  params,
  prefix_tokens,
  warm_tokens,
  n_warm,
  first_tokens,
  prev_tokens,
  inputs,
  key,
  *,
  cfg: ModelConfig,
  space: ActionSpace,
  settings: ControlSettings,
  provider: Any,
  horizon: int,
  capacity: int,
  sampling: Sampling,
  forced=None,
) -> WindowOut:
  """One refresh window: dense prefill, dense warm-up, `horizon` controlled generated steps.

  prefix_tokens [Bp, C0]; warm_tokens [W, Bp, Kp] of which the first `n_warm`
  are decoded densely; first_tokens [Bp, Kp] the first controlled input (x_{L-1});
  prev_tokens [Bp, Kp] the token before it (DAC's t = 0 signal). The provider
  sees the Bp*Kp rows as [Bp*Kp, 1]. forced [horizon, Bp, Kp] (optional): teacher
  forcing; step t outputs forced[t] (fed back as the next input) instead of a choice
  from the logits, and `logprobs` are those of the forced tokens (multiple-choice
  scoring).
  """
  bp, kp = first_tokens.shape
  rows = bp * kp
  c0 = prefix_tokens.shape[1]
  logits0, h0, prefix, aux = _prefill(params, cfg, prefix_tokens, settings)
  emb = lambda tok: llama.embed_tokens(params, tok)
  suffix = decode.new_suffix(cfg, bp, kp, capacity)
  hidden = jnp.broadcast_to(h0[:, None].astype(jnp.float32), (bp, kp, h0.shape[-1]))
  logits = jnp.broadcast_to(logits0[:, None].astype(jnp.float32), (bp, kp, logits0.shape[-1]))

  def warm(i, carry):
    suffix, _, _ = carry
    tok = jax.lax.dynamic_index_in_dim(warm_tokens, i, 0, keepdims=False)
    lg, h, suffix = decode.dense_schedule_step(params, cfg, tok, prefix, suffix)
    return suffix, h.astype(jnp.float32), lg.astype(jnp.float32)

  suffix, hidden, logits = jax.lax.fori_loop(0, n_warm, warm, (suffix, hidden, logits))

  as_rows = lambda x: x.reshape((rows, 1) + x.shape[2:])  # [Bp, Kp, ...] -> [Bp*Kp, 1, ...]
  needs_entropy = provider is not None and provider.needs_entropy
  needs_drift = provider is not None and provider.needs_drift
  zeros = jnp.zeros((bp, kp), jnp.float32)
  entropy = entropy_signal(logits) if needs_entropy else zeros
  drift = drift_signal(emb(prev_tokens), emb(first_tokens)) if needs_drift else zeros
  state = () if provider is None else provider.init(inputs, rows, 1, horizon)

  def step(carry, t):
    suffix, state, hidden, hidden_prev, entropy, drift, tokens = carry
    if needs_drift:
      drift = jnp.where(t == 0, drift, drift_signal(hidden, hidden_prev))
    effective = is_effective(c0 + suffix.length + 1, settings.sink_tokens, settings.window_tokens)
    if provider is None:
      executed = jnp.full((bp, kp), -1, jnp.int32)
      logits, new_hidden, suffix = decode.dense_schedule_step(params, cfg, tokens, prefix, suffix)
    else:
      flat = tokens.reshape(rows)
      ctx = StepContext(
        t, effective, flat, emb(flat), as_rows(hidden), as_rows(entropy), as_rows(drift)
      )
      chosen, state = provider.act(inputs, state, ctx)
      executed = force_dense(chosen, effective, space).reshape(bp, kp)
      controls = settings.for_actions(space, executed)
      logits, new_hidden, suffix = decode.schedule_step(
        params, cfg, tokens, prefix, aux, suffix, controls
      )
    logits = logits.astype(jnp.float32)
    new_hidden = new_hidden.astype(jnp.float32)
    if provider is not None:
      ctx = ctx._replace(hidden=as_rows(new_hidden))
      state = provider.observe(inputs, state, ctx, executed.reshape(rows, 1))
    if needs_entropy:
      entropy = entropy_signal(logits)
    if forced is None:
      nxt = choose_tokens(logits, jax.random.fold_in(key, t), sampling)
    else:
      nxt = jax.lax.dynamic_index_in_dim(forced, t, 0, keepdims=False)
    logp = decode.token_logprob(logits, nxt)
    greedy = nxt == jnp.argmax(logits, axis=-1)
    carry = (suffix, state, new_hidden, hidden, entropy, drift, nxt)
    return carry, (nxt, logp, executed, effective, greedy)

  carry = (suffix, state, hidden, hidden, entropy, drift, first_tokens)
  _, outs = jax.lax.scan(step, carry, jnp.arange(horizon))
  return WindowOut(*outs)


InputsFn = Callable[[int, int, int, np.ndarray], Any]


def generate(
  params,
  cfg: ModelConfig,
  tokenizer,
  prompts: Union[str, Sequence[Union[str, np.ndarray]]],
  *,
  space: ActionSpace,
  settings: ControlSettings,
  horizon: int,
  max_new_tokens: int,
  provider: Any = None,
  inputs: Union[Any, InputsFn] = None,
  sampling: Sampling = Sampling(),
  samples: int = 1,
  stop: Sequence[str] = (),
  stop_at_eos: bool = True,
  seed: int = 0,
  prefix_bucket: Optional[int] = None,
) -> list[Generation]:
  """Continues each prompt with `provider` choosing every token's action (module docstring).

  prompts: text, or token-id arrays (used as they are; `Generation.prompt` is their text).
  provider: a harness provider (e.g. `PolicyAgent(greedy=True)`, `StaticSchedule`,
    `ConstantProvider`), or None for the uncontrolled dense model.
  inputs: the provider's inputs for K = `samples` rows laid out [K, 1, ...], or a
    callable (prompt index, window index, rows, effective [T] bool) -> inputs, called
    before every window (e.g. a Fixed schedule for that window's effective steps).
  horizon: T, the controlled steps per window (the policy's episode length).
  stop: strings that end a continuation when its decoded text contains one.
  prefix_bucket: G, the prefix granularity (module docstring); None: the page size.
  tokenizer: `encode(text) -> ids` without special tokens is taken from `tokenizer(text,
    add_special_tokens=False)` when callable that way, else `tokenizer.encode(text)`;
    `tokenizer.decode(ids)` and `tokenizer.eos_token_id` (may be None).
  """
  if isinstance(prompts, str):
    prompts = [prompts]
  if horizon < 1 or max_new_tokens < 1 or samples < 1:
    raise ValueError(
      f"horizon={horizon}, max_new_tokens={max_new_tokens} and samples={samples} must be >= 1"
    )
  bucket = settings.page_size if prefix_bucket is None else prefix_bucket
  if bucket < 1 or (settings.criteria == "quest" and bucket % settings.page_size):
    raise ValueError(
      f"prefix_bucket={bucket} must be a positive multiple of the Quest page size "
      f"{settings.page_size} (pages are aligned at cache position 0)"
    )
  eos = getattr(tokenizer, "eos_token_id", None) if stop_at_eos else None
  stops = tuple(s for s in stop if s)
  key = jax.random.PRNGKey(seed)
  out = []
  for index, prompt in enumerate(prompts):
    if isinstance(prompt, str):
      ids = np.asarray(encode(tokenizer, prompt), np.int32)
    else:  # token ids (e.g. a window of a tokenized corpus): no re-tokenization
      ids = np.asarray(prompt, np.int32).reshape(-1)
      prompt = tokenizer.decode(ids.tolist())
    if ids.size == 0:
      raise ValueError(f"prompt {index} is empty after tokenization: {prompt!r}")
    rows = _generate_one(
      params,
      cfg,
      tokenizer,
      ids,
      space=space,
      settings=settings,
      provider=provider,
      inputs=(lambda w, n, e, i=index: inputs(i, w, n, e)) if callable(inputs) else inputs,
      horizon=horizon,
      max_new_tokens=max_new_tokens,
      sampling=sampling,
      samples=samples,
      stops=stops,
      eos=eos,
      key=jax.random.fold_in(key, index),
      bucket=bucket,
    )
    out.append(Generation(prompt, ids, rows))
  return out


def encode(tokenizer, text: str) -> list[int]:
  """Token ids of `text` without special tokens (no BOS, method §3)."""
  try:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
  except TypeError:
    return list(tokenizer.encode(text))


def _generate_one(
  params,
  cfg,
  tokenizer,
  ids,
  *,
  space,
  settings,
  provider,
  inputs,
  horizon,
  max_new_tokens,
  sampling,
  samples,
  stops,
  eos,
  key,
  bucket,
) -> list[Continuation]:
  n, p = samples, ids.size
  gen = np.zeros((n, 0), np.int32)
  logp = np.zeros((n, 0), np.float32)
  acts = np.zeros((n, 0), np.int32)
  eff = np.zeros((0,), bool)
  ends: list[Optional[tuple[int, str]]] = [None] * n  # (kept tokens, reason) once done
  capacity = bucket - 1 + horizon
  window = 0
  while any(e is None for e in ends):
    length = p + gen.shape[1]  # L: context length of every row
    context = np.concatenate([np.broadcast_to(ids, (n, p)), gen], axis=1)
    shared = window == 0  # every row still has the prompt alone: share its prefix
    ctx_rows = context[:1] if shared else context  # [Bp, L]
    bp, kp = (1, n) if shared else (n, 1)
    m = length - 1
    c0 = (m // bucket) * bucket
    warm = np.zeros((max(bucket - 1, 1), bp, kp), np.int32)
    warm[: m - c0] = ctx_rows[:, c0:m].T[:, :, None]
    first = np.broadcast_to(ctx_rows[:, m][:, None], (bp, kp))
    prev = np.broadcast_to(ctx_rows[:, max(m - 1, 0)][:, None], (bp, kp))
    effective = (length + np.arange(horizon)) > settings.sink_tokens + settings.window_tokens + 1
    step_inputs = inputs(window, n, effective) if callable(inputs) else inputs
    res = generate_window(
      params,
      jnp.asarray(ctx_rows[:, :c0]),
      jnp.asarray(warm),
      jnp.int32(m - c0),
      jnp.asarray(first),
      jnp.asarray(prev),
      step_inputs,
      jax.random.fold_in(key, window),
      cfg=cfg,
      space=space,
      settings=settings,
      provider=provider,
      horizon=horizon,
      capacity=capacity,
      sampling=sampling,
    )
    flat = lambda x: np.asarray(x).reshape(horizon, n).T  # [T, Bp, Kp] -> [rows, T]
    gen = np.concatenate([gen, flat(res.tokens)], axis=1)
    logp = np.concatenate([logp, flat(res.logprobs)], axis=1)
    acts = np.concatenate([acts, flat(res.actions)], axis=1)
    eff = np.concatenate([eff, np.asarray(res.effective)])
    for r in range(n):
      if ends[r] is None:
        ends[r] = _find_end(tokenizer, gen[r], max_new_tokens, eos, stops)
    window += 1
  return [
    _continuation(tokenizer, space, gen[r], logp[r], acts[r], eff, ends[r], eos, stops)
    for r in range(n)
  ]


def _find_end(tokenizer, tokens, limit, eos, stops) -> Optional[tuple[int, str]]:
  """(tokens to keep, reason) if the continuation is over, else None."""
  n = min(len(tokens), limit)
  reason = "length" if len(tokens) >= limit else None
  if eos is not None:
    hits = np.flatnonzero(tokens[:n] == eos)
    if hits.size:
      n, reason = int(hits[0]) + 1, "eos"
  shown = n - 1 if reason == "eos" else n
  if stops and _stop_at(_decode(tokenizer, tokens[:shown]), stops) is not None:
    # The fewest tokens whose text already holds a stop string.
    first = next(
      i for i in range(1, shown + 1) if _stop_at(_decode(tokenizer, tokens[:i]), stops) is not None
    )
    return first, "stop"
  return None if reason is None else (n, reason)


def _decode(tokenizer, tokens) -> str:
  return tokenizer.decode(np.asarray(tokens).tolist())


def _stop_at(text: str, stops) -> Optional[int]:
  found = [i for i in (text.find(s) for s in stops) if i >= 0]
  return min(found) if found else None


def _continuation(tokenizer, space, tokens, logp, acts, eff, end, eos, stops) -> Continuation:
  n, reason = end
  tokens, logp, acts, eff = tokens[:n], logp[:n], acts[:n], eff[:n]
  shown = tokens[:-1] if reason == "eos" else tokens
  text = _decode(tokenizer, shown)
  cut = _stop_at(text, stops) if reason == "stop" else None
  if cut is not None:
    text = text[:cut]
  dense = acts < 0
  safe = np.where(dense, 0, acts)
  kappa = np.where(dense, 1.0, np.asarray(space.kappa)[safe])
  rho = np.where(dense, 1.0, np.asarray(space.rho)[safe])
  bits = np.where(dense, 16, np.asarray(space.bits)[safe])
  return Continuation(
    tokens=tokens.astype(np.int32),
    text=text,
    logprobs=logp.astype(np.float32),
    actions=acts.astype(np.int32),
    kappa=kappa.astype(np.float32),
    rho=rho.astype(np.float32),
    bits=bits.astype(np.int32),
    effective=eff.astype(bool),
    stop_reason=reason,
  )


def policy_inputs(policy_params, targets: Sequence[float], seed: int = 0) -> InputsFn:
  """`PolicyAgent` inputs for every window: targets (κ*, ρ*, η*) for all rows, a fresh key."""
  base = jax.random.PRNGKey(seed)
  tgt = jnp.asarray(targets, jnp.float32)

  def inputs(prompt: int, window: int, rows: int, effective) -> dict:
    del effective
    return {
      "params": policy_params,
      "targets": jnp.broadcast_to(tgt, (rows, 1, 3)),
      "rng": jax.random.fold_in(jax.random.fold_in(base, prompt), window),
    }

  return inputs


def schedule_inputs(make_generator: Callable[[], Any], horizon: int) -> InputsFn:
  """`StaticSchedule` inputs from a schedule generator (e.g. `FixedAllocator`), one per prompt.

  `make_generator()` gives an object with `next_batch(rows, T, effective) -> [rows, T]`,
  asked once per window with that window's effective steps (pooled across the windows
  of one prompt, so Fixed's residual correction spans the whole continuation).
  """
  gens: dict[int, Any] = {}

  def inputs(prompt: int, window: int, rows: int, effective) -> jax.Array:
    gen = gens.setdefault(prompt, make_generator())
    return jnp.asarray(gen.next_batch(rows, horizon, np.asarray(effective)))[:, None]

  return inputs
