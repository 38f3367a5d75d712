"""GRPO training of the policy (method §9-§10).

- `train(cfg, lm, tokenizer)`: the whole loop (grain data, sharded jitted
  step, orbax resume, TensorBoard); `make_setup` builds the `TrainSetup` it runs.
- `train_step`: the rollout over K counterfactual schedules and the update;
  `objectives`: rewards, budget penalty, group advantages, clipped loss.
- `Checkpoints`: orbax checkpoints of the `TrainState` and the data iterator;
  `run_config`: the config a run directory remembers.
- `export_policy` / `load_policy` / `check_compatible`: shipped policies (params
  + config + provenance in a folder, e.g. policies/<name>/seed1), no run dir needed.
"""

from sol_jax.rl import objectives, run_config
from sol_jax.rl.checkpointing import Checkpoints
from sol_jax.rl.loop import action_space, make_setup, train, train_dataset
from sol_jax.rl.optimizer import make_optimizer
from sol_jax.rl.policy_compat import check_compatible, trained_policy
from sol_jax.rl.policy_export import export_policy
from sol_jax.rl.policy_files import ShippedPolicy, load_policy, policies_dir
from sol_jax.rl.run_config import evaluation_config, load_run_config, run_directory
from sol_jax.rl.targets import sample_targets
from sol_jax.rl.train_step import TrainSetup, TrainState, init_train_state, make_train_step, rollout

__all__ = [
  "train",
  "make_setup",
  "action_space",
  "train_dataset",
  "run_directory",
  "TrainSetup",
  "TrainState",
  "init_train_state",
  "make_train_step",
  "rollout",
  "Checkpoints",
  "evaluation_config",
  "load_run_config",
  "run_config",
  "make_optimizer",
  "objectives",
  "sample_targets",
  "ShippedPolicy",
  "check_compatible",
  "trained_policy",
  "export_policy",
  "load_policy",
  "policies_dir",
]
