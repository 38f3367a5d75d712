"""Token selection and attention sparsity vs the numpy references (method §4.2, §14.2).

Keys and queries are rounded to multiples of 1/8, so every Quest page score is
exact in fp32 and fp64 alike: the masks can be compared exactly, including the
exact ties that the method doc requires to be kept.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sol_jax.efficiency import attention_sparsity as sparsity
from sol_jax.efficiency.selection import top_k_mask
from sol_jax.models.cache import PrefixCache
from tests.efficiency import numpy_reference as ref

C, CAP, HKV, DH = 16, 11, 2, 8
SINK, WINDOW = 4, 2

_top_k = jax.jit(top_k_mask)
_quest = jax.jit(sparsity.quest_keep, static_argnames="page_size")
_protect = jax.jit(sparsity.protect_sink_window, static_argnames=("sink", "window"))
_recency = jax.jit(sparsity.recency_keep, static_argnums=(0, 1), static_argnames=("sink", "window"))
_relevancy = jax.jit(sparsity.relevancy_keep, static_argnames=("sink", "window"))


def grid(rng, shape, scale=1.0):
  """Random normal values on the 1/8 grid: products and short sums are exact in fp32."""
  return (np.round(rng.normal(size=shape) * scale * 8) / 8).astype(np.float32)


# ---- top_k_mask -------------------------------------------------------------


def test_top_k_mask_matches_sorted_threshold():
  rng = np.random.default_rng(0)
  rows, n = 12, 17
  x = rng.normal(size=(rows, n)).astype(np.float32)
  x[:, 3] = x[:, 5]  # duplicates, so thresholds can fall on a tie
  x[:6, 7:10] = x[:6, 0:1]  # a value repeated 4x
  x[::3, 11] = -np.inf
  x[1, :] = -np.inf  # a row of only -inf
  x[2, 12] = np.inf
  x[4] = np.round(x[4]) + np.float32(0)  # many ties among small integers; +0 drops -0.0
  k = rng.integers(1, n + 1, size=rows)
  k[0], k[1], k[3] = 1, n, n
  k[5] = 1
  got = np.asarray(_top_k(jnp.asarray(x), jnp.asarray(k)))
  np.testing.assert_array_equal(got, ref.top_k_mask_ref(x, k))
  assert got[1].all()  # all -inf: everything ties with the threshold


@pytest.mark.parametrize("k", [1, 5, 9])
def test_top_k_mask_scalar_k_and_leading_axes(k):
  rng = np.random.default_rng(k)
  # Ties among small integers; + 0 turns -0.0 into 0.0 (signed zeros: see below).
  x = np.round(rng.normal(size=(2, 3, 9)) * 2).astype(np.float32) + np.float32(0)
  got = np.asarray(_top_k(jnp.asarray(x), jnp.full((2, 3), k)))
  np.testing.assert_array_equal(got, ref.top_k_mask_ref(x, k))


def test_top_k_mask_signed_zeros_tie():
  """-0.0 == +0.0, so a threshold of 0 must keep both (reference: keep scores >= τ)."""
  x = np.array([[0.0, -0.0, 1.0], [-0.0, 0.0, 1.0]], np.float32)
  got = np.asarray(_top_k(jnp.asarray(x), jnp.asarray([2, 2])))
  np.testing.assert_array_equal(got, ref.top_k_mask_ref(x, 2))


# ---- token budget -------------------------------------------------------------


def test_token_budget_matches_fp32_ceil():
  kappas = np.array([0.0, 0.01, 0.1, 0.2, 0.3, 0.7, 0.9, 1.0], np.float32)
  for kv_len in (1, 5, 17, 1001, 1025, 1040, 1041):
    got = np.asarray(sparsity.token_budget(jnp.asarray(kappas), kv_len))
    np.testing.assert_array_equal(got, [ref.token_budget_ref(k, kv_len) for k in kappas])
  assert int(sparsity.token_budget(0.1, 1001)) == 101  # method §4.2.1 example


# ---- Quest ----------------------------------------------------------------------


def run_quest(q, prefix_k, suffix_k, t, kappa, page_size):
  """JAX Quest on q [B, H, dh] -> keep [B, H, C+t+1] over the full visible sequence."""
  b, heads, dh = q.shape
  hkv = prefix_k.shape[1]
  lo, hi = sparsity.prefix_page_bounds(
    PrefixCache(k=jnp.asarray(prefix_k)[None], v=jnp.zeros_like(prefix_k)[None]), page_size
  )
  keep_p, keep_s = _quest(
    jnp.asarray(q).reshape(b, hkv, heads // hkv, dh),
    (lo[0], hi[0]),
    jnp.asarray(suffix_k),
    jnp.int32(t),
    jnp.asarray(kappa, jnp.float32),
    page_size=page_size,
  )
  keep_p, keep_s = np.asarray(keep_p), np.asarray(keep_s)
  assert not keep_s[..., t + 1 :].any(), "unwritten suffix slots must never be kept"
  return np.concatenate([keep_p, keep_s[..., : t + 1]], axis=-1).reshape(b, heads, -1)


def expected_quest(q, prefix_k, suffix_k, t, kappa, page_size):
  keeps = []
  for row in range(q.shape[0]):
    keys = np.concatenate([prefix_k[row], suffix_k[row, :, : t + 1]], axis=1)  # [Hkv, K, dh]
    keeps.append(ref.quest_keep_ref(q[row], keys.transpose(1, 0, 2), kappa[row], page_size)[0])
  return np.stack(keeps)


@pytest.mark.parametrize("group", [1, 2, 3])
@pytest.mark.parametrize("page_size", [1, 4, 8])
def test_quest_matches_reference(page_size, group):
  rng = np.random.default_rng(100 * page_size + group)
  kappa = np.array([0.01, 0.1, 0.37, 0.6, 1.0], np.float32)
  b = len(kappa)
  heads = HKV * group
  prefix_k = grid(rng, (b, HKV, C, DH))
  suffix_k = grid(rng, (b, HKV, CAP, DH))  # slots > t hold garbage that must be ignored
  head_disagreement = False
  for t in (0, 3, 6, 7, 10):
    q = grid(rng, (b, heads, DH))
    got = run_quest(q, prefix_k, suffix_k, t, kappa, page_size)
    want = expected_quest(q, prefix_k, suffix_k, t, kappa, page_size)
    np.testing.assert_array_equal(got, want, err_msg=f"t={t}")
    assert want[-1].all()  # κ = 1 keeps everything
    if group > 1:
      head_disagreement |= bool((want[:, 0] != want[:, 1]).any())
  if group > 1:  # heads sharing a KV head select independently
    assert head_disagreement


def _tie_inputs(rng, dup_page_in_suffix):
  """One row, C=16, S=4, t=2 (kv_len 19, partial last page); returns q, prefix_k, suffix_k."""
  prefix_k = grid(rng, (1, HKV, C, DH), scale=0.05)  # small-range filler pages
  suffix_k = grid(rng, (1, HKV, CAP, DH), scale=0.05)
  r1, r2 = grid(rng, (2, HKV, DH), scale=2.0) + np.float32(0.125)
  r1, r2 = np.where(r1 == 0, 1, r1), np.where(r2 == 0, 1, r2)
  # Each dim has keys of both signs, so every score is > 0 and scales with the range.
  big = np.stack([r1, -r1, r2, -r2], axis=1)  # [Hkv, 4, dh]
  prefix_k[0, :, 8:12] = big  # page 2
  if dup_page_in_suffix:
    # The partial last page (slots 0..2) holds 3 of page 2's keys with equal min/max.
    prefix_k[0, :, 8:12] = np.stack([r1, -r1, r2, -r1], axis=1)
    suffix_k[0, :, 0:3] = np.stack([-r1, r2, r1], axis=1)
  else:
    prefix_k[0, :, 12:16] = big[:, ::-1]  # page 3: same keys, other order
    prefix_k[0, :, 0:4] = 2 * big  # page 0: twice the range, so twice the score
  q = grid(rng, (1, HKV * 2, DH))
  q[q == 0] = 0.125
  return q, prefix_k, suffix_k


@pytest.mark.parametrize("kappa,pages", [(0.2, [0]), (0.4, [0, 2, 3]), (0.6, [0, 2, 3])])
def test_quest_keeps_exact_ties_at_threshold(kappa, pages):
  """Pages 2 and 3 tie; at n_pages = 2 or 3 the threshold falls on the tie: both kept."""
  q, prefix_k, suffix_k = _tie_inputs(np.random.default_rng(7), dup_page_in_suffix=False)
  want = expected_quest(q, prefix_k, suffix_k, 2, [kappa], 4)
  expect = np.zeros(19, bool)
  for p in pages:
    expect[4 * p : 4 * p + 4] = True
  assert (want[0] == expect).all()  # the construction does what it claims
  np.testing.assert_array_equal(run_quest(q, prefix_k, suffix_k, 2, [kappa], 4), want)


def test_quest_tie_between_prefix_page_and_partial_current_page():
  q, prefix_k, suffix_k = _tie_inputs(np.random.default_rng(8), dup_page_in_suffix=True)
  want = expected_quest(q, prefix_k, suffix_k, 2, [0.2], 4)  # n = 4: one page
  expect = np.zeros(19, bool)
  expect[8:12] = expect[16:19] = True
  assert (want[0] == expect).all()
  np.testing.assert_array_equal(run_quest(q, prefix_k, suffix_k, 2, [0.2], 4), want)


def test_prefix_page_bounds_rejects_misaligned_context():
  prefix = PrefixCache(k=jnp.zeros((1, 1, 1, 10, 4)), v=jnp.zeros((1, 1, 1, 10, 4)))
  with pytest.raises(ValueError, match="multiple of the page"):
    sparsity.prefix_page_bounds(prefix, 4)


# ---- sink/window protection, recency, relevancy --------------------------------


def test_protect_sink_window_forces_first_and_last_tokens():
  rng = np.random.default_rng(3)
  kappa = np.array([0.01, 0.2], np.float32)
  prefix_k, suffix_k = grid(rng, (2, HKV, C, DH)), grid(rng, (2, HKV, CAP, DH))
  for t in (0, 1, 5, 10):
    q = grid(rng, (2, HKV * 2, DH))
    quest = expected_quest(q, prefix_k, suffix_k, t, kappa, 4)
    lo, hi = sparsity.prefix_page_bounds(
      PrefixCache(k=jnp.asarray(prefix_k)[None], v=jnp.asarray(prefix_k)[None]), 4
    )
    keep_p, keep_s = _quest(
      jnp.asarray(q).reshape(2, HKV, 2, DH),
      (lo[0], hi[0]),
      jnp.asarray(suffix_k),
      jnp.int32(t),
      jnp.asarray(kappa),
      page_size=4,
    )
    keep_p, keep_s = _protect(keep_p, keep_s, jnp.int32(t), sink=SINK, window=WINDOW)
    keep_s = np.asarray(keep_s)
    assert not keep_s[..., t + 1 :].any()
    got = np.concatenate([np.asarray(keep_p), keep_s[..., : t + 1]], -1).reshape(2, HKV * 2, -1)
    want = ref.protect_sink_window_ref(quest, SINK, WINDOW)
    np.testing.assert_array_equal(got, want)
    assert got[..., :SINK].all() and got[..., -(WINDOW + 1) :].all()
    assert not quest[..., :SINK].all()  # κ=0.01 alone drops some sinks: the test has teeth


@pytest.mark.parametrize("prefix_len", [3, 16])
def test_recency_matches_reference(prefix_len):
  kappa = np.array([0.0, 0.05, 0.3, 0.55, 1.0], np.float32)
  for t in (0, 1, 2, 5, 10):
    kv_len = prefix_len + t + 1
    keep_p, keep_s = _recency(
      prefix_len, CAP, jnp.int32(t), jnp.asarray(kappa), sink=SINK, window=WINDOW
    )
    full = np.concatenate(
      [
        np.broadcast_to(np.asarray(keep_p), (len(kappa), 1, 1, prefix_len)),
        np.broadcast_to(np.asarray(keep_s), (len(kappa), 1, 1, CAP)),
      ],
      -1,
    )
    for row, k in enumerate(kappa):
      np.testing.assert_array_equal(
        full[row, 0, 0, :kv_len],
        ref.recency_keep_ref(kv_len, k, SINK, WINDOW),
        err_msg=f"t={t} kappa={k}",
      )


@pytest.mark.parametrize("prefix_len", [2, 16])
def test_relevancy_matches_reference(prefix_len):
  rng = np.random.default_rng(prefix_len)
  kappa = np.array([0.0, 0.01, 0.3, 0.5, 1.0], np.float32)
  b, g = len(kappa), 2
  for t in (0, 2, 5, 10):
    # Small integers: many exact ties with the threshold.
    scores_p = rng.integers(-3, 4, size=(b, HKV, g, prefix_len)).astype(np.float32)
    scores_s = rng.integers(-3, 4, size=(b, HKV, g, CAP)).astype(np.float32)
    scores_s[..., t + 1 :] = 1e6  # unwritten slots: must never be chosen
    keep_p, keep_s = _relevancy(
      jnp.asarray(scores_p),
      jnp.asarray(scores_s),
      jnp.int32(t),
      jnp.asarray(kappa),
      sink=SINK,
      window=WINDOW,
    )
    keep_s = np.asarray(keep_s)
    assert not keep_s[..., t + 1 :].any()
    got = np.concatenate([np.asarray(keep_p), keep_s[..., : t + 1]], -1)
    logits = np.concatenate([scores_p, scores_s[..., : t + 1]], -1)
    for row in range(b):
      for h in range(HKV):
        for j in range(g):
          np.testing.assert_array_equal(
            got[row, h, j],
            ref.relevancy_keep_ref(logits[row, h, j], kappa[row], SINK, WINDOW),
            err_msg=f"t={t} row={row} head={h},{j}",
          )
