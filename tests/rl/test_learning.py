"""Honest learning test: on a task whose right schedule is known, GRPO finds it.

The task (κ ∈ {0.1, 1.0} only, ρ = 1, b = 16; C = 32, Quest page 4, T = 4):
a hand-built one-layer Llama whose only job is to copy a *key* token from the
context whenever the input is a *trigger* token.

- Context: random filler tokens, one key token k ∈ {0..7} in one page, and a
  decoy pair (A, B) in another page.
- Episode: triggers at steps {0, 2} or {1, 3} (each pattern half of the
  time, so every step is a trigger with probability 1/2); the token after a
  trigger is k. Other inputs and labels are random fillers.
- Only the trigger embedding makes a query (fillers, keys and decoys give
  q = 0). Dense attention puts ~all weight on k (logit 14 vs 0 for the rest)
  and the LM head predicts k with p ≈ 0.98. Quest at κ = 0.1 keeps one page,
  chosen by the upper bound Σ_d max(q·M, q·m): the key's k is (s, s), the
  decoys' (1.5 s, −10) and (−10, 1.5 s), so the decoy page's per-dimension
  maxima, taken from two different tokens, bound it at 3 s·q against 2 s·q
  for the key page, yet neither decoy is attended. The prediction falls to
  uniform: NLL log 64 ≈ 4.16 instead of 0.02.
- At every other step q = 0, all Quest page bounds tie at 0 and every page
  is kept, so κ = 0.1 is *exactly* dense there (checked below).

So the right schedule at κ* = 0.55 is "dense exactly at the two triggers"
(κ̄ = (2·1.0 + 2·0.1)/4 = 0.55), and any content-blind schedule of that budget,
the budget-matched Fixed baseline included, hits half of the triggers in
expectation. The policy can see triggers: its observation includes the
current token's embedding. Embedding rows are scaled ×4 (the LM is invariant
to that: RMSNorm comes first) so that the trigger feature is not drowned by
the policy's N(0, 1) position and action embeddings; unscaled, pilot runs
learned much more slowly.

Training: `loop.train` for 150 batches of B = 4 inputs × K = 8 rollouts at the
reference's defaults except optim.lr = 1e-3 (10×). Pilot runs: lr 3e-3 collapsed
early onto content-blind schedules; with 1e-4 the policy is still content-blind
after 150 batches and this test fails (PPL ratio 0.77, 70 % agreement). At
1e-3, 8 of 8 training seeds reached ≥ 97 % agreement with the right schedule.
Evaluation: greedy policy vs Fixed at the policy's realized budget, with the
harness, on 64 held-out blocks.

Both penalty modes must pass: the method's "sampled" penalty and the "expected"
one (rl.penalty_mode, BUILD_NOTES session 8). Pilot (40 batches instead of 150,
seeds 0-3, same settings): agreement 0.76 / 0.85 / 0.87 / 0.97 sampled against
0.98 / 0.94 / 0.92 / 0.97 expected -- the expected penalty learns the triggers
sooner; at 150 batches both reach >= 0.99 on seed 0.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sol_jax import config as config_lib
from sol_jax.evaluation.fixed import FixedAllocator
from sol_jax.evaluation.harness import StaticSchedule, run_controlled
from sol_jax.evaluation.schedule_eval import effective_steps, evaluate_columns, static_inputs
from sol_jax.models import llama
from sol_jax.models.config import ModelConfig
from sol_jax.policy.agent import PolicyAgent
from sol_jax.rl import loop

pytestmark = pytest.mark.integration  # 150 train steps: ~1 min of CPU

V, D, DH = 64, 32, 8
C, T, PAGE = 32, 4, 4
NUM_KEYS = 8  # token ids 0..7
TRIG, DECOY_A, DECOY_B = 8, 9, 10
FIRST_FILLER = 11
PATTERNS = ((0, 2), (1, 3))  # trigger steps; every step has P(trigger) = 1/2
TARGET = (0.55, 1.0, 1.0)  # κ* of the right schedule, ρ*, η*
B, K, STEPS, SEED = 4, 8, 150, 0
EVAL_BLOCKS = 64

MODEL = ModelConfig(
  vocab_size=V,
  hidden_size=D,
  intermediate_size=8,
  num_layers=1,
  num_heads=1,
  num_kv_heads=1,
  head_dim=DH,
  rope_theta=1e20,
)  # RoPE angles ~0 on the content dims 2, 3


def _lm_params() -> dict:
  """Residual dims: 0-7 key id, 8 is-key, 9/10 decoy A/B, 11 trigger, 12-19 output id."""
  p = jax.tree.map(
    lambda x: np.zeros(x.shape, np.float32), llama.init_params(MODEL, jax.random.PRNGKey(0))
  )
  emb = p["embed"]["embedding"]
  for j in range(NUM_KEYS):
    emb[j, [j, 8]] = 1.0
  emb[TRIG, 11] = emb[DECOY_A, 9] = emb[DECOY_B, 10] = 1.0
  fill = np.random.default_rng(0).normal(size=(V - FIRST_FILLER, D - 20))
  emb[FIRST_FILLER:, 20:] = fill / np.linalg.norm(fill, axis=1, keepdims=True)
  emb *= 4.0  # a visible policy feature; RMSNorm makes the LM scale-invariant
  for norm in (p["layers"]["attn_norm"], p["layers"]["mlp_norm"], p["final_norm"]):
    norm["scale"][:] = 1.0  # the MLP's weights stay 0: it adds nothing
  # After RMSNorm a one-hot row has norm √D and a key row is 4·(e_j + e_8).
  s, big, unit = 3.5, 10.0, math.sqrt(D)
  attn = p["layers"]["attn"]
  attn["q_proj"]["kernel"][0, 11, 2:4] = 1.0  # trigger: q = √D (1, 1)
  attn["k_proj"]["kernel"][0, 8, 2:4] = s / 4.0  # key: k = (s, s)
  attn["k_proj"]["kernel"][0, 9, 2:4] = np.array([1.5 * s, -big]) / unit  # decoys: high
  attn["k_proj"]["kernel"][0, 10, 2:4] = np.array([-big, 1.5 * s]) / unit  # bound, low q·k
  for j in range(NUM_KEYS):
    attn["v_proj"]["kernel"][0, j, j] = 1.0
    attn["o_proj"]["kernel"][0, j, 12 + j] = 1.0
    p["lm_head"]["kernel"][12 + j, j] = 2.0
  return jax.tree.map(jnp.asarray, p)


def _blocks(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """[n, C+T+1] token blocks and their [n, T] trigger masks."""
  rng = np.random.default_rng(seed)
  blocks = rng.integers(FIRST_FILLER, V, (n, C + T + 1))
  triggers = np.zeros((n, T), bool)
  for i in range(n):
    key_page, decoy_page = rng.choice(C // PAGE, 2, replace=False)
    key = rng.integers(NUM_KEYS)
    blocks[i, key_page * PAGE + rng.integers(PAGE)] = key
    slots = decoy_page * PAGE + rng.choice(PAGE, 2, replace=False)
    blocks[i, slots] = (DECOY_A, DECOY_B)
    for t in PATTERNS[rng.integers(len(PATTERNS))]:
      blocks[i, C + t], blocks[i, C + t + 1] = TRIG, key
      triggers[i, t] = True
  return blocks.astype(np.int32), triggers


def _config(run_dir, penalty_mode: str = "sampled") -> config_lib.ExperimentConfig:
  return config_lib.apply_overrides(
    config_lib.ExperimentConfig(),
    [
      f"data.context_len={C}",
      f"data.horizon={T}",
      "data.train_fraction=1.0",
      "actions.keep_fracs=[0.1,1.0]",
      "actions.struct_prune_choices=[s100]",
      "actions.quant_choices=[q16]",
      f"actions.page_size={PAGE}",
      "policy.d_model=32",
      "policy.num_heads=2",
      "policy.max_len=16",
      f"rl.num_rollouts={K}",
      f"rl.batch_size={B}",
      "rl.grad_accum=1",
      f"rl.minibatch_decisions={B * K * T}",  # one minibatch, one AdamW step per batch
      f"rl.budget_kappa_list=[{TARGET[0]}]",
      f"rl.budget_rho_list=[{TARGET[1]}]",
      f"rl.budget_eta_list=[{TARGET[2]}]",
      "optim.lr=1e-3",
      f"rl.penalty_mode={penalty_mode}",
      f"train.num_steps={STEPS}",
      f"train.seed={SEED}",
      "train.keep_checkpoints=false",
      f"train.run_dir={run_dir}",
    ],
  )


class _Rows:
  """A precomputed [N, T] schedule served batch by batch (a schedule generator)."""

  def __init__(self, actions: np.ndarray):
    self.actions, self.pos = actions, 0

  def next_batch(self, rows: int, steps: int, effective=None) -> np.ndarray:
    out = self.actions[self.pos : self.pos + rows, :steps]
    self.pos += rows
    return out


@pytest.fixture(scope="module", params=["sampled", "expected"])
def result(request, tmp_path_factory):
  lm_params = _lm_params()
  cfg = _config(tmp_path_factory.mktemp("learning"), request.param)
  setup = loop.make_setup(cfg, MODEL)
  # One batch more than trained on: the epoch does not end, so no leftover flush.
  train_blocks, _ = _blocks(B * (STEPS + 1), seed=1)
  state = loop.train(cfg, (MODEL, lm_params), blocks=train_blocks, progress=False, log=False)

  blocks, triggers = _blocks(EVAL_BLOCKS, seed=2)  # held out
  space, settings = setup.space, setup.settings
  sparse, dense = space.lookup(0.1, 1.0, 16), space.lookup(1.0, 1.0, 16)
  kw = dict(context_len=C, horizon=T, batch_size=EVAL_BLOCKS, progress=False)

  agent = PolicyAgent(setup.policy, space, T, greedy=True)
  agent_inputs = lambda _, rows: {
    "params": state.params,
    "rng": jax.random.PRNGKey(0),
    "targets": jnp.broadcast_to(jnp.asarray(TARGET), (rows, 1, 3)),
  }
  (policy,) = evaluate_columns(
    lm_params,
    MODEL,
    space,
    settings,
    blocks,
    names=["policy"],
    batch_inputs=agent_inputs,
    provider=agent,
    **kw,
  )
  # The same call again for the per-step actions (a jit cache hit).
  policy_actions = np.asarray(
    run_controlled(
      lm_params,
      jnp.asarray(blocks),
      agent_inputs(0, EVAL_BLOCKS),
      cfg=MODEL,
      space=space,
      settings=settings,
      provider=agent,
      context_len=C,
      horizon=T,
      schedules=1,
    ).actions
  )[:, 0]

  realized = (policy.avg_keep_effective, policy.avg_prune_keep, policy.avg_quant_ratio)
  oracle = np.where(triggers, dense, sparse).astype(np.int32)
  columns = {
    "fixed": FixedAllocator(space, realized),
    "oracle": _Rows(oracle),
    "dense": _Rows(np.full_like(oracle, dense)),
    "sparse": _Rows(np.full_like(oracle, sparse)),
  }
  results = evaluate_columns(
    lm_params,
    MODEL,
    space,
    settings,
    blocks,
    names=list(columns),
    batch_inputs=static_inputs(list(columns.values()), T, effective_steps(C, T, settings)),
    **kw,
  )
  # Per-step NLL of the constant columns (same shapes as above: a jit cache hit).
  const = np.stack([np.full_like(oracle, dense), np.full_like(oracle, sparse)], axis=1)
  nll = np.asarray(
    run_controlled(
      lm_params,
      jnp.asarray(blocks),
      jnp.asarray(np.concatenate([const, const], 1)),
      cfg=MODEL,
      space=space,
      settings=settings,
      provider=StaticSchedule(),
      context_len=C,
      horizon=T,
      schedules=4,
    ).nll
  )
  return {
    "policy": policy,
    "policy_actions": policy_actions,
    "triggers": triggers,
    "dense_nll": nll[:, 0],
    "sparse_nll": nll[:, 1],
    "dense_action": dense,
    **{r.name: r for r in results},
  }


def test_right_schedule_is_known(result):
  """The construction: κ = 0.1 costs > 4 nats at triggers and exactly 0 elsewhere."""
  trig = result["triggers"]
  gap = result["sparse_nll"] - result["dense_nll"]
  assert gap[trig].min() > 4.0  # log 64 − 0.001
  assert np.abs(gap[~trig]).max() <= 1e-6
  assert result["oracle"].avg_keep_effective == pytest.approx(TARGET[0], abs=1e-6)
  # The oracle recovers the dense PPL at κ̄ = 0.55; uniform κ = 0.1 does not.
  assert result["oracle"].ppl == pytest.approx(result["dense"].ppl, rel=1e-5)
  assert math.log(result["sparse"].ppl / result["dense"].ppl) > 1.9


def test_greedy_policy_found_the_triggers(result):
  chosen_dense = result["policy_actions"] == result["dense_action"]
  agreement = float((chosen_dense == result["triggers"]).mean())
  assert agreement >= 0.85, f"greedy schedule matches the known one on {agreement:.1%} of steps"


def test_policy_beats_budget_matched_fixed(result):
  """At the policy's own realized budget, Fixed (content-blind) hits half the
  triggers; the policy must do clearly better: PPL ratio < 0.75. Reference
  points: a perfect policy gives ≈ 0.35, any content-blind one ≈ 1.0."""
  policy, fixed = result["policy"], result["fixed"]
  # Fixed matches κ̄ up to rounding n_hi = rint(p · 64 rows) per step.
  assert abs(fixed.avg_keep_effective - policy.avg_keep_effective) <= 0.9 / (2 * EVAL_BLOCKS) + 1e-6
  assert fixed.avg_prune_keep == policy.avg_prune_keep == 1.0
  assert fixed.avg_quant_ratio == policy.avg_quant_ratio == 1.0
  # Budget adherence: within the penalty's dead zone of the requested κ*.
  assert abs(policy.avg_keep_effective - TARGET[0]) <= 0.02 + 1e-6
  ratio = policy.ppl / fixed.ppl
  assert ratio < 0.75, (
    f"policy PPL {policy.ppl:.3f} vs Fixed {fixed.ppl:.3f} "
    f"(oracle {result['oracle'].ppl:.3f}) at κ̄ = "
    f"{policy.avg_keep_effective:.4f}"
  )
