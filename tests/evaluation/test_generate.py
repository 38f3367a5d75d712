"""generate(): the provider in the loop of free-running generation (method §12.6-12.7).

On the tiny random Llama: the dense greedy generation equals greedy decoding by
repeated full-sequence forward passes (across dense-replay refreshes, unaligned
and very short prompts); a T-step generation under a constant compressed action
or the policy equals the harness teacher-forced on the generated tokens (same
actions, same NLL); stop strings, EOS and max_new_tokens end a continuation;
sampling is reproducible by seed.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sol_jax.efficiency.actions import load_action_variant
from sol_jax.efficiency.controls import ControlSettings
from sol_jax.evaluation import generate as gen
from sol_jax.evaluation.constant import ConstantGenerator
from sol_jax.evaluation.harness import StaticSchedule, run_controlled
from sol_jax.models import llama
from sol_jax.policy import PolicyAgent, network
from tests.tiny_models import TINY_LLAMA as CFG

SPACE = load_action_variant("3L").space
ST = ControlSettings(criteria="quest", page_size=4, sink_tokens=4, window_tokens=2)
CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?0123456789"[: CFG.vocab_size]


class CharTokenizer:
  """One character per token id (the tiny model's 64-token vocabulary)."""

  def __init__(self, eos=None):
    self.eos_token_id = eos

  def encode(self, text):
    return [CHARS.index(c) for c in text]

  def decode(self, ids):
    return "".join(CHARS[i] for i in ids)


TOK = CharTokenizer()


@functools.partial(jax.jit, static_argnums=1)
def _last_logits(params, cfg, ids):
  return llama.prefill(params, cfg, ids, logits="last")[0][0]


def reference_greedy(params, ids, n):
  """Greedy decoding by a full forward pass over the whole sequence at every step."""
  ids, out, logps = list(ids), [], []
  for _ in range(n):
    logits = np.asarray(_last_logits(params, CFG, jnp.asarray([ids], jnp.int32)), np.float64)
    nxt = int(np.argmax(logits))
    logps.append(logits[nxt] - np.log(np.sum(np.exp(logits - logits.max()))) - logits.max())
    ids.append(nxt)
    out.append(nxt)
  return np.asarray(out), np.asarray(logps)


def run(params, prompts, **kw):
  kw = dict(space=SPACE, settings=ST, horizon=4, max_new_tokens=10, stop_at_eos=False) | kw
  return gen.generate(params, CFG, kw.pop("tokenizer", TOK), prompts, **kw)


@pytest.mark.integration
def test_dense_greedy_equals_repeated_full_forward(tiny_llama):
  _, params = tiny_llama
  # 11 tokens: an 8-token prefix plus 2 warm-up tokens; 3 tokens: empty prefix (C0 = 0);
  # 10 new tokens with T = 4 cross two dense-replay refreshes and end mid-window.
  prompts = ["Hello world", "abc"]
  for provider in (None, gen.ConstantProvider(SPACE.dense_index)):
    for g in run(params, prompts, provider=provider):
      want, want_logp = reference_greedy(params, TOK.encode(g.prompt), 10)
      (s,) = g.samples
      np.testing.assert_array_equal(s.tokens, want)
      np.testing.assert_allclose(s.logprobs, want_logp, atol=2e-5)
      assert s.text == TOK.decode(want) and s.stop_reason == "length"
      assert np.all(s.kappa == 1) and np.all(s.rho == 1) and np.all(s.bits == 16)
      assert g.budgets["net_keep"] == pytest.approx(1.0)
  # a larger prefix bucket (more warm-up, fewer compilations) generates the same tokens
  (g,) = run(params, prompts[:1], prefix_bucket=8)
  np.testing.assert_array_equal(
    g.samples[0].tokens, reference_greedy(params, TOK.encode("Hello world"), 10)[0]
  )


def _harness(params, prompt_ids, tokens, provider, inputs, horizon):
  blocks = jnp.asarray(np.concatenate([prompt_ids, tokens])[None], jnp.int32)
  return run_controlled(
    params,
    blocks,
    inputs,
    cfg=CFG,
    space=SPACE,
    settings=ST,
    provider=provider,
    context_len=len(prompt_ids) - 1,
    horizon=horizon,
    schedules=1,
  )


@pytest.mark.integration
def test_one_window_equals_the_harness_teacher_forced(tiny_llama):
  _, params = tiny_llama
  prompt, t = "The cat s", 6  # 9 tokens: C = 8 (a page multiple), the harness layout exactly
  ids = np.asarray(TOK.encode(prompt))
  action = SPACE.lookup(0.6, 0.8, 7)
  const = jnp.full((1, 1, t), action, jnp.int32)
  (g,) = run(params, [prompt], provider=StaticSchedule(), inputs=const, horizon=t, max_new_tokens=t)
  s = g.samples[0]
  ep = _harness(params, ids, s.tokens, StaticSchedule(), const, t)
  np.testing.assert_array_equal(np.asarray(ep.actions)[0, 0], s.actions)
  np.testing.assert_allclose(-np.asarray(ep.nll)[0, 0], s.logprobs, rtol=1e-5, atol=1e-5)
  assert np.all(s.actions == action) and np.all(s.effective)
  assert g.budgets["avg_keep_effective"] == pytest.approx(0.6)
  assert g.budgets["avg_prune_keep"] == pytest.approx(0.8)
  assert g.budgets["avg_quant_ratio"] == pytest.approx(7 / 16)
  # compression changed the continuation's probabilities
  dense = run(params, [prompt], horizon=t, max_new_tokens=t)[0].samples[0]
  assert not np.allclose(dense.logprobs[1:], s.logprobs[1:]) or not np.array_equal(
    dense.tokens, s.tokens
  )

  # The policy in the loop picks the same actions as in the harness on the same tokens.
  pcfg = network.PolicyConfig(
    SPACE.num_actions, CFG.hidden_size, CFG.hidden_size, d_model=16, num_heads=2, max_len=t
  )
  pparams = network.init_params(pcfg, jax.random.PRNGKey(3))
  agent = PolicyAgent(pcfg, SPACE, t, greedy=True)
  inputs = gen.policy_inputs(pparams, (0.5, 0.7, 0.5))
  (g,) = run(params, [prompt], provider=agent, inputs=inputs, horizon=t, max_new_tokens=t)
  s = g.samples[0]
  assert len(set(s.actions.tolist())) > 1  # the policy varies its actions
  ep = _harness(params, ids, s.tokens, agent, inputs(0, 0, 1, None), t)
  np.testing.assert_array_equal(np.asarray(ep.actions)[0, 0], s.actions)
  np.testing.assert_allclose(-np.asarray(ep.nll)[0, 0], s.logprobs, rtol=1e-5, atol=1e-5)


@pytest.mark.integration
def test_stop_strings_eos_and_max_new_tokens(tiny_llama):
  _, params = tiny_llama
  full = run(params, ["Hello world"], max_new_tokens=12)[0].samples[0]
  stop = full.text[5:7]
  cut = full.text.index(stop)
  s = run(params, ["Hello world"], max_new_tokens=12, stop=["zzzz", stop])[0].samples[0]
  assert s.stop_reason == "stop" and s.text == full.text[:cut]
  assert len(s.tokens) == cut + len(stop)  # one char per token: through the stop string
  np.testing.assert_array_equal(s.tokens, full.tokens[: len(s.tokens)])
  assert len(s.logprobs) == len(s.actions) == len(s.effective) == len(s.tokens)
  s = run(params, ["Hello world"], max_new_tokens=5)[0].samples[0]
  assert len(s.tokens) == 5 and s.stop_reason == "length"
  eos = int(full.tokens[3])
  first = int(np.flatnonzero(full.tokens == eos)[0])
  s = run(
    params, ["Hello world"], max_new_tokens=12, stop_at_eos=True, tokenizer=CharTokenizer(eos)
  )
  s = s[0].samples[0]
  assert s.stop_reason == "eos" and len(s.tokens) == first + 1
  assert s.text == full.text[:first]


@pytest.mark.integration
def test_sampling_is_reproducible_by_seed(tiny_llama):
  _, params = tiny_llama
  sampling = gen.Sampling(temperature=1.0, top_k=20, top_p=0.95)
  fixed = gen.schedule_inputs(lambda: ConstantGenerator(SPACE.lookup(0.6, 0.8, 7)), 4)
  kw = dict(sampling=sampling, samples=3, provider=StaticSchedule(), inputs=fixed)
  a = run(params, ["Hello world"], seed=1, **kw)[0]
  b = run(params, ["Hello world"], seed=1, **kw)[0]
  c = run(params, ["Hello world"], seed=2, **kw)[0]
  rows = lambda g: np.stack([s.tokens for s in g.samples])
  np.testing.assert_array_equal(rows(a), rows(b))
  assert not np.array_equal(rows(a), rows(c))
  assert len({tuple(r) for r in rows(a)}) > 1  # the K samples are independent
  # greedy K samples share the prompt's prefix and all equal the single greedy one
  one = run(params, ["Hello world"])[0].samples[0].tokens
  for s in run(params, ["Hello world"], samples=2)[0].samples:
    np.testing.assert_array_equal(s.tokens, one)


def test_choose_tokens_top_k_top_p():
  logits = jnp.asarray([[0.0, 3.0, 1.0, 2.9], [5.0, 0.0, 0.0, 0.0]])
  key = jax.random.PRNGKey(0)
  greedy = np.asarray(gen.choose_tokens(logits, key, gen.Sampling()))
  np.testing.assert_array_equal(greedy, [1, 0])
  for s in (gen.Sampling(1.0, top_k=1), gen.Sampling(1.0, top_p=1e-3)):
    for i in range(5):
      np.testing.assert_array_equal(gen.choose_tokens(logits, jax.random.PRNGKey(i), s), [1, 0])
  two = gen.Sampling(1.0, top_k=2)
  picks = {int(gen.choose_tokens(logits, jax.random.PRNGKey(i), two)[0]) for i in range(40)}
  assert picks == {1, 3}
  with pytest.raises(ValueError, match="top_p"):
    gen.Sampling(1.0, top_p=0.0)
