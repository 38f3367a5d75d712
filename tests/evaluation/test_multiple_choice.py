"""Multiple-choice scoring on the tiny Llama (method §12.6).

Dense scoring equals a full forward pass over context + continuation (items of
several context lengths batched together, choices longer than T across the
dense-replay refresh); a constant compressed action and the policy equal the
harness teacher-forced on the same tokens, window by window; Fixed matched to
targets realizes them on exactly the scored tokens; acc / acc_norm and the
paired interval; lm-eval's context/continuation split on the SmolLM2 tokenizer.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sol_jax.data.mc_tasks import MCItem
from sol_jax.evaluation import generate as gen
from sol_jax.evaluation import mc_report
from sol_jax.evaluation import multiple_choice as mc
from sol_jax.evaluation.fixed import FixedAllocator
from sol_jax.evaluation.harness import StaticSchedule, run_controlled
from sol_jax.models import llama
from sol_jax.policy import PolicyAgent, network
from tests.evaluation.test_generate import SPACE, ST, TOK
from tests.tiny_models import TINY_LLAMA as CFG

T = 4
ITEMS = [
  MCItem("The cat sat on", ("the mat", "a dog", "x"), 0),  # M = 14: prefix 12 + 1 warm-up
  MCItem("The dog sat on", ("a log", "the big red mat"), 1),  # same M: batched with the first
  MCItem("Hi", ("there", "you"), 0),  # M = 2: empty dense prefix
  MCItem("Where is it? ", ("here", "there or elsewhere"), 1),  # trailing space moves over
]


@functools.partial(jax.jit, static_argnums=1)
def _all_logits(params, cfg, ids):
  return llama.prefill(params, cfg, ids, logits="all")[0][0]


def reference_loglik(params, request: mc.Request) -> np.ndarray:
  """Per choice: one full forward of context + continuation, its tokens' log-probs summed."""
  out = []
  for cont in request.continuations:
    ids = np.concatenate([request.context, cont])
    logits = np.asarray(_all_logits(params, CFG, jnp.asarray(ids[None])), np.float64)
    logp = (
      logits
      - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1))[:, None]
      - logits.max(-1, keepdims=True)
    )
    m = len(request.context)
    out.append(sum(logp[m - 1 + j, ids[m + j]] for j in range(len(cont))))
  return np.asarray(out)


def score(params, requests, **kw):
  kw = dict(space=SPACE, settings=ST, horizon=T, batch_size=2, progress=False) | kw
  return mc.score_requests(params, CFG, requests, **kw)


def test_encode_item_moves_trailing_space():
  req = mc.encode_item(TOK, ITEMS[3])
  assert TOK.decode(req.context.tolist()) == "Where is it?"
  assert TOK.decode(req.continuations[0].tolist()) == "  here"


def reference_greedy(params, request: mc.Request) -> list[np.ndarray]:
  """Per choice: is each continuation token the argmax of the full forward's logits?"""
  out = []
  for cont in request.continuations:
    ids = np.concatenate([request.context, cont])
    logits = np.asarray(_all_logits(params, CFG, jnp.asarray(ids[None])))
    m = len(request.context)
    out.append(np.asarray([np.argmax(logits[m - 1 + j]) == ids[m + j] for j in range(len(cont))]))
  return out


@pytest.mark.integration
def test_dense_equals_full_forward(tiny_llama):
  _, params = tiny_llama
  requests = [mc.encode_item(TOK, it) for it in ITEMS]
  runs = {
    "dense forward": dict(provider=None),
    "dense windows": dict(provider=None, dense_forward=False),
    "dense action": dict(provider=gen.ConstantProvider(SPACE.dense_index)),
  }
  results = {}
  for name, kw in runs.items():
    scores = results[name] = score(params, requests, **kw)
    for req, s in zip(requests, scores):
      np.testing.assert_allclose(
        s.loglik, reference_loglik(params, req), atol=1e-4, rtol=0, err_msg=name
      )
      assert [len(a) for a in s.actions] == [len(c) for c in req.continuations]
      for got, want in zip(s.greedy, reference_greedy(params, req)):
        np.testing.assert_array_equal(got, want, err_msg=name)
      if kw["provider"] is None:
        assert all(np.all(a == -1) for a in s.actions)
  assert sum(g.sum() for s in results["dense forward"] for g in s.greedy) > 0  # not all False
  for a, b in zip(results["dense forward"], results["dense windows"]):
    for ea, eb in zip(a.effective, b.effective):
      np.testing.assert_array_equal(ea, eb)
  # a larger prefix bucket (more warm-up) and batch size 1 score the same
  again = score(params, requests, prefix_bucket=8, batch_size=1, dense_forward=False)
  for a, b in zip(results["dense windows"], again):
    np.testing.assert_allclose(a.loglik, b.loglik, atol=1e-4)


def test_length_buckets_pad_at_most_a_quarter():
  sizes = [mc._length_bucket(n) for n in range(1, 3000)]
  assert all(s >= n for n, s in zip(range(1, 3000), sizes))
  assert all(s <= max(16, 1.25 * n) for n, s in zip(range(1, 3000), sizes))
  assert len(set(sizes)) <= 4 * 12  # a few shapes per octave: few compilations


def _harness(params, ids, context_len, horizon, provider, inputs):
  ep = run_controlled(
    params,
    jnp.asarray(ids[None], jnp.int32),
    inputs,
    cfg=CFG,
    space=SPACE,
    settings=ST,
    provider=provider,
    context_len=context_len,
    horizon=horizon,
    schedules=1,
  )
  return -np.asarray(ep.nll)[0, 0], np.asarray(ep.actions)[0, 0]


@pytest.mark.integration
def test_compressed_equals_harness_teacher_forced_per_window(tiny_llama):
  _, params = tiny_llama
  # M - 1 = 8 and T = 4 are page multiples: each window is the harness's block layout.
  item = MCItem("The cat s", ("at on the mat", "it", "ees"), 0)
  req = mc.encode_item(TOK, item)
  action = SPACE.lookup(0.6, 0.8, 7)
  (s,) = score(params, [req], provider=gen.ConstantProvider(action))
  m = len(req.context)
  for k, cont in enumerate(req.continuations):
    ids = np.concatenate([req.context, cont])
    want = []
    for w in range(0, len(cont), T):  # window w: dense replay of context + cont[:w]
      n = min(T, len(cont) - w)
      const = jnp.full((1, 1, n), action, jnp.int32)
      logp, acts = _harness(params, ids[: m + w + n], m - 1 + w, n, StaticSchedule(), const)
      want.append(logp)
      np.testing.assert_array_equal(acts, action)
    np.testing.assert_allclose(s.logprobs[k], np.concatenate(want), rtol=1e-5, atol=1e-5)
    assert np.all(s.actions[k] == action)
  dense = score(params, [req])[0]
  assert not np.allclose(dense.loglik, s.loglik)  # compression changed the scores

  # The policy picks the same actions as in the harness on the same tokens (first window).
  pcfg = network.PolicyConfig(
    SPACE.num_actions, CFG.hidden_size, CFG.hidden_size, d_model=16, num_heads=2, max_len=T
  )
  pparams = network.init_params(pcfg, jax.random.PRNGKey(3))
  agent = PolicyAgent(pcfg, SPACE, T, greedy=True)
  inputs = mc.policy_inputs(pparams, (0.5, 0.7, 0.5))
  (s,) = score(params, [req], provider=agent, inputs=inputs)
  for k in (1, 2):  # the continuations of at most T tokens
    cont = req.continuations[k]
    ids = np.concatenate([req.context, cont])
    n = len(cont)
    logp, acts = _harness(params, ids, m - 1, n, agent, inputs(0, 0, 1, None))
    np.testing.assert_array_equal(s.actions[k], acts)
    np.testing.assert_allclose(s.logprobs[k], logp, rtol=1e-5, atol=1e-5)
  assert len(set(np.concatenate(s.actions).tolist())) > 1  # the policy varies its actions


@pytest.mark.integration
def test_fixed_realizes_its_targets_on_the_scored_tokens(tiny_llama):
  _, params = tiny_llama
  requests = [mc.encode_item(TOK, it) for it in ITEMS]
  targets = (0.5, 0.8, 0.5)
  alloc = FixedAllocator(SPACE, targets)
  scores = score(params, requests, provider=StaticSchedule(), inputs=mc.fixed_inputs(alloc))
  real = mc_report.realized_budgets(scores, SPACE)
  assert real["scored_tokens"] == sum(len(c) for r in requests for c in r.continuations)
  assert real["effective_steps"] == alloc.slots  # padding was never allocated
  # prune and quant carry a pooled residual; the token axis rounds per step over few rows
  assert real["avg_prune_keep"] == pytest.approx(targets[1], abs=0.03)
  assert real["avg_quant_ratio"] == pytest.approx(targets[2], abs=0.03)
  assert real["avg_keep_effective"] == pytest.approx(targets[0], abs=0.2)
  np.testing.assert_allclose(
    (real["avg_keep_effective"], real["avg_prune_keep"], real["avg_quant_ratio"]),
    alloc.pooled_means,
    atol=1e-6,
  )


def test_accuracy_and_paired_interval():
  items = [MCItem("q", ("a", "bbbb"), 1), MCItem("q", ("aa", "b"), 0)]
  s = lambda ll: mc.ItemScores(np.asarray(ll), [], [], [])
  acc, norm = mc_report.correct(items, [s([-1.0, -2.0]), s([-1.0, -0.9])])
  np.testing.assert_array_equal(acc, [False, False])
  np.testing.assert_array_equal(norm, [True, True])  # -2/4 > -1/1, -1/2 > -0.9/1
  d = mc_report.paired_accuracy([1, 1, 0, 1], [0, 1, 0, 1], resamples=200)
  assert d.diff == pytest.approx(25.0) and d.lo <= d.diff <= d.hi
  assert d.lo >= 0.0
  summary = mc_report.summary(
    [
      MCItem("q", ("a", "b"), 0, "x"),
      MCItem("q", ("a", "b"), 0, "y"),
      MCItem("q", ("a", "b"), 0, "y"),
    ],
    [
      mc.ItemScores(np.asarray(v), [], [np.asarray([-1])], [np.asarray([True])])
      for v in ([0.0, -1.0], [-1.0, 0.0], [0.0, -1.0])
    ],
    SPACE,
  )
  assert summary["acc"] == pytest.approx(2 / 3) and summary["acc_macro"] == pytest.approx(0.75)
  assert summary["net_keep"] == pytest.approx(1.0)


def test_encode_pair_matches_lm_eval_split(smollm2_tokenizer):
  tok = smollm2_tokenizer
  ctx, cont = mc.encode_pair(tok, "Question: Which is hot?\nAnswer:", " the sun")
  assert ctx == gen.encode(tok, "Question: Which is hot?\nAnswer:")
  assert ctx + cont == gen.encode(tok, "Question: Which is hot?\nAnswer: the sun")
  assert tok.decode(cont) == " the sun"
  ctx2, cont2 = mc.encode_pair(tok, "Question: Which is hot?\nAnswer: ", "the sun")
  assert (ctx2, cont2) == (ctx, cont)  # the trailing space moves to the continuation
