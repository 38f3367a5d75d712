"""The policy as a schedule provider for the evaluation harness and the RL rollout.

Implements the harness protocol (init / act / observe / record) over B*K rows.
inputs = {"params": policy params, "targets": [B, K, 3], "rng": PRNG key}.
Sampling mode draws from the tempered policy with a fresh key split per step
(training rollouts); greedy mode takes the argmax (evaluation, method §8.3).
The previous action fed back is the *executed* one (dense when forced, §14.11).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from sol_jax.efficiency.actions import ActionSpace
from sol_jax.policy import network, observation
from sol_jax.policy.observation import PolicyObs


class AgentState(NamedTuple):
  cache: network.PolicyCache
  tracker: observation.UsageTracker
  prev_action: jax.Array  # [B*K] executed action of the previous step (BOS at t=0)
  rng: jax.Array
  last_obs: PolicyObs  # the observation of the latest decision
  last_logp: jax.Array  # [B*K] tempered log-prob of the latest sampled action


class StepRecord(NamedTuple):
  """One decision as the update re-scores it; leaves [B, K, ...] (stacked: [B, K, T, ...])."""

  hidden: jax.Array
  token_embed: jax.Array
  scalars: jax.Array
  prev_action: jax.Array
  action: jax.Array  # the sampled action (before forcing dense)
  logp: jax.Array  # its tempered log-prob under the rollout policy


@dataclasses.dataclass(frozen=True)
class PolicyAgent:
  cfg: network.PolicyConfig
  space: ActionSpace
  horizon: int
  greedy: bool = False
  needs_entropy = False
  needs_drift = False

  def init(self, inputs, batch, schedules, horizon):
    rows = batch * schedules
    z = lambda *shape: jnp.zeros((rows,) + shape, jnp.float32)
    obs = PolicyObs(
      z(self.cfg.obs_hidden_dim),
      z(self.cfg.embed_dim),
      z(observation.NUM_SCALARS),
      jnp.zeros((rows,), jnp.int32),
      z(3),
    )
    return AgentState(
      network.init_step_cache(self.cfg, rows, horizon),
      observation.init_tracker(rows),
      jnp.full((rows,), self.cfg.bos_action, jnp.int32),
      inputs["rng"],
      obs,
      z(),
    )

  def observation(self, inputs, state: AgentState, ctx) -> PolicyObs:
    b, k, d = ctx.hidden.shape
    targets = inputs["targets"].reshape(b * k, 3)
    scalars = observation.step_scalars(
      ctx.t, self.horizon, jnp.broadcast_to(ctx.effective, (b * k,)), targets, state.tracker
    )
    embed = jnp.broadcast_to(ctx.token_embed[:, None], (b, k, ctx.token_embed.shape[-1]))
    return PolicyObs(
      hidden=jax.lax.stop_gradient(ctx.hidden.reshape(b * k, d)),
      token_embed=jax.lax.stop_gradient(embed.reshape(b * k, -1)),
      scalars=scalars,
      prev_action=state.prev_action,
      targets=targets,
    )

  def act(self, inputs, state: AgentState, ctx):
    b, k, _ = ctx.hidden.shape
    obs = self.observation(inputs, state, ctx)
    logits, cache = network.step_logits(self.cfg, inputs["params"], state.cache, obs, ctx.t)
    rng, key = jax.random.split(state.rng)
    if self.greedy:
      action = jnp.argmax(logits, axis=-1)
    else:
      action = jax.random.categorical(key, logits, axis=-1)
    logp, _ = network.log_probs_and_entropy(logits, action)
    state = state._replace(cache=cache, rng=rng, last_obs=obs, last_logp=logp)
    return action.astype(jnp.int32).reshape(b, k), state

  def record(self, inputs, state: AgentState, ctx, chosen) -> StepRecord:
    """What the update needs: the observation, the sampled action, its old log-prob."""
    b, k = chosen.shape
    unflat = lambda x: x.reshape((b, k) + x.shape[1:])
    obs = state.last_obs
    return StepRecord(
      hidden=unflat(obs.hidden),
      token_embed=unflat(obs.token_embed),
      scalars=unflat(obs.scalars),
      prev_action=unflat(obs.prev_action),
      action=chosen,
      logp=unflat(state.last_logp),
    )

  def observe(self, inputs, state: AgentState, ctx, executed):
    flat = executed.reshape(-1)
    s = self.space
    tracker = observation.update(
      state.tracker,
      jnp.asarray(s.kappa)[flat],
      jnp.asarray(s.rho)[flat] / s.rho_max,
      jnp.asarray(s.eta)[flat],
      jnp.broadcast_to(ctx.effective, flat.shape),
    )
    return state._replace(tracker=tracker, prev_action=flat.astype(jnp.int32))
