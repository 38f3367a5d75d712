"""The SOL compute policy: network (method §8.2/§8.3), observation features (7, 8.1), agent.

- `PolicyConfig` / `PolicyNetwork`: the small causal transformer over the LM's
  hidden state, the token embedding, the previous action and budget scalars;
  `sequence_logits` (training) and `step_logits` over a `PolicyCache` (decode).
- `observation`: the per-step scalars and the running usage tracker.
- `PolicyAgent`: the policy as a harness provider (sampled or greedy), with the
  `StepRecord` the GRPO update re-scores.
"""

from sol_jax.policy import observation
from sol_jax.policy.agent import AgentState, PolicyAgent, StepRecord
from sol_jax.policy.network import (
  PolicyCache,
  PolicyConfig,
  PolicyNetwork,
  count_params,
  init_params,
  init_step_cache,
  log_probs_and_entropy,
  sequence_logits,
  step_logits,
)
from sol_jax.policy.observation import (
  NUM_SCALARS,
  PolicyObs,
  UsageTracker,
  episode_scalars,
  init_tracker,
  step_scalars,
)

__all__ = [
  "AgentState",
  "PolicyAgent",
  "StepRecord",
  "PolicyCache",
  "PolicyConfig",
  "PolicyNetwork",
  "count_params",
  "init_params",
  "init_step_cache",
  "log_probs_and_entropy",
  "sequence_logits",
  "step_logits",
  "NUM_SCALARS",
  "PolicyObs",
  "UsageTracker",
  "episode_scalars",
  "init_tracker",
  "observation",
  "step_scalars",
]
