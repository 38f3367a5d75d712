"""Schedule providers: constant, Fixed (§12.3), Random (§12.4), EMC/DAC (§12.5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sol_jax.efficiency.actions import ActionSpace, load_action_variant
from sol_jax.evaluation.constant import ConstantGenerator, constant_schedule, shuffle_steps
from sol_jax.evaluation.fixed import FixedAllocator, StepFixedAllocator, per_step_realized
from sol_jax.evaluation.heuristics import (
  drift_signal,
  entropy_signal,
  heuristic_schedule,
  heuristic_step,
  init_state,
)
from sol_jax.evaluation.random_schedules import RandomScheduler, random_schedules, trial_seed
from sol_jax.evaluation.schedule_eval import effective_steps, static_inputs

THREE = load_action_variant("3L").space
FL336 = load_action_variant("FL336").space


def values(space, actions):
  """Per-axis level values (κ, ρ, η) of an action array, straight from the grid arrays."""
  actions = np.asarray(actions)
  return (
    space.kappa[actions].astype(float),
    space.rho[actions].astype(float),
    space.eta[actions].astype(float),
  )


def bracket(levels, target):
  """Independent lo/hi: adjacent sorted levels around the clamped target."""
  levels = sorted(levels)
  t = min(max(target, levels[0]), levels[-1])
  lo = max(v for v in levels if v <= t + 1e-9)
  hi = min(v for v in levels if v >= t - 1e-9)
  return t, lo, hi


def axis_values(space):
  return (space.keep_fracs, space.prune_fracs, tuple(b / 16 for b in space.quant_bits))


def test_constant_schedule():
  out = constant_schedule(5, 3, 4, THREE)
  assert out.shape == (3, 4) and out.dtype == np.int32 and np.all(out == 5)
  with pytest.raises(ValueError, match="outside"):
    constant_schedule(27, 3, 4, THREE)


# ----------------------------------------------------------------------------- Fixed


@pytest.mark.parametrize(
  "space,targets",
  [
    (THREE, (0.45, 0.7, 0.5)),
    (THREE, (0.83, 0.93, 0.35)),
    (FL336, (0.52, 0.66, 0.71)),
    (load_action_variant("P-S40S100").space, (1.0, 0.77, 1.0)),
  ],
)
def test_fixed_matches_targets_over_multi_batch_eval(space, targets):
  rows, steps, batches = 16, 16, 4
  alloc = FixedAllocator(space, targets)
  schedules = [alloc.next_batch(rows, steps) for _ in range(batches)]
  kap, rho, eta = values(space, np.concatenate(schedules))
  n_total = rows * steps * batches
  for axis, (realized, target, levels) in enumerate(
    zip((kap, rho, eta), targets, axis_values(space))
  ):
    t, lo, hi = bracket(levels, target)
    assert set(np.unique(realized)) <= {np.float32(lo), np.float32(hi)}
    if axis == 0:
      # Fixed share per step: round(p·R)/R of the rows at hi, so every step is within (hi-lo)/(2R).
      assert np.all(np.abs(realized.mean(axis=0) - t) <= (hi - lo) / (2 * rows) + 1e-6)
    # Prune/quant carry a pooled residual of at most half a level gap.
    bound = (hi - lo) / (2 * rows) if axis == 0 else (hi - lo) / (2 * n_total)
    assert abs(realized.mean() - t) <= bound + 1e-6, (axis, realized.mean(), t, bound)


def test_fixed_token_axis_is_round_robin():
  alloc = FixedAllocator(THREE, (0.45, 1.0, 1.0))
  kap, _, _ = values(THREE, alloc.next_batch(16, 16))
  p = (0.45 - 0.1) / 0.5
  n_hi = round(p * 16)
  assert np.all((kap == np.float32(0.6)).sum(axis=0) == n_hi)
  per_row = (kap == np.float32(0.6)).sum(axis=1)
  assert per_row.max() - per_row.min() <= 1  # rotating offset spreads hi over rows
  # Step 0 starts at offset 0: rows 0..n_hi-1 get hi.
  np.testing.assert_array_equal(kap[:, 0] == np.float32(0.6), np.arange(16) < n_hi)


def test_fixed_on_a_level_is_constant():
  alloc = FixedAllocator(THREE, (0.6, 0.8, 7 / 16))
  out = np.concatenate([alloc.next_batch(8, 16) for _ in range(2)])
  assert np.all(out == THREE.lookup(0.6, 0.8, 7))
  # Out-of-grid targets clamp to the extreme level.
  out = FixedAllocator(THREE, (0.01, 1.3, 0.2)).next_batch(4, 4)
  assert np.all(out == THREE.lookup(0.1, 1.0, 5))


def test_fixed_skips_non_effective_steps():
  eff = np.ones((6, 8), bool)
  eff[:, :2] = False
  eff[3, 2] = False
  alloc = FixedAllocator(THREE, (0.45, 0.7, 0.5))
  out = alloc.next_batch(6, 8, eff)
  assert np.all(out[~eff] == THREE.forced_dense_index)
  _, rho, _ = values(THREE, out)
  assert abs(rho[eff].mean() - 0.7) <= (0.8 - 0.4) / (2 * eff.sum()) + 1e-6
  assert alloc.slots == eff.sum()


def test_static_inputs_pass_the_effective_mask():
  """Stacked generators see which steps may compress (short contexts: C <= Ts+Tw+1)."""
  from sol_jax.efficiency.controls import ControlSettings

  eff = effective_steps(4, 6, ControlSettings(sink_tokens=4, window_tokens=2))
  assert eff.tolist() == [False] * 3 + [True] * 3  # kv_len 5..10 must exceed 4 + 2 + 1
  targets = (0.45, 0.7, 0.5)
  got = np.asarray(
    static_inputs([FixedAllocator(THREE, targets), ConstantGenerator(3)], 6, eff)(0, 5)
  )
  np.testing.assert_array_equal(got[:, 0], FixedAllocator(THREE, targets).next_batch(5, 6, eff))
  assert np.all(got[:, 0, :3] == THREE.forced_dense_index) and np.all(got[:, 1] == 3)


# ----------------------------------------------------------------------------- Random


@pytest.mark.parametrize("space,targets", [(THREE, (0.45, 0.7, 0.5)), (FL336, (0.52, 0.66, 0.71))])
def test_random_counts_exact_per_block(space, targets):
  rows, steps = 12, 16
  out = random_schedules(space, targets, rows, steps, seed=trial_seed(3))
  for axis, (realized, target, levels) in enumerate(
    zip(values(space, out), targets, axis_values(space))
  ):
    t, lo, hi = bracket(levels, target)
    n_hi = round((t - lo) / (hi - lo) * steps) if axis == 0 else round((t - lo) * steps / (hi - lo))
    assert set(np.unique(realized)) <= {np.float32(lo), np.float32(hi)}
    np.testing.assert_array_equal((realized == np.float32(hi)).sum(axis=1), n_hi)


def test_random_seeds_reproduce_and_differ():
  a = random_schedules(FL336, (0.52, 0.66, 0.71), 8, 16, seed=1234)
  b = random_schedules(FL336, (0.52, 0.66, 0.71), 8, 16, seed=1234)
  c = random_schedules(FL336, (0.52, 0.66, 0.71), 8, 16, seed=1235)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  sched = RandomScheduler(FL336, (0.52, 0.66, 0.71), seed=1234)
  np.testing.assert_array_equal(sched.next_batch(8, 16), a)
  assert not np.array_equal(sched.next_batch(8, 16), a)  # the trial's stream continues
  assert trial_seed(0) == 1234 and trial_seed(7) == 1241


def test_random_positions_are_spread_and_respect_effective():
  out = random_schedules(THREE, (0.35, 1.0, 1.0), 4000, 8, seed=0)
  hi_rate = (values(THREE, out)[0] == np.float32(0.6)).mean(axis=0)
  np.testing.assert_allclose(hi_rate, 0.5, atol=0.03)  # n_hi = 4 of 8 at uniform positions
  eff = np.ones((5, 8), bool)
  eff[:, :3] = False
  out = random_schedules(THREE, (0.35, 1.0, 1.0), 5, 8, seed=1, effective=eff)
  assert np.all(out[:, :3] == THREE.forced_dense_index)
  kap = values(THREE, out)[0][:, 3:]
  np.testing.assert_array_equal((kap == np.float32(0.6)).sum(axis=1), round(0.5 * 5))


# ----------------------------------------------------------------------------- EMC / DAC


def reference_block(levels, target, signals, gain=0.35, tol=1e-4):
  """Slow float64 transcription of method §12.5 for one axis of one block."""
  v = sorted(levels)
  steps = len(signals)
  total_sum, chosen = 0.0, []
  for t, u in enumerate(signals):
    left, n_prev = steps - t, t
    need = target * (n_prev + left) - total_sum
    c = min(max(need / left, v[0]), v[-1])
    lo = max(x for x in v if x <= c + tol)
    hi = min(x for x in v if x >= c - tol)
    frac = (c - lo) / (hi - lo) if hi > lo else 0.0
    p = min(max(frac + gain * (u - 0.5), 0.0), 1.0)
    pick = hi if p >= 0.5 else lo
    band_lo, band_hi = need - v[-1] * (left - 1), need - v[0] * (left - 1)
    allowed = [x for x in v if band_lo - tol <= x <= band_hi + tol]
    if pick not in allowed:
      if allowed:
        pick = min(allowed, key=lambda x: abs(x - pick))
      else:
        pick = min(v, key=lambda x: abs(x - min(max(pick, band_lo), band_hi)))
    chosen.append(pick)
    total_sum += pick
  return chosen


@pytest.mark.parametrize("name", ["2L", "3L", "FL336", "P-S40S100"])
def test_heuristic_matches_python_reference(name):
  space = load_action_variant(name).space
  rng = np.random.default_rng(hash(name) % 2**32)
  rows, steps = 6, 16
  levels = axis_values(space)
  targets = np.array(
    [[rng.uniform(min(l) - 0.05, max(l) + 0.05) for l in levels] for _ in range(rows)]
  )
  signals = rng.uniform(0, 1, (rows, steps))
  got = values(
    space,
    heuristic_schedule(space, jnp.asarray(targets, jnp.float32), jnp.asarray(signals, jnp.float32)),
  )
  for axis in range(3):
    for r in range(rows):
      want = reference_block(levels[axis], float(np.float32(targets[r, axis])), signals[r])
      np.testing.assert_allclose(got[axis][r], want, atol=1e-6, err_msg=f"axis {axis} row {r}")


@pytest.mark.parametrize("name", ["2L", "FL336", "Q-Q5Q10"])
def test_heuristic_hits_feasible_targets_exactly(name):
  # Uniformly spaced (or two-level) grids: any mean of T grid values is reachable.
  space = load_action_variant(name).space
  if name == "FL336":  # use the uniform axes only: κ (0.1, 0.4, 0.7, 1.0) and η (q5..q16)
    space = ActionSpace.from_config(
      space.keep_fracs, ["s50", "s60", "s70", "s80", "s90", "s100"], space.quant_choices
    )
  rng = np.random.default_rng(0)
  rows, steps = 8, 16
  levels = axis_values(space)
  # Targets: the mean of a random schedule of grid levels, so each is attainable.
  targets = np.stack([np.mean(rng.choice(l, (rows, steps)), axis=1) for l in levels], axis=1)
  for signal_kind in ("random", "low", "high"):
    signals = {
      "random": rng.uniform(0, 1, (rows, steps)),
      "low": np.zeros((rows, steps)),
      "high": np.ones((rows, steps)),
    }[signal_kind]
    out = heuristic_schedule(
      space, jnp.asarray(targets, jnp.float32), jnp.asarray(signals, jnp.float32)
    )
    for axis, realized in enumerate(values(space, out)):
      np.testing.assert_allclose(
        realized.mean(axis=1), targets[:, axis], atol=1e-5, err_msg=f"{signal_kind} axis {axis}"
      )


def test_feasible_band_clamp_hand_cases():
  step = jax.jit(heuristic_step, static_argnums=3)
  # κ levels {0.1, 0.6, 1.0}, target 0.85 over 2 steps (need 1.7): c = 0.85 brackets
  # 0.6/1.0 at p = 0.625 - 0.175 < 0.5, so the rule picks 0.6, but the band
  # [1.7 - 1.0, 1.7 - 0.1] = [0.7, 1.6] excludes it: the nearest band level is 1.0.
  _, a = step(init_state(1, 2), jnp.zeros(1), jnp.array([0.85, 1.0, 1.0]), THREE)
  assert float(THREE.kappa[int(a[0])]) == pytest.approx(1.0)
  _, a = step(init_state(1, 2), jnp.ones(1), jnp.array([0.85, 1.0, 1.0]), THREE)
  assert float(THREE.kappa[int(a[0])]) == pytest.approx(1.0)  # high signal picks hi anyway
  # Last step, need 0.4: the band {0.4} holds no level; the rule picks 0.1
  # (p = 0.6 - 0.175) and the clamp moves to the level nearest the band, 0.6.
  _, a = step(init_state(1, 1), jnp.zeros(1), jnp.array([0.4, 1.0, 1.0]), THREE)
  assert float(THREE.kappa[int(a[0])]) == pytest.approx(0.6)


def test_heuristic_step_in_scan_with_non_effective_steps():
  space = THREE
  eff = np.ones((3, 10), bool)
  eff[:, :2] = False
  out = np.asarray(
    heuristic_schedule(
      space, jnp.array([0.6, 0.8, 0.5]), jnp.full((3, 10), 0.5), effective=jnp.asarray(eff)
    )
  )
  assert np.all(out[:, :2] == space.forced_dense_index)
  _, rho, eta = values(space, out[:, 2:])
  np.testing.assert_allclose(rho.mean(axis=1), 0.8, atol=1e-6)  # on a level: constant
  state = init_state(3, 8)
  step = jax.jit(heuristic_step, static_argnums=3)
  state, action = step(
    state, jnp.zeros(3), jnp.array([0.6, 0.8, 0.5]), space, effective=jnp.array([True, False, True])
  )
  np.testing.assert_array_equal(state.count, [1, 0, 1])
  assert int(action[1]) == space.forced_dense_index


def test_signals_against_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(4, 11)) * 3
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  ent = -(p * np.log(p)).sum(-1) / np.log(11)
  np.testing.assert_allclose(entropy_signal(jnp.asarray(logits)), ent, rtol=1e-5)
  top = np.sort(p, -1)[:, ::-1]
  mixed = 0.3 * ent + 0.7 * (1 - (top[:, 0] - top[:, 1]))
  np.testing.assert_allclose(entropy_signal(jnp.asarray(logits), mix=0.3), mixed, rtol=1e-5)
  np.testing.assert_allclose(entropy_signal(jnp.zeros((2, 7))), 1.0, rtol=1e-6)
  a, b = rng.normal(size=(5, 9)), rng.normal(size=(5, 9))
  cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
  np.testing.assert_allclose(
    drift_signal(jnp.asarray(a), jnp.asarray(b)), 0.5 * (1 - cos), rtol=1e-5
  )
  np.testing.assert_allclose(drift_signal(jnp.asarray(a), jnp.asarray(a)), 0.0, atol=1e-6)
  np.testing.assert_allclose(drift_signal(jnp.asarray(a), jnp.asarray(-a)), 1.0, atol=1e-6)


def test_bad_targets():
  with pytest.raises(ValueError, match="three finite"):
    FixedAllocator(THREE, (0.5, 0.5))
  with pytest.raises(ValueError, match="three finite"):
    RandomScheduler(THREE, (0.5, float("nan"), 0.5), seed=0)


def test_per_step_realized_by_hand():
  k10, k60, dense = (THREE.lookup(k, 1.0, 16) for k in (0.1, 0.6, 1.0))
  q5 = THREE.lookup(1.0, 0.4, 5)
  acts = np.array([[k10, q5, dense], [k60, dense, dense]])
  got = per_step_realized(acts, THREE)
  np.testing.assert_allclose(got[0], [0.35, 1.0, 1.0])
  np.testing.assert_allclose(got[1], [1.0, 0.7, (5 / 16 + 1) / 2])
  np.testing.assert_allclose(got[2], [1.0, 1.0, 1.0])
  # Only effective slots count; a step with none gets the forced-dense levels.
  eff = np.array([[True, False, False], [False, True, False]])
  got = per_step_realized(acts, THREE, eff)
  np.testing.assert_allclose(got[:, 0], [0.1, 1.0, 1.0])
  np.testing.assert_allclose(got[1], [1.0, 1.0, 1.0])
  with pytest.raises(ValueError, match="blocks, T"):
    per_step_realized(acts[0], THREE)


def test_step_fixed_matches_every_step_and_rotates_rows():
  profile = np.array([[1.0, 1.0, 1.0], [0.35, 0.6, 0.5], [0.1, 0.4, 5 / 16]])
  alloc = StepFixedAllocator(THREE, profile)
  out = np.concatenate([alloc.next_batch(8, 3) for _ in range(3)])  # 24 rows
  got = per_step_realized(out, THREE)
  np.testing.assert_allclose(got, profile, atol=0.5 / 24 + 1e-9)
  # Step t uses the round-robin offsets of step t, like Fixed over a whole episode.
  same = FixedAllocator(THREE, profile[1]).next_batch(8, 1, first_step=1)
  np.testing.assert_array_equal(StepFixedAllocator(THREE, profile).next_batch(8, 3)[:, 1:2], same)
  with pytest.raises(ValueError, match="3 steps"):
    alloc.next_batch(8, 4)


def test_shuffle_steps_permutes_each_step_across_blocks():
  actions = np.arange(40, dtype=np.int32).reshape(8, 5)  # every entry distinct
  out = shuffle_steps(actions, seed=3)
  for t in range(5):
    assert sorted(out[:, t]) == sorted(actions[:, t])  # the step's mix, exactly
  assert not np.array_equal(out, actions)
  # Steps get their own permutations: rows are not moved whole.
  moved = [np.argsort(out[:, t]) for t in range(5)]
  assert any(not np.array_equal(moved[0], m) for m in moved[1:])
  np.testing.assert_array_equal(shuffle_steps(actions, seed=3), out)  # deterministic
