"""The policy front against every baseline (`evaluation.front`) and the budget knob."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sol_jax import config as config_lib
from sol_jax import evaluation as ev
from sol_jax.efficiency.actions import load_action_variant
from sol_jax.efficiency.controls import ControlSettings
from sol_jax.evaluation import comparison_log, perplexity
from sol_jax.evaluation.constant import ReplaySchedule
from sol_jax.evaluation.fixed import per_step_realized
from sol_jax.evaluation.random_schedules import RandomScheduler
from sol_jax.evaluation.schedule_eval import effective_steps
from sol_jax.models import llama
from tests.tiny_models import TINY_LLAMA as CFG

B, C, T = 2, 16, 10
THREE = load_action_variant("3L").space
ST = ControlSettings(criteria="quest", page_size=4, sink_tokens=4, window_tokens=2)
REQUESTED = ((0.3, 0.6, 0.5), (0.8, 0.9, 0.8))
# The front fixture compiles six harness shapes (~30 s on 2 cores).
front_tests = pytest.mark.integration


@pytest.fixture(scope="module")
def params():
  p = jax.jit(llama.init_params, static_argnums=0)(CFG, jax.random.PRNGKey(0))
  p["lm_head"]["kernel"] = p["lm_head"]["kernel"] * 12.0  # varied next-token distributions
  return p


@pytest.fixture(scope="module")
def front(params):
  rng = np.random.default_rng(5)
  report, select = (
    rng.integers(0, CFG.vocab_size, (n, C + T + 1)).astype(np.int32) for n in (2 * B, B)
  )
  eff = effective_steps(C, T, ST)
  # A stand-in "policy": content-blind random schedules at each requested budget,
  # continuing across batches, so its realized budgets are not the requested ones.
  gens = [RandomScheduler(THREE, r, seed=99 + i) for i, r in enumerate(REQUESTED)]

  def policy_inputs(_, rows):
    return jnp.asarray(np.stack([g.next_batch(rows, T, eff) for g in gens], axis=1))

  out = ev.evaluate_front(
    params,
    CFG,
    THREE,
    ST,
    report,
    select,
    REQUESTED,
    policy_provider=None,
    policy_inputs=policy_inputs,
    trials=3,
    seed=7,
    context_len=C,
    horizon=T,
    batch_size=B,
    noise_batch_size=1,
    progress=False,
  )
  return out, report, select


@front_tests
def test_baselines_match_the_policys_realized_budgets(front, params):
  out, report, _ = front
  assert [p.requested for p in out.points] == list(REQUESTED)
  for p in out.points:
    real = np.asarray(p.realized)
    fixed = [p.fixed.avg_keep_effective, p.fixed.avg_prune_keep, p.fixed.avg_quant_ratio]
    # Fixed and random are matched to the policy's realized, not its requested, budgets.
    np.testing.assert_allclose(fixed, real, atol=0.5 / (2 * B) + 1e-6)
    for r in p.random:
      got = [r.avg_keep_effective, r.avg_prune_keep, r.avg_quant_ratio]
      np.testing.assert_allclose(got, real, atol=0.3)
    assert len(p.random) == len(p.random_select) == p.best.trials == 3
    assert p.best.selected == int(np.argmin([r.ppl for r in p.random_select]))
    assert p.best.oracle == int(np.argmin([r.ppl for r in p.random]))
    for res in (p.policy, p.fixed, p.fixed_step, p.emc, p.dac, *p.random):
      assert res.block_nll_sum.shape == (len(report),)
    # Per-step Fixed meets the policy's realized budgets at every step t, hence overall.
    eff = effective_steps(C, T, ST)
    want = per_step_realized(p.policy.block_actions, THREE, eff)
    got = per_step_realized(p.fixed_step.block_actions, THREE, eff)
    np.testing.assert_allclose(got, want, atol=0.5 / len(report) + 1e-6)
    step_real = [p.fixed_step.avg_keep_effective, p.fixed_step.avg_prune_keep]
    np.testing.assert_allclose(step_real, real[:2], atol=0.5 / len(report) + 1e-6)
    # Shuffled: the policy's own actions, each step's column permuted across blocks.
    shuf, pol = p.shuffled.block_actions, p.policy.block_actions
    for t in range(T):
      np.testing.assert_array_equal(np.sort(shuf[:, t]), np.sort(pol[:, t]))
    assert not np.array_equal(shuf, pol)
    shuf_real = [
      p.shuffled.avg_keep_effective,
      p.shuffled.avg_prune_keep,
      p.shuffled.avg_quant_ratio,
    ]
    np.testing.assert_allclose(shuf_real, real, atol=1e-6)
  dense = perplexity.sol_protocol_nll(params, CFG, jnp.asarray(report), C, T)
  np.testing.assert_allclose(out.dense.ppl, np.exp(np.mean(np.asarray(dense, np.float64))), 1e-5)


@front_tests
def test_noise_replay_runs_the_same_schedule(front):
  out, _, _ = front
  for p in out.points:
    for orig, rep in ((p.policy, p.policy_replay), (p.fixed, p.fixed_replay)):
      np.testing.assert_array_equal(orig.block_actions, rep.block_actions)
      # Another batch layout, the same schedule: only kernel noise may move the NLL.
      np.testing.assert_allclose(rep.block_nll_sum, orig.block_nll_sum, rtol=1e-3)


@front_tests
def test_rows_intervals_and_adherence(front):
  out, _, _ = front
  rows = ev.front_rows(out, resamples=500, seed=0)
  # Every method of the TensorBoard layout, in its order, at every point.
  methods = comparison_log.METHODS
  assert [(r["point"], r["method"]) for r in rows] == [(i, m) for i in (0, 1) for m in methods]
  for r in rows:
    if r["method"] == "policy":
      assert {"noise_pct", "fixed_noise_pct"} <= r.keys()
      pol = r
      continue
    assert r["vs_lo"] <= r["vs"] <= r["vs_hi"]
    np.testing.assert_allclose(r["vs"], 100 * (pol["ppl"] / r["ppl"] - 1), rtol=1e-9)
    if r["method"] == "fixed":
      dense = out.dense.ppl
      np.testing.assert_allclose(r["gap"], (r["ppl"] - pol["ppl"]) / (r["ppl"] - dense), 1e-9)
  best = [r for r in rows if r["method"] == "random_best"]
  assert all(r["trials"] == 3 for r in best)
  adh = ev.adherence(out, THREE)
  for a, name in enumerate(("kappa", "rho", "eta")):
    got = [p.realized[a] for p in out.points]
    miss = np.abs(np.asarray(got) - np.asarray(REQUESTED)[:, a])
    assert adh[name]["realized"] == got
    np.testing.assert_allclose(
      [adh[name]["mean_miss"], adh[name]["max_miss"]], [miss.mean(), miss.max()]
    )


def test_replay_schedule_checks_its_rows():
  acts = np.arange(12, dtype=np.int32).reshape(4, 3)
  r = ReplaySchedule(acts)
  np.testing.assert_array_equal(r.next_batch(3, 3), acts[:3])
  np.testing.assert_array_equal(r.next_batch(1, 3), acts[3:])
  with pytest.raises(ValueError, match="same blocks"):
    r.next_batch(1, 3)


def test_knob_diagonal_and_path():
  lo, hi = ev.diagonal_path(THREE)
  assert lo == (0.1, 0.4, 5 / 16) and hi == (1.0, 1.0, 1.0)
  got = ev.knob_targets([0.0, 0.5, 1.0], THREE)
  np.testing.assert_allclose(got[1], [(a + b) / 2 for a, b in zip(lo, hi)])
  assert got[0] == lo and got[2] == hi
  path = [(0.1, 0.4, 0.3125), (0.6, 1.0, 0.4375), (1.0, 1.0, 1.0)]
  np.testing.assert_allclose(
    ev.knob_targets([0.25, 0.5, 0.75], THREE, path),
    [(0.35, 0.7, 0.375), (0.6, 1.0, 0.4375), (0.8, 1.0, 0.71875)],
  )
  with pytest.raises(ValueError, match=r"in \[0, 1\]"):
    ev.knob_targets([1.2], THREE)
  with pytest.raises(ValueError, match="two"):
    ev.knob_targets([0.5], THREE, [(0.5, 0.5, 0.5)])


def test_knob_from_config():
  cfg = config_lib.load_config("smollm2_3L_cpu")
  assert ev.requested_targets(cfg.eval, THREE) == cfg.eval.budgets
  cfg = config_lib.load_config(
    "smollm2_3L_cpu", ["eval.knob=[0, 1]", "eval.knob_path=[[0.1, 0.4, 5], [1, 1, 16]]"]
  )
  assert ev.requested_targets(cfg.eval, THREE) == ((0.1, 0.4, 0.3125), (1.0, 1.0, 1.0))
  with pytest.raises(ValueError, match="knob"):
    config_lib.load_config("smollm2_3L_cpu", ["eval.knob=[1.5]"])


@front_tests
def test_only_the_asked_baselines_run(params):
  rng = np.random.default_rng(6)
  report = rng.integers(0, CFG.vocab_size, (B, C + T + 1)).astype(np.int32)
  actions = jnp.asarray(rng.integers(0, THREE.num_actions, (B, 1, T)), jnp.int32)
  front = functools.partial(
    ev.evaluate_front,
    params,
    CFG,
    THREE,
    ST,
    report,
    report[:0],
    REQUESTED[:1],
    policy_provider=None,
    policy_inputs=lambda _, rows: actions[:rows],
    trials=3,
    seed=7,
    context_len=C,
    horizon=T,
    batch_size=B,
    progress=False,
  )
  out = front(methods=("fixed",))
  (p,) = out.points
  assert p.fixed is not None and p.emc is p.dac is p.best is p.fixed_step is p.shuffled is None
  assert p.random == []
  rows = ev.front_rows(out, resamples=200)
  assert [r["method"] for r in rows] == ["policy", "fixed", "dense"]
  with pytest.raises(ValueError, match="unknown front methods"):
    front(methods=("fixed", "oracle"))


def test_pool_seeds_sums_blocks_over_seeds():
  rng = np.random.default_rng(0)
  n = 12
  tokens = np.full(n, 16)

  def seed_arrays(shift):
    base = rng.uniform(30, 60, n)
    return {
      "tokens": tokens,
      "dense": base,
      "0/policy": base + 2.0 + shift,
      "0/fixed": base + 4.0,
      "1/policy": base + 1.0,
      "1/fixed": base + 1.5 + shift,
    }

  seeds = [seed_arrays(0.0), seed_arrays(1.0)]
  rows = ev.pool_seeds(seeds, resamples=300)
  assert [(r["point"], r["method"]) for r in rows] == [
    (0, "fixed"),
    (0, "dense"),
    (1, "fixed"),
    (1, "dense"),
  ]
  pol = seeds[0]["0/policy"] + seeds[1]["0/policy"]
  fix = seeds[0]["0/fixed"] + seeds[1]["0/fixed"]
  want = 100 * (np.exp(pol.sum() / (2 * tokens.sum())) / np.exp(fix.sum() / (2 * tokens.sum())) - 1)
  np.testing.assert_allclose(rows[0]["vs"], want, rtol=1e-9)
  assert rows[0]["vs_lo"] <= rows[0]["vs"] <= rows[0]["vs_hi"] and rows[0]["seeds"] == 2
  with pytest.raises(ValueError, match="at least two"):
    ev.pool_seeds(seeds[:1])
  other = dict(seeds[1], tokens=np.full(n, 8))
  with pytest.raises(ValueError, match="same report blocks"):
    ev.pool_seeds([seeds[0], other])
