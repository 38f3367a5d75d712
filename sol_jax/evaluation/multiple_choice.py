"""Multiple-choice scoring with a provider choosing every continuation token's compute (§12.6).

Tokenization (as lm-evaluation-harness's `hf` model does it): trailing whitespace
of the context moves to the front of the continuation; the context is encoded
alone (M tokens, no BOS) and context + continuation jointly; the continuation's
tokens are the joint encoding after its first M tokens. The scored sequence is
the context's own tokens followed by those (`encode_pair`).

Scoring. The log-likelihood of a choice is the sum of the log-probabilities of
its n continuation tokens y_0..y_{n-1}; the steps whose outputs predict them are
controlled: inputs x_{M-1}, y_0, .., y_{n-2}, each under the action the provider
picks (None: the uncontrolled dense model), teacher-forced. The context before
x_{M-1} is prefilled as `generate.generate_window` prefills a window: a dense
prefill of floor((M-1)/G)*G tokens plus up to G-1 tokens decoded densely into the
suffix (G = `prefix_bucket`, a multiple of the Quest page size). The K choices of
an item are K rows sharing the item's prefix, each row fed its own tokens.

Windows and the dense-replay refresh (§12.6), for every provider alike. A policy
episode is T (`horizon`) steps: a continuation of n <= T tokens is one window of
n controlled steps (t = 0..n-1 of the episode; no refresh is needed). A longer
one is scored in windows of T steps; before window w the row's context plus its
first w*T continuation tokens are prefilled densely again (the compressed KV of
the previous window is replaced) and a fresh episode starts, so from window 1 on
each choice has its own prefix.

The uncontrolled dense model (provider None) needs no windows: every choice is
one causal forward over context + continuation (right-padded rows, grouped by
length), and only the continuation's positions are projected onto the vocabulary.
It is the same model as the windowed dense decode (`dense_forward=False`, kept
for tests) within float rounding, at about T times fewer passes.

Batching. One call runs B items x K choices that have the same context length M
and choice count K (the decode step's prefix is static and has no padding mask,
and the dense warm-up count is shared by a call's rows). B is padded up to a
power of two (at most `batch_size`) and the steps to the next power of two (at
most T) with masked rows and steps, which bounds the number of compilations.
Padded steps and rows are invisible to the provider's budget: they are marked
non-effective in the mask handed to an inputs function (e.g. Fixed's allocator),
and they are left out of every sum and realized budget.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from sol_jax.data.mc_tasks import MCItem
from sol_jax.efficiency import decode
from sol_jax.efficiency.actions import ActionSpace
from sol_jax.efficiency.controls import ControlSettings
from sol_jax.evaluation import generate as gen
from sol_jax.models import llama
from sol_jax.models.config import ModelConfig

# (call index, window, rows, mask [rows, steps] bool: scored and effective) -> inputs
MCInputsFn = Callable[[int, int, int, np.ndarray], Any]


@dataclasses.dataclass(frozen=True)
class Request:
  """One item's token ids: the context and each choice's continuation."""

  context: np.ndarray  # [M] int32
  continuations: tuple[np.ndarray, ...]  # K x [n_k] int32, n_k >= 1


@dataclasses.dataclass
class ItemScores:
  """Per choice: the log-likelihood and every continuation token's executed action."""

  loglik: np.ndarray  # [K] float64: sum of the continuation's token log-probs
  logprobs: list[np.ndarray]  # K x [n_k] float32
  actions: list[np.ndarray]  # K x [n_k] int32; -1 for the uncontrolled dense model
  effective: list[np.ndarray]  # K x [n_k] bool: may the step compress (method §4.6)?
  # K x [n_k] bool: the token is the argmax of its logits (lm-eval's is_greedy)
  greedy: list[np.ndarray] = dataclasses.field(default_factory=list)


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
  """(context ids, continuation ids), split from the joint encoding (module docstring)."""
  spaces = len(context) - len(context.rstrip())
  if spaces:
    context, continuation = context[:-spaces], context[-spaces:] + continuation
  ctx = gen.encode(tokenizer, context)
  whole = gen.encode(tokenizer, context + continuation)
  return ctx, whole[len(ctx) :]


def encode_item(tokenizer, item: MCItem) -> Request:
  pairs = [
    encode_pair(tokenizer, item.context, item.continuation(k)) for k in range(len(item.choices))
  ]
  ctx = pairs[0][0]
  if not ctx:
    raise ValueError(f"item context {item.context!r} is empty after tokenization")
  for k, (_, cont) in enumerate(pairs):
    if not cont:
      raise ValueError(f"choice {k} of item {item.context[:60]!r} has no tokens")
  as_ids = lambda x: np.asarray(x, np.int32)
  return Request(as_ids(ctx), tuple(as_ids(c) for _, c in pairs))


def _pow2(n: int, cap: int) -> int:
  return min(cap, 1 << max(n - 1, 0).bit_length())


def _chunks(seq: Sequence, size: int):
  return [seq[i : i + size] for i in range(0, len(seq), size)]


@dataclasses.dataclass(frozen=True)
class _Scorer:
  params: Any
  cfg: ModelConfig
  space: ActionSpace
  settings: ControlSettings
  horizon: int
  provider: Any
  inputs: Union[Any, MCInputsFn]
  bucket: int
  batch_size: int

  def window(self, rows: list[list[np.ndarray]], m: int, call: int, window: int, real: int):
    """One call: rows [Bp][Kp] full sequences sharing their first m + 1 tokens per b.

    Returns per real (b, k) the log-probs, actions and effective flags of the
    tokens after position m (at most `horizon` of them).
    """
    rows = rows + [rows[-1]] * (_pow2(len(rows), self.batch_size) - len(rows))
    bp, kp = len(rows), len(rows[0])
    tails = [[s[m + 1 : m + 1 + self.horizon] for s in row] for row in rows]
    steps = _pow2(max(len(t) for row in tails[:real] for t in row), self.horizon)
    ctx = np.stack([row[0][: m + 1] for row in rows])  # [Bp, m + 1]
    c0 = (m // self.bucket) * self.bucket
    warm = np.zeros((max(self.bucket - 1, 1), bp, kp), np.int32)
    warm[: m - c0] = ctx[:, c0:m].T[:, :, None]
    forced = np.zeros((steps, bp, kp), np.int32)
    scored = np.zeros((bp, kp, steps), bool)
    for b in range(real):
      for k, tail in enumerate(tails[b]):
        forced[: len(tail), b, k] = tail
        scored[b, k, : len(tail)] = True
    st = self.settings
    effective = (m + 1 + np.arange(steps)) > st.sink_tokens + st.window_tokens + 1
    mask = scored.reshape(bp * kp, steps) & effective
    inputs = self.inputs(call, window, bp * kp, mask) if callable(self.inputs) else self.inputs
    first = np.broadcast_to(ctx[:, m][:, None], (bp, kp))
    prev = np.broadcast_to(ctx[:, max(m - 1, 0)][:, None], (bp, kp))
    out = gen.generate_window(
      self.params,
      jnp.asarray(ctx[:, :c0]),
      jnp.asarray(warm),
      jnp.int32(m - c0),
      jnp.asarray(first),
      jnp.asarray(prev),
      inputs,
      jax.random.PRNGKey(0),  # unused: every token is forced
      cfg=self.cfg,
      space=self.space,
      settings=st,
      provider=self.provider,
      horizon=steps,
      capacity=self.bucket - 1 + steps,
      sampling=gen.Sampling(),
      forced=jnp.asarray(forced),
    )
    logp, acts = np.asarray(out.logprobs), np.asarray(out.actions)
    eff, greedy = np.asarray(out.effective), np.asarray(out.greedy)
    n = lambda t: len(t)
    return [
      [
        (logp[: n(t), b, k], acts[: n(t), b, k], eff[: n(t)], greedy[: n(t), b, k])
        for k, t in enumerate(tails[b])
      ]
      for b in range(real)
    ]


def _length_bucket(n: int) -> int:
  """n rounded up to at most four sizes per octave (<= 25 % padding), >= 16."""
  if n <= 16:
    return 16
  step = 1 << max((n - 1).bit_length() - 3, 0)
  return -(-n // step) * step


@functools.partial(jax.jit, static_argnames=("cfg",))
def _dense_scores(params, cfg: ModelConfig, tokens, positions, targets):
  """tokens [R, S] -> (log p(targets), targets == argmax) at positions [R, P]."""
  _, hidden, _ = llama.prefill(params, cfg, tokens, logits="none")
  picked = jnp.take_along_axis(hidden, positions[..., None], axis=1)
  logits = llama.lm_head(params, cfg, picked).astype(jnp.float32)
  return decode.token_logprob(logits, targets), targets == jnp.argmax(logits, axis=-1)


def _dense_forward(params, cfg, settings, requests, rows_per_call, progress, desc):
  """Per (item, choice): (log-probs, actions -1, effective, greedy) from one causal forward."""
  seqs = [
    (i, k, np.concatenate([r.context, c]))
    for i, r in enumerate(requests)
    for k, c in enumerate(r.continuations)
  ]
  seqs.sort(key=lambda x: len(x[2]))
  out: dict[tuple[int, int], tuple] = {}
  bar = tqdm(total=len(seqs), desc=desc, disable=not progress)
  for chunk in _chunks(seqs, rows_per_call):
    # rows: a power of two up to 8, then multiples of 8 (few shapes, little padding)
    r = _pow2(len(chunk), rows_per_call) if len(chunk) <= 8 else -(-len(chunk) // 8) * 8
    s = _length_bucket(max(len(x[2]) for x in chunk) - 1)
    p = _pow2(max(len(requests[i].continuations[k]) for i, k, _ in chunk), 1 << 30)
    tokens = np.zeros((r, s), np.int32)
    positions = np.zeros((r, p), np.int32)
    targets = np.zeros((r, p), np.int32)
    for row, (i, k, seq) in enumerate(chunk):
      n = len(requests[i].continuations[k])
      tokens[row, : len(seq) - 1] = seq[:-1]
      positions[row, :n] = np.arange(len(seq) - 1 - n, len(seq) - 1)
      targets[row, :n] = seq[-n:]
    logp, greedy = (
      np.asarray(x)
      for x in _dense_scores(
        params, cfg, jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(targets)
      )
    )
    for row, (i, k, seq) in enumerate(chunk):
      n = len(requests[i].continuations[k])
      # The same flags the window path reports: step j's input sits at len(context) - 1 + j.
      eff = (
        len(requests[i].context) + np.arange(n)
      ) > settings.sink_tokens + settings.window_tokens + 1
      out[i, k] = (logp[row, :n], np.full(n, -1, np.int32), eff, greedy[row, :n])
    bar.update(len(chunk))
  bar.close()
  return [
    _item_scores([[out[i, k]] for k in range(len(req.continuations))])
    for i, req in enumerate(requests)
  ]


def score_requests(
  params,
  cfg: ModelConfig,
  requests: Sequence[Request],
  *,
  space: ActionSpace,
  settings: ControlSettings,
  horizon: int,
  provider: Any = None,
  inputs: Union[Any, MCInputsFn] = None,
  batch_size: int = 8,
  prefix_bucket: Optional[int] = None,
  progress: bool = True,
  desc: str = "multiple choice",
  dense_forward: bool = True,
) -> list[ItemScores]:
  """Scores every choice of every request with `provider` in the loop (module docstring).

  provider: a harness provider (`PolicyAgent`, `StaticSchedule`, `generate.ConstantProvider`)
    or None for the uncontrolled dense model; it sees a call's rows as [rows, 1].
  inputs: the provider's inputs, or a `MCInputsFn` called before every call.
  dense_forward: without a provider, score by one causal forward per sequence
    (`batch_size` items' choices per call) instead of the windowed dense decode.
  """
  bucket = settings.page_size if prefix_bucket is None else prefix_bucket
  if horizon < 1 or batch_size < 1 or bucket < 1:
    raise ValueError(
      f"horizon={horizon}, batch_size={batch_size}, prefix_bucket={bucket} must be >= 1"
    )
  if settings.criteria == "quest" and bucket % settings.page_size:
    raise ValueError(
      f"prefix_bucket={bucket} must be a multiple of the Quest page size {settings.page_size}"
    )
  if provider is None and dense_forward:
    most = max((len(r.continuations) for r in requests), default=1)
    return _dense_forward(params, cfg, settings, requests, batch_size * most, progress, desc)
  scorer = _Scorer(params, cfg, space, settings, horizon, provider, inputs, bucket, batch_size)
  seqs = [[np.concatenate([r.context, c]) for c in r.continuations] for r in requests]
  parts: list[list[list]] = [[[] for _ in r.continuations] for r in requests]
  groups: dict[tuple[int, int], list[int]] = {}
  for i, r in enumerate(requests):
    groups.setdefault((len(r.context), len(r.continuations)), []).append(i)
  call = 0
  bar = tqdm(total=len(requests), desc=desc, disable=not progress)
  for (m_ctx, _), members in sorted(groups.items()):  # window 0: choices share the prefix
    for chunk in _chunks(members, batch_size):
      res = scorer.window([seqs[i] for i in chunk], m_ctx - 1, call, 0, len(chunk))
      call += 1
      for i, per_choice in zip(chunk, res):
        for k, piece in enumerate(per_choice):
          parts[i][k].append(piece)
      bar.update(len(chunk))
  bar.close()
  window = 1
  while True:  # later windows: dense replay of context + scored tokens, one prefix per choice
    m_of = lambda i: len(requests[i].context) - 1 + window * horizon
    rest = [(i, k) for i, row in enumerate(seqs) for k, s in enumerate(row) if len(s) > m_of(i) + 1]
    if not rest:
      break
    by_m: dict[int, list[tuple[int, int]]] = {}
    for i, k in rest:
      by_m.setdefault(m_of(i), []).append((i, k))
    for m, members in sorted(by_m.items()):
      for chunk in _chunks(members, batch_size):
        res = scorer.window([[seqs[i][k]] for i, k in chunk], m, call, window, len(chunk))
        call += 1
        for (i, k), (piece,) in zip(chunk, res):
          parts[i][k].append(piece)
    window += 1
  return [_item_scores(p) for p in parts]


def _item_scores(parts) -> ItemScores:
  cat = lambda k, j: np.concatenate([p[j] for p in parts[k]])
  logprobs = [cat(k, 0).astype(np.float32) for k in range(len(parts))]
  return ItemScores(
    loglik=np.asarray([np.sum(lp, dtype=np.float64) for lp in logprobs]),
    logprobs=logprobs,
    actions=[cat(k, 1).astype(np.int32) for k in range(len(parts))],
    effective=[cat(k, 2).astype(bool) for k in range(len(parts))],
    greedy=[cat(k, 3).astype(bool) for k in range(len(parts))],
  )


def fixed_inputs(allocator) -> MCInputsFn:
  """`StaticSchedule` inputs from one allocator (e.g. `FixedAllocator`) for a whole evaluation.

  Every call asks it for [rows, steps] actions on the call's mask (scored, effective
  slots only), so its pooled averages track its targets over exactly the scored tokens.
  """

  def inputs(call: int, window: int, rows: int, mask: np.ndarray) -> jax.Array:
    return jnp.asarray(allocator.next_batch(rows, mask.shape[1], mask))[:, None]

  return inputs


def policy_inputs(policy_params, targets: Sequence[float], seed: int = 0) -> MCInputsFn:
  """`PolicyAgent` inputs: the targets for every row and a fresh key per call and window."""
  per_call = gen.policy_inputs(policy_params, targets, seed)
  return lambda call, window, rows, mask: per_call(call, window, rows, None)
