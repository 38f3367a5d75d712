"""EMC/DAC providers inside the harness (method §12.5) on a tiny random Llama.

The harness run is replayed step by step with `decode.schedule_step` on its own
executed actions; the signals are recomputed from the replay's logits / hidden
states in float64 numpy and fed to the offline `heuristic_schedule`, which must
reproduce the actions the provider took inside the harness.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sol_jax import evaluation as ev
from sol_jax.efficiency import decode
from sol_jax.efficiency.actions import load_action_variant
from sol_jax.efficiency.controls import ControlSettings
from sol_jax.evaluation import perplexity
from sol_jax.evaluation.fixed import FixedAllocator
from sol_jax.evaluation.harness import run_controlled
from sol_jax.evaluation.heuristics import heuristic_schedule
from sol_jax.evaluation.providers import (
  DAC,
  EMC,
  STATIC,
  HeuristicProvider,
  MixedInputs,
  MixedProvider,
)
from sol_jax.evaluation.random_schedules import RandomScheduler
from sol_jax.models import llama
from tests.tiny_models import TINY_LLAMA as CFG

B, K, C, T = 2, 4, 16, 10
THREE = load_action_variant("3L").space
FL = load_action_variant("FL").space
TWO = load_action_variant("2L").space
_prefill = jax.jit(decode.dense_prefill, static_argnums=(1, 3, 4))
_step = jax.jit(decode.schedule_step, static_argnums=1)


@pytest.fixture(scope="module")
def params():
  # Jitted init, not the shared eager `tiny_llama` params: the two differ in the
  # embedding's last bit, and this file's numbers were taken with this one.
  p = jax.jit(llama.init_params, static_argnums=0)(CFG, jax.random.PRNGKey(0))
  # Sharper, more varied next-token distributions than the near-uniform init, so
  # the entropy signal spreads over [0, 1] and actually moves decisions.
  p["lm_head"]["kernel"] = p["lm_head"]["kernel"] * 12.0
  return p


@pytest.fixture(scope="module")
def blocks():
  rng = np.random.default_rng(0)
  return jnp.asarray(rng.integers(0, CFG.vocab_size, (B, C + T + 1)), jnp.int32)


# Ts + Tw + 1 = 19, kv_len = C + t + 1: steps 0-2 are not effective, 3-9 are.
ST = ControlSettings(criteria="quest", page_size=4, sink_tokens=16, window_tokens=2)


def replay(params, blocks, actions, space, st):
  """Re-runs executed actions [B, K, T] step by step -> prefill logits/hidden, logits, hidden, nll."""
  logits0, h0, prefix, aux = _prefill(params, CFG, blocks[:, :C], st.criteria, st.page_size)
  suffix = decode.new_suffix(CFG, B, K, T)
  logits, hidden = [], []
  for t in range(T):
    controls = st.for_actions(space, jnp.asarray(actions[:, :, t]))
    lg, h, suffix = _step(params, CFG, blocks[:, C + t], prefix, aux, suffix, controls)
    logits.append(np.asarray(lg, np.float64))
    hidden.append(np.asarray(h, np.float64))
  logits, hidden = np.stack(logits, 2), np.stack(hidden, 2)  # [B, K, T, ...]
  labels = np.asarray(blocks)[:, C + 1 : C + T + 1]
  logp = logits - logits.max(-1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
  nll = -np.take_along_axis(
    logp, np.broadcast_to(labels[:, None, :, None], logp.shape[:3] + (1,)), -1
  )[..., 0]
  return np.asarray(logits0, np.float64), np.asarray(h0, np.float64), logits, hidden, nll


def np_entropy(logits):
  z = logits - logits.max(-1, keepdims=True)
  p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  return -(p * np.log(np.maximum(p, 1e-300))).sum(-1) / np.log(logits.shape[-1])


def np_drift(a, b):
  cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
  return 0.5 * (1.0 - cos)


def signals(kind, params, blocks, rep):
  """Method §12.5 signals [B, K, T] from a replay, independently of the harness."""
  logits0, h0, logits, hidden, _ = rep
  if kind == "emc":  # previous step's distribution; the prefill's last logits at t = 0
    prev = np.concatenate(
      [np.broadcast_to(logits0[:, None, None], (B, K, 1, CFG.vocab_size)), logits[:, :, :-1]],
      axis=2,
    )
    return np_entropy(prev)
  emb = np.asarray(params["embed"]["embedding"], np.float64)
  tok = np.asarray(blocks)
  u0 = np.broadcast_to(np_drift(emb[tok[:, C - 1]], emb[tok[:, C]])[:, None, None], (B, K, 1))
  # h_{-1} is the prefill's last hidden state: h sequence h_{-1}, h_0, ..., h_{T-2}.
  hs = np.concatenate([np.broadcast_to(h0[:, None, None], (B, K, 1, CFG.hidden_size)), hidden], 2)
  return np.concatenate([u0, np_drift(hs[:, :, 1:T], hs[:, :, 0 : T - 1])], axis=2)


def effective_mask(st):
  return C + np.arange(T) + 1 > st.sink_tokens + st.window_tokens + 1


def offline(space, targets, sig, eff):
  acts = heuristic_schedule(
    space,
    jnp.asarray(targets.reshape(B * K, 3), jnp.float32),
    jnp.asarray(sig.reshape(B * K, T), jnp.float32),
    jnp.broadcast_to(jnp.asarray(eff), (B * K, T)),
  )
  return np.asarray(acts).reshape(B, K, T)


def feasible_targets(space, eff, rng):
  """Targets that are means of random grid schedules over the effective steps: reachable."""
  levels = (space.keep_fracs, space.prune_fracs, tuple(b / 16 for b in space.quant_bits))
  n = int(eff.sum())
  return np.stack([rng.choice(lv, (B, K, n)).mean(-1) for lv in levels], -1).astype(np.float32)


def run(params, blocks, provider, inputs, space, st, k=K):
  return run_controlled(
    params,
    blocks,
    inputs,
    cfg=CFG,
    space=space,
    settings=st,
    provider=provider,
    context_len=C,
    horizon=T,
    schedules=k,
  )


@pytest.mark.parametrize("kind", ["emc", "dac"])
def test_provider_matches_offline_schedule(params, blocks, kind):
  # Two-level grid, where every mean of grid values is reachable; the 3-level
  # grid with arbitrary targets is covered by test_mixed_provider_columns.
  space, st = TWO, ST
  eff = effective_mask(st)
  targets = feasible_targets(space, eff, np.random.default_rng(1))
  out = run(params, blocks, HeuristicProvider(kind, space), jnp.asarray(targets), space, st)
  actions = np.asarray(out.actions)
  rep = replay(params, blocks, actions, space, st)
  np.testing.assert_allclose(np.asarray(out.nll), rep[-1], atol=2e-4)
  np.testing.assert_array_equal(np.asarray(out.effective), eff)
  sig = signals(kind, params, blocks, rep)
  assert sig.std() > 0.02, "signals barely vary: the test could not tell signals apart"
  np.testing.assert_array_equal(actions, offline(space, targets, sig, eff))
  # The comparison discriminates: the other heuristic's signal gives other actions.
  other = signals("dac" if kind == "emc" else "emc", params, blocks, rep)
  assert not np.array_equal(actions, offline(space, targets, other, eff))
  assert np.all(actions[:, :, ~eff] == space.forced_dense_index)
  # Feasible targets are met exactly per block over its effective steps.
  a = actions[:, :, eff]
  realized = np.stack([space.kappa[a], space.rho[a], space.eta[a]], -1).mean(2)
  np.testing.assert_allclose(realized, targets, atol=1e-5)


def test_mixed_provider_columns(params, blocks):
  # Heuristics choose on the 3L grid and execute on the FL grid (translated by value),
  # as in the static Pareto experiment; static columns are FL indices.
  st, fl = ST, FL
  eff = effective_mask(st)
  rng = np.random.default_rng(2)
  kind = np.array([STATIC, EMC, DAC, STATIC], np.int32)
  static = rng.integers(0, fl.num_actions, (B, K, T)).astype(np.int32)
  targets = rng.uniform([0.1, 0.4, 0.3125], [1.0, 1.0, 1.0], (B, K, 3)).astype(np.float32)
  to_fl = ev.index_map(THREE, fl)
  provider = MixedProvider(THREE, tuple(int(i) for i in to_fl))
  out = run(
    params,
    blocks,
    provider,
    MixedInputs(jnp.asarray(static), jnp.asarray(targets), jnp.asarray(kind)),
    fl,
    st,
  )
  actions = np.asarray(out.actions)
  rep = replay(params, blocks, actions, fl, st)
  np.testing.assert_allclose(np.asarray(out.nll), rep[-1], atol=2e-4)
  for col in (0, 3):
    want = np.where(eff, static[:, col], fl.forced_dense_index)
    np.testing.assert_array_equal(actions[:, col], want)
  for col, name in ((1, "emc"), (2, "dac")):
    want = to_fl[offline(THREE, targets, signals(name, params, blocks, rep), eff)]
    np.testing.assert_array_equal(actions[:, col], want[:, col], err_msg=name)


def test_bad_inputs(params, blocks):
  with pytest.raises(ValueError, match="kind"):
    HeuristicProvider("entropy", THREE)
  with pytest.raises(ValueError, match=r"\[B, K, 3\]"):
    HeuristicProvider("emc", THREE).init(jnp.zeros((B, K, 2)), B, K, T)


# ----------------------------------------------------------------------------- baselines


def np_realized(space, schedules, eff):
  """Pooled (κ̄, ρ̄, η̄) of [rows, T] schedules over effective steps, straight from the grid."""
  a = schedules[:, eff]
  return space.kappa[a].mean(), space.rho[a].mean(), space.eta[a].mean()


def test_evaluate_plan_columns_and_best_of_n(params):
  rng = np.random.default_rng(3)
  splits = [rng.integers(0, CFG.vocab_size, (2 * B, C + T + 1)).astype(np.int32) for _ in range(2)]
  st, eff = ST, effective_mask(ST)
  budget = (0.45, 0.7, 0.5)
  # Four mixed 3L columns executed on the FL grid: the same compiled harness as
  # test_mixed_provider_columns.
  columns = (
    ev.constant_columns(THREE, [THREE.dense_index])
    + ev.random_columns(THREE, budget, 2)
    + ev.heuristic_columns("emc", [budget], THREE)
  )
  kw = dict(context_len=C, horizon=T, batch_size=B, progress=False)
  results = [ev.evaluate_plan(params, CFG, FL, st, s, columns, **kw) for s in splits]
  res = {r.name: r for r in results[1]}
  assert list(res) == [c.name for c in columns]
  # The dense column is the plain dense decode.
  dense = perplexity.sol_protocol_nll(params, CFG, jnp.asarray(splits[1]), C, T)
  np.testing.assert_allclose(
    res[THREE.tags[THREE.dense_index]].ppl,
    np.exp(np.mean(np.asarray(dense, np.float64))),
    rtol=1e-5,
  )
  # Per-block sums and counts (for the paired bootstrap) reproduce each column's PPL.
  np.testing.assert_allclose(
    res[THREE.tags[THREE.dense_index]].block_nll_sum,
    np.asarray(dense, np.float64).sum(-1),
    rtol=1e-5,
  )
  for r in res.values():
    assert r.block_tokens.tolist() == [T] * (2 * B) and r.tokens == r.block_tokens.sum()
    np.testing.assert_allclose(r.ppl, np.exp(r.block_nll_sum.sum() / r.tokens), rtol=1e-12)
    assert "block_nll_sum" not in r.row()
  # Static columns carry fresh generators, called batch after batch with the effective mask.
  for i in range(2):
    sched = RandomScheduler(THREE, budget, seed=1234 + i)
    want = np.concatenate([sched.next_batch(B, T, eff) for _ in range(2)])
    r = res[columns[1 + i].name]
    np.testing.assert_allclose(
      [r.avg_keep_effective, r.avg_prune_keep, r.avg_quant_ratio],
      np_realized(THREE, want, eff),
      atol=1e-6,
    )
    assert r.tokens == 2 * B * T
  fixed = ev.fixed_columns(THREE, [budget])[0].make()
  assert isinstance(fixed, FixedAllocator) and fixed.targets == budget
  # The EMC column meets its budget per block up to the 3-level grid's reach.
  emc = res[columns[3].name]
  np.testing.assert_allclose(
    [emc.avg_keep_effective, emc.avg_prune_keep, emc.avg_quant_ratio], budget, atol=0.1
  )
  # Best-of-N: select on split 0, report on split 1.
  sel, rep = results[0][1:3], results[1][1:3]
  best = ev.best_of_n(sel, rep)
  i = int(np.argmin([r.ppl for r in sel]))
  assert (best.selected, best.selected_ppl, best.selected_select_ppl) == (i, rep[i].ppl, sel[i].ppl)
  assert best.oracle_ppl == min(r.ppl for r in rep) <= best.selected_ppl
  assert best.trials == 2 and best.max_ppl == max(r.ppl for r in rep)


def test_index_map():
  fl = FL
  m = ev.index_map(THREE, fl)
  np.testing.assert_array_equal(fl.kappa[m], THREE.kappa)
  np.testing.assert_array_equal(fl.rho[m], THREE.rho)
  np.testing.assert_array_equal(fl.bits[m], THREE.bits)
  with pytest.raises(ValueError, match="not in the grid"):
    ev.index_map(fl, THREE)


def test_best_of_n_statistics():
  sel, rep = [3.0, 1.0, 2.0, 5.0], [10.0, 12.0, 9.0, 20.0]
  best = ev.best_of_n(sel, rep)
  assert (best.selected, best.selected_ppl, best.oracle, best.oracle_ppl) == (1, 12.0, 2, 9.0)
  assert best.mean_ppl == pytest.approx(np.mean(rep))
  assert best.median_ppl == pytest.approx(np.median(rep))
  assert (best.min_ppl, best.max_ppl) == (9.0, 20.0)
  with pytest.raises(ValueError, match="same non-zero number"):
    ev.best_of_n([1.0], [1.0, 2.0])
