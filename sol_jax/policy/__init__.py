"""The SOL compute policy: network (spec 8.2/8.3) and observation features (7, 8.1)."""
from sol_jax.policy.network import (
    PolicyCache, PolicyConfig, PolicyNetwork, count_params, init_params,
    init_step_cache, log_probs_and_entropy, sequence_logits, step_logits)
from sol_jax.policy.observation import (
    NUM_SCALARS, PolicyObs, UsageTracker, episode_means, episode_scalars,
    init_tracker, running_means, step_scalars, update)
