"""Controlled decode end to end on a tiny random Llama (method §4.1, §14 notes 2-6, 10).

(a) dense controls are bit-identical to the uncontrolled step; (b) a fp64 numpy
re-implementation of whole controlled steps (Quest, pruning, fake-quant in
every layer) agrees with `schedule_step`; (c) controls never leak into a later
dense prefill or dense step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sol_jax.efficiency import decode
from sol_jax.efficiency.controls import make_controls
from tests.efficiency import numpy_reference as ref
from tests.tiny_models import TINY_LLAMA as CFG

B, K, C, PAGE, T = 2, 3, 16, 4, 5
# Bit-widths for the fp64 comparison. Above 8 bits a rounding boundary sits within
# fp32 noise of y/s (its step is absmax/qmax), so no independent implementation
# can match bit-for-bit there; the unit tests cover every width exactly.
REF_BITS = np.array([2, 3, 4, 5, 6, 7, 8, 16])

_prefill = jax.jit(decode.dense_prefill, static_argnums=(1, 3, 4))
_step = jax.jit(decode.schedule_step, static_argnums=1)
_dense_step = jax.jit(decode.dense_schedule_step, static_argnums=1)


def make_params(lm_params):
  p = jax.tree_util.tree_map(np.asarray, lm_params)  # the shared tiny_llama params
  # Non-trivial norm scales, so that a norm applied wrongly cannot go unnoticed.
  rng = np.random.default_rng(1)
  for norm in ("attn_norm", "mlp_norm"):
    shape = p["layers"][norm]["scale"].shape
    p["layers"][norm]["scale"] = (1 + 0.3 * rng.normal(size=shape)).astype(np.float32)
  p["final_norm"]["scale"] = (1 + 0.3 * rng.normal(size=CFG.hidden_size)).astype(np.float32)
  return jax.tree_util.tree_map(jnp.asarray, p)


def make_tokens():
  rng = np.random.default_rng(2)
  return (
    rng.integers(0, CFG.vocab_size, size=(B, C)).astype(np.int32),
    rng.integers(0, CFG.vocab_size, size=(T, B)).astype(np.int32),
  )


def sample_controls(rng):
  """Random per-row (κ, ρ, b) for one step, [B, K] each, with some dense axes mixed in."""
  kappa = rng.uniform(0.05, 1.0, size=(B, K)).astype(np.float32)
  rho = rng.uniform(0.05, 1.0, size=(B, K)).astype(np.float32)
  bits = rng.choice(REF_BITS, size=(B, K))
  kappa[0, 0], rho[1, 1], bits[1, 2] = 1.0, 1.0, 16
  return kappa, rho, bits


@pytest.fixture(scope="module")
def params(tiny_llama):
  return make_params(tiny_llama[1])


@pytest.fixture(scope="module")
def tokens():
  return make_tokens()


def test_dense_controls_are_bit_identical_to_uncontrolled_step(params, tokens):
  prefix_tokens, steps = tokens
  _, _, prefix, aux = _prefill(params, CFG, jnp.asarray(prefix_tokens), "quest", PAGE)
  dense = make_controls(np.ones((B, K)), np.ones((B, K)), np.full((B, K), 16), page_size=PAGE)
  sfx_c = sfx_d = decode.new_suffix(CFG, B, K, T)
  for t in range(T):
    tok = jnp.asarray(steps[t])
    lc, hc, sfx_c = _step(params, CFG, tok, prefix, aux, sfx_c, dense)
    ld, hd, sfx_d = _dense_step(params, CFG, tok, prefix, sfx_d)
    for got, want in ((lc, ld), (hc, hd), (sfx_c.k, sfx_d.k), (sfx_c.v, sfx_d.v)):
      assert np.array_equal(np.asarray(got), np.asarray(want)), f"step {t}"


def _reference_prefill(params, prefix_tokens):
  """Dense fp64 prefill, one position at a time: per row k/v [L, C, Hkv, dh], last logits."""
  out = []
  for row in prefix_tokens:
    ks = np.zeros((CFG.num_layers, 0, CFG.num_kv_heads, CFG.head_dim))
    vs = ks.copy()
    for pos, tok in enumerate(row):
      logits, _, k, v, _ = ref.decode_step_ref(params, CFG, int(tok), pos, ks, vs)
      ks = np.concatenate([ks, k[:, None]], axis=1)
      vs = np.concatenate([vs, v[:, None]], axis=1)
    out.append((ks, vs, logits))
  return out


def test_controlled_steps_match_numpy_reference(params, tokens):
  prefix_tokens, steps = tokens
  logits, _, prefix, aux = _prefill(params, CFG, jnp.asarray(prefix_tokens), "quest", PAGE)
  ref_prefix = _reference_prefill(params, prefix_tokens)
  for row, (ks, vs, last) in enumerate(ref_prefix):
    for got, want in ((prefix.k[:, row], ks), (prefix.v[:, row], vs)):
      np.testing.assert_allclose(np.asarray(got), want.transpose(0, 2, 1, 3), rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(logits[row]), last, rtol=0, atol=1e-5)

  rng = np.random.default_rng(4)  # seed chosen for its margins, see the end
  caches = {(b, k): ref_prefix[b][:2] for b in range(B) for k in range(K)}
  suffix = decode.new_suffix(CFG, B, K, T)
  margins = {"quest": np.inf, "prune": np.inf, "quant": np.inf}
  max_diff = 0.0
  for t in range(T):
    kappa, rho, bits = sample_controls(rng)
    controls = make_controls(kappa, rho, bits, page_size=PAGE)
    got_logits, got_hidden, suffix = _step(
      params, CFG, jnp.asarray(steps[t]), prefix, aux, suffix, controls
    )
    for (b, k), (ks, vs) in caches.items():
      control = (kappa[b, k], rho[b, k], bits[b, k])
      want_logits, want_hidden, nk, nv, m = ref.decode_step_ref(
        params, CFG, int(steps[t, b]), C + t, ks, vs, control, PAGE
      )
      caches[b, k] = (np.concatenate([ks, nk[:, None]], 1), np.concatenate([vs, nv[:, None]], 1))
      margins = {name: min(margins[name], m[name]) for name in margins}
      where = f"step {t} row ({b},{k}) controls {control}"
      for got, want in ((got_logits[b, k], want_logits), (got_hidden[b, k], want_hidden)):
        max_diff = max(max_diff, np.abs(np.asarray(got) - want).max())
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-5, err_msg=where)
  # fp32 vs fp64 can only agree where no discrete choice sits on a knife edge. The
  # margins (page score, |u|, and y distance to a rounding boundary) must exceed
  # the fp32-vs-fp64 noise (max_diff, ~1e-6) by 10x: this seed has no accidental near-tie.
  assert min(margins.values()) > 10 * max_diff, (margins, max_diff)


def test_controls_never_leak_into_later_dense_calls(params, tokens):
  prefix_tokens, steps = tokens
  other = (prefix_tokens[::-1] + 5) % CFG.vocab_size
  fresh = _prefill(params, CFG, jnp.asarray(other), "quest", PAGE)
  _, _, prefix, aux = _prefill(params, CFG, jnp.asarray(prefix_tokens), "quest", PAGE)
  empty = decode.new_suffix(CFG, B, K, T)
  dense_before = _dense_step(params, CFG, jnp.asarray(steps[0]), prefix, empty)

  harsh = make_controls(
    np.full((B, K), 0.1), np.full((B, K), 0.4), np.full((B, K), 2), page_size=PAGE
  )
  suffix = empty
  for t in range(2):
    controlled, _, suffix = _step(params, CFG, jnp.asarray(steps[t]), prefix, aux, suffix, harsh)
  assert not np.allclose(np.asarray(controlled), np.asarray(dense_before[0]))  # controls acted

  after = _prefill(params, CFG, jnp.asarray(other), "quest", PAGE)
  for got, want in zip(jax.tree_util.tree_leaves(after), jax.tree_util.tree_leaves(fresh)):
    assert np.array_equal(np.asarray(got), np.asarray(want))
  dense_after = _dense_step(params, CFG, jnp.asarray(steps[0]), prefix, empty)
  leaves = jax.tree_util.tree_leaves
  for got, want in zip(leaves(dense_after), leaves(dense_before)):
    assert np.array_equal(np.asarray(got), np.asarray(want))


def test_per_row_tokens_equal_each_row_run_alone(params, tokens):
  """Tokens [B, K] (one per schedule row) = each row run alone with [B] tokens and K = 1."""
  prefix_tokens, _ = tokens
  rng = np.random.default_rng(5)
  row_tokens = rng.integers(0, CFG.vocab_size, size=(T, B, K)).astype(np.int32)
  row_tokens[:, :, 1] = row_tokens[:, :, 0]  # two rows share their tokens, as [B] would
  _, _, prefix, aux = _prefill(params, CFG, jnp.asarray(prefix_tokens), "quest", PAGE)
  schedule = [sample_controls(rng) for _ in range(T)]
  sfx = decode.new_suffix(CFG, B, K, T)
  alone = [decode.new_suffix(CFG, B, 1, T) for _ in range(K)]
  for t in range(T):
    kappa, rho, bits = schedule[t]
    ctl = make_controls(kappa, rho, bits, page_size=PAGE)
    logits, hidden, sfx = _step(params, CFG, jnp.asarray(row_tokens[t]), prefix, aux, sfx, ctl)
    for k in range(K):
      one = make_controls(
        kappa[:, k : k + 1], rho[:, k : k + 1], bits[:, k : k + 1], page_size=PAGE
      )
      tok = jnp.asarray(row_tokens[t, :, k])
      lk, hk, alone[k] = _step(params, CFG, tok, prefix, aux, alone[k], one)
      np.testing.assert_allclose(logits[:, k], lk[:, 0], rtol=1e-6, atol=1e-6, err_msg=f"t={t}")
      np.testing.assert_allclose(hidden[:, k], hk[:, 0], rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match=r"\[B\] or \[B, K\]"):
    decode.schedule_step(params, CFG, jnp.zeros((B, K, 1), jnp.int32), prefix, aux, sfx, ctl)
