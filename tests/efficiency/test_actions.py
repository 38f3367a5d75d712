"""Tests for the action grid, its variants and effective-step forcing."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sol_jax.efficiency import actions as A
from sol_jax.efficiency.actions import ActionSpace, ActionVariant, load_action_variant

OFFICIAL = (
  "2L",
  "3L",
  "FL",
  "FL336",
  "C-K10K100",
  "C-K20K100",
  "C-K40K100",
  "P-S30S100",
  "P-S40S100",
  "P-S50S100",
  "Q-Q5Q10",
  "Q-Q5Q16",
  "Q-Q6Q16",
)


@pytest.mark.parametrize(
  "name,count",
  [
    ("FL", 1560),
    ("FL336", 336),
    ("3L", 27),
    ("2L", 8),
    ("C-K10K100", 2),
    ("P-S40S100", 2),
    ("Q-Q5Q10", 2),
  ],
)
def test_variant_sizes(name, count):
  assert load_action_variant(name).space.num_actions == count


@pytest.mark.parametrize("name", OFFICIAL)
def test_every_official_variant_loads(name):
  variant = load_action_variant(name)
  assert variant.name == name
  assert variant.sparsity_criteria == ("recency" if name[0] in "PQ" else "quest")
  assert variant.page_size == (8 if name.startswith("FL") else 4)
  assert name in A.available_variants()


def test_spec_levels_of_named_variants():
  fl = load_action_variant("FL").space
  np.testing.assert_allclose(fl.keep_fracs, np.arange(1, 11) / 10)
  np.testing.assert_allclose(fl.prune_fracs, np.arange(40, 101, 5) / 100)
  assert fl.quant_bits == tuple(range(5, 17))
  h = load_action_variant("FL336").space
  assert h.keep_fracs == (0.1, 0.4, 0.7, 1.0)
  assert h.struct_prune_choices == ("s45", "s50", "s60", "s70", "s80", "s90", "s100")
  assert load_action_variant("3L").space.quant_choices == ("q5", "q7", "q16")


def _brute_force(keep, prune_tags, quant_tags):
  rows = list(itertools.product(keep, prune_tags, quant_tags))
  kappa = np.array([r[0] for r in rows], np.float32)
  rho = np.array([int(r[1][1:]) / 100 for r in rows], np.float32)
  bits = np.array([int(r[2][1:]) for r in rows])
  return kappa, rho, bits


@pytest.mark.parametrize(
  "cfg",
  [
    (
      load_action_variant("FL").space.keep_fracs,
      load_action_variant("FL").space.struct_prune_choices,
      load_action_variant("FL").space.quant_choices,
    ),
    ([0.1, 0.6, 1.0], ["s40", "s80", "s100"], ["q5", "q7", "q16"]),
    ([1.0, 0.3], ["s100", "s50", "s70"], ["q16", "q4"]),  # unsorted lists keep their order
  ],
)
def test_index_layout_matches_itertools_product(cfg):
  space = ActionSpace.from_config(*cfg)
  kappa, rho, bits = _brute_force(*cfg)
  np.testing.assert_array_equal(space.kappa, kappa)
  np.testing.assert_array_equal(space.rho, rho)
  np.testing.assert_array_equal(space.bits, bits)
  np.testing.assert_array_equal(space.eta, bits / 16)
  for a, (ik, ir, ib) in enumerate(itertools.product(*map(range, space.shape))):
    assert space.index_from_levels(ik, ir, ib) == a
    assert tuple(int(x) for x in space.levels_of(a)) == (ik, ir, ib)
    assert space.lookup(kappa[a], rho[a], bits[a]) == a


def test_tags_and_lookup():
  space = load_action_variant("3L").space
  a = space.lookup(0.6, 0.8, 7)
  assert space.tags[a] == "k060-s080-q7"
  assert len(set(space.tags)) == space.num_actions
  with pytest.raises(ValueError, match="not in the grid"):
    space.lookup(0.5, 0.8, 7)


def test_dense_and_forced_indices():
  space = load_action_variant("FL").space
  assert space.dense_index == space.num_actions - 1
  assert (
    space.kappa[space.dense_index],
    space.rho[space.dense_index],
    space.bits[space.dense_index],
  ) == (1, 1, 16)
  # First match wins when the dense combination is not last in list order.
  space = ActionSpace.from_config([1.0, 0.5], ["s100", "s50"], ["q16", "q8"])
  assert space.dense_index == 0
  # No b = 16: dense_index falls back to the first κ = 1 action (q5), while the
  # forced action of a non-effective step takes the max levels (q10), method §4.6.
  q = load_action_variant("Q-Q5Q10").space
  assert q.dense_index == 0 and q.bits[q.dense_index] == 5
  assert q.bits[q.forced_dense_index] == 10
  assert load_action_variant("3L").space.rho_max == 1.0
  assert ActionSpace.from_config([1.0], ["s50", "s80"], ["q16"]).rho_max == 0.8


def test_single_level_axes_and_penalty_weights():
  assert load_action_variant("FL").space.single_level_axes == ()
  assert load_action_variant("C-K20K100").space.single_level_axes == ("prune", "quant")
  assert load_action_variant("P-S30S100").space.single_level_axes == ("token", "quant")
  q = load_action_variant("Q-Q6Q16").space
  assert q.single_level_axes == ("token", "prune")
  assert q.penalty_weights(100, 100, 200) == (0.0, 0.0, 200.0)


@pytest.mark.parametrize(
  "keep,prune,quant,match",
  [
    ([0.1, 1.0], ["S40"], ["q16"], "malformed"),
    ([0.1, 1.0], ["40"], ["q16"], "malformed"),
    ([0.1, 1.0], [40], ["q16"], "malformed"),
    ([0.1, 1.0], ["s40x"], ["q16"], "malformed"),
    ([0.1, 1.0], ["s0"], ["q16"], r"\(0, 100\]"),
    ([0.1, 1.0], ["s101"], ["q16"], r"\(0, 100\]"),
    ([0.1, 1.0], ["s100"], ["q1"], r"\[2, 16\]"),
    ([0.1, 1.0], ["s100"], ["q17"], r"\[2, 16\]"),
    ([0.1, 1.0], ["s100"], ["b8"], "malformed"),
    ([0.0, 1.0], ["s100"], ["q16"], r"\(0, 1\]"),
    ([1.5], ["s100"], ["q16"], r"\(0, 1\]"),
    ([True, 1.0], ["s100"], ["q16"], "not a number"),
    (["0.1", 1.0], ["s100"], ["q16"], "not a number"),
    ([0.1, 1.0], ["s100", "s100"], ["q16"], "duplicate"),
    ([0.1, 1.0], [], ["q16"], "empty"),
    ([0.1, 0.5], ["s100"], ["q16"], "no dense action"),
    ("0.1", ["s100"], ["q16"], "must be a list"),
  ],
)
def test_strict_parsing(keep, prune, quant, match):
  with pytest.raises(ValueError, match=match):
    ActionSpace.from_config(keep, prune, quant)


def test_hashable_static_arg_under_jit():
  a = ActionSpace.from_config([0.1, 1.0], ["s60", "s100"], ["q5", "q16"])
  b = load_action_variant("2L").space
  assert a == b and hash(a) == hash(b)
  traces = []

  def f(idx, space):
    traces.append(1)
    return jnp.asarray(space.kappa)[idx] * jnp.asarray(space.eta)[idx]

  jf = jax.jit(f, static_argnums=1)
  idx = jnp.arange(8)
  np.testing.assert_allclose(jf(idx, a), a.kappa * a.eta)
  jf(idx, b)  # equal space: no retrace
  assert len(traces) == 1
  with pytest.raises(ValueError):
    a.kappa[0] = 0.5  # arrays are read-only


def test_effective_and_force_dense():
  space = load_action_variant("Q-Q5Q10").space
  kv_len = jnp.arange(1, 12)
  eff = A.is_effective(kv_len, 4, 2)
  np.testing.assert_array_equal(eff, np.arange(1, 12) > 7)
  chosen = jnp.zeros_like(kv_len)
  executed = jax.jit(A.force_dense, static_argnums=2)(chosen, eff, space)
  np.testing.assert_array_equal(
    executed, np.where(np.arange(1, 12) > 7, 0, space.forced_dense_index)
  )
  rows = jnp.array([[3, 5], [7, 1]])
  np.testing.assert_array_equal(
    A.force_dense(rows, jnp.array([True, False]), load_action_variant("2L").space), [[3, 7], [7, 7]]
  )


def test_yaml_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="no action variant 'nope'"):
    load_action_variant("nope")
  with pytest.raises(FileNotFoundError):
    ActionSpace.from_yaml(tmp_path / "missing.yaml")
  good = "keep_fracs: [0.1, 1.0]\nstruct_prune_choices: [s100]\nquant_choices: [q16]\n"
  cases = {
    "missing.yaml": good,
    "unknown.yaml": good + "sparsity_criteria: quest\npage_size: 4\nextra: 1\n",
    "criteria.yaml": good + "sparsity_criteria: topk\npage_size: 4\n",
    "page.yaml": good + "sparsity_criteria: quest\npage_size: 0\n",
    "list.yaml": "- 1\n- 2\n",
  }
  for fname, text in cases.items():
    (tmp_path / fname).write_text(text)
    with pytest.raises(ValueError):
      ActionVariant.from_yaml(tmp_path / fname)
  (tmp_path / "ok.yaml").write_text(good + "sparsity_criteria: quest\npage_size: 4\n")
  assert load_action_variant("ok", config_dir=tmp_path).space.num_actions == 2
