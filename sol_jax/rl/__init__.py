"""GRPO training of the policy (method §9-§10).

- `train(cfg, lm, tokenizer)`: the whole loop (grain data, sharded jitted
  step, orbax resume, TensorBoard); `make_setup` builds the `TrainSetup` it runs.
- `train_step`: the rollout over K counterfactual schedules and the update;
  `objectives`: rewards, budget penalty, group advantages, clipped loss.
- `Checkpoints`: orbax checkpoints of the `TrainState` and the data iterator;
  `run_config`: the config a run directory remembers.
"""

from sol_jax.rl import objectives, run_config
from sol_jax.rl.checkpointing import Checkpoints
from sol_jax.rl.loop import action_space, make_setup, train, train_dataset
from sol_jax.rl.optimizer import make_optimizer
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
]
