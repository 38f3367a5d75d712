"""One jitted GRPO train step: rollout of K schedules per input + policy update.

  state, metrics = train_step(state, lm_params, blocks)

1. sample budget targets per input (§9.1);
2. dense prefill, then T teacher-forced controlled steps for B inputs x K
   sampled schedules (the harness episode; K is a vmap over the shared prefix);
3. rewards, rewards-to-go, budget penalty, group-centred and whitened
   advantages (§9.2-9.5);
4. the update: the stored observations are re-scored in sequence mode, in
   minibatches of floor(512/T) rollouts (shuffled), each an optax MultiSteps
   update, so an AdamW step happens every `grad_accum` minibatches (§9.7).

The LM is never differentiated: the rollout produces stored observations only
(stop_gradient on everything read from it) and the loss re-runs only the policy.
Deviation: the buffer is one data batch (B*K*T decisions). For every official
T=16 config that is >= the reference's 2048-decision buffer threshold, so the
schedule of optimizer steps is the same; see BUILD_NOTES.md.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from sol_jax.config import OptimCfg, RLCfg
from sol_jax.efficiency import budget
from sol_jax.efficiency.actions import ActionSpace
from sol_jax.efficiency.controls import ControlSettings
from sol_jax.efficiency.decode import dense_decode_logits, dense_prefill
from sol_jax.evaluation.harness import Episode, controlled_episode
from sol_jax.models.config import ModelConfig
from sol_jax.policy import budget_prior, network
from sol_jax.policy.agent import PolicyAgent, StepRecord
from sol_jax.policy.observation import PolicyObs
from sol_jax.rl import objectives
from sol_jax.rl.optimizer import make_optimizer, stepped, window_grad_norm
from sol_jax.rl.targets import sample_targets


class TrainState(NamedTuple):
  params: dict  # policy params
  opt_state: optax.OptState
  step: jax.Array  # data batches done
  rng: jax.Array


@dataclasses.dataclass(frozen=True)
class TrainSetup:
  """Everything static about a train step (hashable)."""

  model: ModelConfig
  space: ActionSpace
  settings: ControlSettings
  policy: network.PolicyConfig
  rl: RLCfg
  optim: OptimCfg
  context_len: int
  horizon: int

  def optimizer(self) -> optax.GradientTransformation:
    return make_optimizer(self.optim, self.rl.grad_accum)


def init_train_state(setup: TrainSetup, seed: int, budget_head_init: str = "torch") -> TrainState:
  rng, init_key = jax.random.split(jax.random.PRNGKey(seed))
  params = network.init_params(setup.policy, init_key)
  if budget_head_init == "max_entropy":
    params = budget_prior.fit_budget_head(
      setup.policy,
      params,
      budget_prior.usage_features(setup.space),
      lambda key, n: sample_targets(key, setup.rl, n),
      jax.random.fold_in(init_key, 1),
    )
  elif budget_head_init != "torch":
    raise ValueError(f"budget_head_init={budget_head_init!r}; use 'torch' or 'max_entropy'.")
  opt_state = jax.jit(setup.optimizer().init)(params)  # one compile, not one per leaf op
  return TrainState(params, opt_state, jnp.zeros((), jnp.int32), rng)


def rollout(setup: TrainSetup, params, lm_params, blocks, targets, key) -> Episode:
  """Sampled episodes; records are `StepRecord`s [B, K, T, ...], kl is set iff w > 0."""
  b, k = blocks.shape[0], setup.rl.num_rollouts
  reference = None
  if setup.rl.kl_weight > 0:  # only then is the dense reference decode needed (§9.2)
    _, _, prefix, _ = dense_prefill(lm_params, setup.model, blocks[:, : setup.context_len], "none")
    reference = dense_decode_logits(
      lm_params, setup.model, blocks, prefix, setup.context_len, setup.horizon
    )
  inputs = {"params": params, "targets": jnp.broadcast_to(targets[:, None], (b, k, 3)), "rng": key}
  agent = PolicyAgent(setup.policy, setup.space, setup.horizon, greedy=False)
  out = controlled_episode(
    lm_params,
    blocks,
    inputs,
    cfg=setup.model,
    space=setup.space,
    settings=setup.settings,
    provider=agent,
    context_len=setup.context_len,
    horizon=setup.horizon,
    schedules=k,
    reference_logits=reference,
  )
  return jax.tree.map(jax.lax.stop_gradient, out)


def _sequence_obs(records: StepRecord, targets, idx):
  """Rollout sequences `idx` of the flattened [N, T, ...] records as a PolicyObs."""
  take = lambda x: x.reshape((-1,) + x.shape[2:])[idx]
  return PolicyObs(
    hidden=take(records.hidden),
    token_embed=take(records.token_embed),
    scalars=take(records.scalars),
    prev_action=take(records.prev_action),
    targets=take(targets),
  )


def train_step(setup: TrainSetup, state: TrainState, lm_params, blocks):
  b, k, t = blocks.shape[0], setup.rl.num_rollouts, setup.horizon
  rng, target_key, rollout_key, shuffle_key = jax.random.split(state.rng, 4)
  targets = sample_targets(target_key, setup.rl, b)
  out = rollout(setup, state.params, lm_params, blocks, targets, rollout_key)
  rec = out.records
  rewards = objectives.step_rewards(-out.nll, out.kl, setup.rl.kl_weight)
  usage = budget.episode_averages(out.actions, out.effective, setup.space)
  means = jnp.stack(usage, axis=-1)  # [B, K, 3]
  terms = objectives.compute_advantages(rewards, means, targets, setup.rl, setup.space)

  # Minibatches of rollout sequences, shuffled; a partial last one is masked.
  n, m = b * k, setup.rl.minibatch_rollouts(t)
  n_mb = -(-n // m)
  perm = jax.random.permutation(shuffle_key, n)
  perm = jnp.concatenate([perm, jnp.zeros((n_mb * m - n,), perm.dtype)]).reshape(n_mb, m)
  valid = (jnp.arange(n_mb * m) < n).reshape(n_mb, m).astype(jnp.float32)
  flat_targets = jnp.broadcast_to(targets[:, None], (b, k, 3))
  flat = lambda x: x.reshape((n,) + x.shape[2:])
  old_logp, actions, adv = flat(rec.logp), flat(rec.action), flat(terms.advantages)
  effective = flat(jnp.broadcast_to(out.effective, out.actions.shape))
  optimizer = setup.optimizer()
  expected = setup.rl.penalty_mode == "expected"
  if expected:  # constants of the grid and config, used by loss_fn only in this mode
    features = jnp.asarray(budget_prior.usage_features(setup.space))
    alphas = setup.space.penalty_weights(
      setup.rl.alpha_kappa, setup.rl.alpha_rho, setup.rl.alpha_eta
    )

  def loss_fn(params, idx, mask):
    obs = _sequence_obs(rec, flat_targets, idx)
    logits = network.sequence_logits(setup.policy, params, obs)
    logp, entropy = network.log_probs_and_entropy(logits, actions[idx])
    row_mask = mask
    mask = jnp.broadcast_to(mask[:, None], logp.shape)
    loss, aux = objectives.policy_loss(
      logp, old_logp[idx], adv[idx], entropy, setup.rl.ppo_clip, setup.rl.entropy_coef, mask=mask
    )
    if expected:
      pen = objectives.expected_penalty(
        jax.nn.softmax(logits, axis=-1),
        features,
        effective[idx],
        flat_targets.reshape(n, 3)[idx],
        alphas,
        setup.rl.penalty_tolerance,
      )
      pen = jnp.sum(pen * row_mask) / jnp.maximum(jnp.sum(row_mask), 1.0)
      # The sampled penalty enters every step's return, i.e. T decisions per rollout
      # in a mean over decisions, divided by the whitening scale: the same weight here.
      loss = loss + pen / (t * terms.scale)
      aux = dict(aux, expected_penalty=jax.lax.stop_gradient(pen))
    return loss, aux

  def update(carry, xs):
    params, opt_state = carry
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *xs)
    window_norm = window_grad_norm(opt_state, grads)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    emits = stepped(opt_state)
    return (optax.apply_updates(params, updates), opt_state), dict(
      aux,
      loss=loss,
      minibatch_grad_norm=optax.tree.norm(grads),
      step_grad_norm=jnp.where(emits, window_norm, 0.0),
      optimizer_steps=emits.astype(jnp.float32),
    )

  (params, opt_state), mb_metrics = jax.lax.scan(
    update, (state.params, state.opt_state), (perm, valid)
  )
  n_steps = mb_metrics.pop("optimizer_steps").sum()
  step_norms = mb_metrics.pop("step_grad_norm")
  metrics = {k_: v.mean() for k_, v in mb_metrics.items()}
  # Pre-clip norm of the accumulated gradient, averaged over this batch's
  # optimizer steps (0 steps: the loop drops the tag).
  metrics.update(optimizer_steps=n_steps, grad_norm=step_norms.sum() / jnp.maximum(n_steps, 1.0))
  metrics.update(
    reward=rewards.mean(),
    nll=out.nll.mean(),
    penalty=terms.penalty.mean(),
    return_mean=terms.returns.mean(),
    **{f"requested/{a}": targets[:, i].mean() for i, a in enumerate(("kappa", "rho", "eta"))},
    **{f"realized/{a}": means[..., i].mean() for i, a in enumerate(("kappa", "rho", "eta"))},
    **{
      f"gap/{a}": jnp.abs(means[..., i] - targets[:, None, i]).mean()
      for i, a in enumerate(("kappa", "rho", "eta"))
    },
  )
  new_state = TrainState(params, opt_state, state.step + 1, rng)
  return new_state, metrics, out.actions


def make_train_step(setup: TrainSetup, in_shardings=None, out_shardings=None):
  """The jitted step; shardings (optional) for (state, lm_params, blocks) -> (state, metrics, actions)."""
  fn = lambda state, lm_params, blocks: train_step(setup, state, lm_params, blocks)
  kw = {}
  if in_shardings is not None:
    kw.update(in_shardings=in_shardings, out_shardings=out_shardings)
  return jax.jit(fn, donate_argnums=(0,), **kw)
