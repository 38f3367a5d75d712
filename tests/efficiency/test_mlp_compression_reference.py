"""MLP-input pruning (method §4.3) and MLP-output fake quantization (§4.4) vs numpy."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from sol_jax.efficiency import mlp_compression as mlp
from sol_jax.efficiency.controls import make_controls
from tests.efficiency import numpy_reference as ref

BF16 = ml_dtypes.bfloat16

_prune = jax.jit(mlp.prune_mlp_input)
_quantize = jax.jit(mlp.fake_quantize)


def expected_prune(u, rho, count_dtype=np.float32):
  u = np.asarray(u)
  flat = u.reshape(u.shape[0], -1, u.shape[-1])
  out = np.stack(
    [np.stack([ref.prune_ref(tok, r, count_dtype)[0] for tok in row]) for row, r in zip(flat, rho)]
  )
  return out.reshape(u.shape)


def expected_quantize(y, bits):
  y = np.asarray(y)
  flat = y.reshape(y.shape[0], -1, y.shape[-1])
  out = np.stack(
    [np.stack([ref.fake_quantize_ref(tok, int(b))[0] for tok in row]) for row, b in zip(flat, bits)]
  )
  return out.reshape(y.shape)


# ---- pruning ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_prune_count_matches_activation_dtype_arithmetic(dtype):
  rhos = np.round(np.arange(0.0, 1.0001, 0.01), 2).astype(np.float32)
  for width in (7, 32, 37, 2048):
    got = np.asarray(mlp.prune_count(jnp.asarray(rhos), width, jnp.dtype(dtype)))
    want = [
      ref.prune_count_ref(r, width, BF16 if dtype == "bfloat16" else np.float32) for r in rhos
    ]
    np.testing.assert_array_equal(got, want, err_msg=f"D={width}")


def test_prune_count_spec_examples():
  """Method §4.3: the bf16 count differs from fp32 at D = 2048."""
  rho = jnp.asarray([0.6, 0.45], jnp.float32)
  np.testing.assert_array_equal(mlp.prune_count(rho, 2048, jnp.float32), [1229, 922])
  np.testing.assert_array_equal(mlp.prune_count(rho, 2048, jnp.bfloat16), [1232, 920])
  np.testing.assert_array_equal(mlp.prune_count(jnp.asarray([1e-4, 0.0]), 2048), [1, 1])


def test_prune_matches_reference_random_rows():
  rng = np.random.default_rng(0)
  rho = np.array([1e-4, 0.05, 0.4, 0.45, 0.6, 0.77, 0.99, 1.0], np.float32)
  u = rng.normal(size=(len(rho), 1, 37)).astype(np.float32)  # decode layout [B, 1, D]
  u[::2, 0, 5] = -u[::2, 0, 9]  # ties in |u| with opposite signs
  u[1::2, 0, 10:14] = u[1::2, 0, 20:21]  # a 5-way tie
  got = np.asarray(_prune(jnp.asarray(u), jnp.asarray(rho)))
  want = expected_prune(u, rho)
  np.testing.assert_array_equal(got, want)
  assert np.count_nonzero(got[0]) == 1  # ρ tiny: k clamps to 1


def test_prune_keeps_every_tie_with_the_threshold():
  u = np.array([[[3.0, -3.0, 2.0, -2.0, 2.0, 1.0, -0.5, 0.25]]] * 3, np.float32)
  rho = np.array([0.125, 0.5, 0.875], np.float32)  # k = 1, 4, 7
  got = np.asarray(_prune(jnp.asarray(u), jnp.asarray(rho)))
  np.testing.assert_array_equal(got, expected_prune(u, rho))
  np.testing.assert_array_equal(
    got[:, 0],
    [
      [3, -3, 0, 0, 0, 0, 0, 0],  # k=1: both 3s
      [3, -3, 2, -2, 2, 0, 0, 0],  # k=4: every |2|
      [3, -3, 2, -2, 2, 1, -0.5, 0],
    ],
  )  # k=7


@pytest.mark.parametrize("dtype", [np.float32, BF16])
def test_prune_rho_one_is_bit_identical(dtype):
  rng = np.random.default_rng(1)
  u = (rng.normal(size=(3, 2, 64)) * 10).astype(np.float32).astype(dtype)
  u[0, 0, :5] = 0  # zeros tie at the bottom: still kept
  got = np.asarray(_prune(jnp.asarray(u), jnp.ones((3,), jnp.float32)))
  assert got.dtype == u.dtype
  assert np.array_equal(
    got.view(np.uint16 if dtype == BF16 else np.uint32),
    u.view(np.uint16 if dtype == BF16 else np.uint32),
  )


def test_prune_bf16_uses_bf16_count():
  rng = np.random.default_rng(2)
  # 2048 distinct bf16-exact magnitudes 2^e·(1 + m/128): the kept count is exactly k.
  mags = np.array([2.0**e * (1 + m / 128) for e in range(-8, 8) for m in range(128)])
  u = rng.permutation(mags)[None, None] * rng.choice([-1, 1], size=(1, 1, 2048))
  u = np.concatenate([u, u]).astype(np.float32).astype(BF16)
  rho = np.array([0.6, 0.45], np.float32)
  got = np.asarray(_prune(jnp.asarray(u), jnp.asarray(rho)))
  np.testing.assert_array_equal(got, expected_prune(u, rho, BF16))
  kept = np.count_nonzero(got.astype(np.float32), axis=-1)[:, 0]
  np.testing.assert_array_equal(kept, [1232, 920])


# ---- quantization ----------------------------------------------------------------


def test_quantize_matches_reference():
  rng = np.random.default_rng(3)
  bits = np.array([2, 5, 8, 15, 16, 2, 5, 8, 15, 16], np.int32)
  y = rng.normal(size=(len(bits), 1, 48)) * rng.uniform(0.01, 100, size=(len(bits), 1, 1))
  y = y.astype(np.float32)
  y[5:] = 0  # all-zero rows: the 1e-8 scale floor keeps them zero
  got = np.asarray(_quantize(jnp.asarray(y), jnp.asarray(bits)))
  want = expected_quantize(y, bits)
  np.testing.assert_array_equal(got, want)
  assert np.isfinite(got).all()
  assert not got[5:].any()
  for row, b in enumerate(bits[:4]):  # at most 2·qmax+1 distinct levels per token
    assert len(np.unique(got[row])) <= 2**b - 1


def test_quantize_rounds_half_to_even():
  # b=5: qmax=15, absmax 3.75 -> scale 0.25 exactly; y/scale lands on k + 1/2.
  y = np.array([[[3.75, 0.125, 0.375, 0.625, -0.625, -0.375, 1.125, -3.75]]], np.float32)
  got = np.asarray(_quantize(jnp.asarray(y), jnp.asarray([5])))
  np.testing.assert_array_equal(got, expected_quantize(y, [5]))
  # ratios 15, .5, 1.5, 2.5, -2.5, -1.5, 4.5, -15 -> 15, 0, 2, 2, -2, -2, 4, -15
  np.testing.assert_array_equal(got[0, 0], [3.75, 0.0, 0.5, 0.5, -0.5, -0.5, 1.0, -3.75])


@pytest.mark.parametrize("dtype", [np.float32, BF16])
def test_quantize_sixteen_bits_is_exact_identity(dtype):
  rng = np.random.default_rng(4)
  y = (rng.normal(size=(2, 1, 40)) * 1e4).astype(np.float32)
  y[1, 0, 3] = 1e-30
  y = y.astype(dtype)
  got = np.asarray(_quantize(jnp.asarray(y), jnp.asarray([16, 16])))
  assert got.dtype == y.dtype and np.array_equal(got, y)


def test_quantize_bf16_computes_in_fp32_and_casts_back():
  rng = np.random.default_rng(5)
  bits = np.array([2, 5, 8, 15], np.int32)
  y = rng.normal(size=(4, 1, 32)).astype(np.float32).astype(BF16)
  got = np.asarray(_quantize(jnp.asarray(y), jnp.asarray(bits)))
  assert got.dtype == BF16
  np.testing.assert_array_equal(
    got.astype(np.float32), expected_quantize(y, bits).astype(np.float32)
  )


@pytest.mark.parametrize("bad", [1, 17])
def test_bits_outside_range_are_rejected(bad):
  with pytest.raises(ValueError, match=r"bit-width must lie in \[2, 16\]"):
    mlp.check_bits(np.array([5, bad, 16]))
  with pytest.raises(ValueError, match=r"bit-width must lie in \[2, 16\]"):
    make_controls([1.0, 1.0], [1.0, 1.0], [bad, 16])


def test_bits_at_range_ends_are_accepted():
  mlp.check_bits(np.array([2, 16]))
  controls = make_controls([1.0, 0.5], [1.0, 0.4], [2, 16])
  np.testing.assert_array_equal(controls.bits, [2, 16])
