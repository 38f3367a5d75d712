"""Whether a shipped policy fits an evaluation's LM and action grid, and its eval config."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Optional, Sequence

from sol_jax import config as config_lib
from sol_jax.config import ExperimentConfig
from sol_jax.models.config import ModelConfig
from sol_jax.rl import run_config
from sol_jax.rl.checkpointing import Checkpoints
from sol_jax.rl.loop import action_space, make_setup
from sol_jax.rl.policy_files import ShippedPolicy, load_policy
from sol_jax.rl.run_config import run_directory
from sol_jax.rl.train_step import init_train_state


def _grid(cfg: ExperimentConfig) -> str:
  s = action_space(cfg)
  return (
    f"{cfg.actions.variant or 'custom'} grid ({s.num_actions} actions: keep {list(s.keep_fracs)}, "
    f"prune {list(s.prune_fracs)}, bits {list(s.quant_bits)})"
  )


def check_compatible(shipped: ShippedPolicy, cfg: ExperimentConfig, model_cfg: ModelConfig) -> None:
  """One ValueError naming both sides when `cfg`'s grid or LM width or policy keys differ."""
  name, trained = shipped.label, shipped.policy
  problems = []
  if action_space(cfg) != action_space(shipped.config):
    variant = shipped.config.actions.variant
    problems.append(
      f"it was trained on the {_grid(shipped.config)} but this config's grid is the "
      f"{_grid(cfg)}; evaluate with "
      + (f"actions.variant={variant}" if variant else "the policy's actions lists")
      + " or another policy"
    )
  if (trained.obs_hidden_dim, trained.embed_dim) != (model_cfg.hidden_size,) * 2:
    problems.append(
      f"it was trained on an LM of width {trained.obs_hidden_dim} "
      f"(model.source={shipped.config.model.source}), this model ({cfg.model.source}) has "
      f"{model_cfg.hidden_size}"
    )
  else:  # the grid and width match: any other difference is a changed policy.* key
    now = make_setup(cfg, model_cfg).policy
    problems += [
      f"policy.{f.name} is {getattr(now, f.name)!r}, trained with {getattr(trained, f.name)!r}"
      for f in dataclasses.fields(now)
      if f.name != "num_actions" and getattr(now, f.name) != getattr(trained, f.name)
    ]
  if problems:
    raise ValueError(f"policy {name} does not fit this evaluation: " + "; ".join(problems) + ".")


def evaluation_config(argv: Sequence[str], default: Optional[str] = None) -> ExperimentConfig:
  """Like `run_config.evaluation_config`, but with `eval.policy` set: that policy's
  saved config with argv's key=value overrides on top (argv's CONFIG is not read)."""
  cfg = config_lib.config_from_argv(argv, default=default)
  if cfg.eval.policy is None:
    return run_config.evaluation_config(argv, default=default)
  saved = load_policy(cfg.eval.policy).config
  overrides = list(argv[1:] if argv and "=" not in argv[0] else argv)
  merged = config_lib.apply_overrides(saved, overrides)
  # eval.policy may come from the CONFIG file rather than an override.
  return dataclasses.replace(merged, eval=dataclasses.replace(merged.eval, policy=cfg.eval.policy))


def trained_policy(cfg: ExperimentConfig, model_cfg: ModelConfig):
  """(policy params, data batches trained, a results folder) for an evaluation script.

  With `eval.policy`, the shipped policy (checked against this config's grid and
  LM; results under runs/shipped/<name>); else `train.run_dir`'s latest checkpoint,
  or its `eval.checkpoint_step` (results inside the run dir).
  """
  if cfg.eval.policy is not None and cfg.eval.checkpoint_step is not None:
    raise ValueError(
      "eval.checkpoint_step selects a checkpoint of train.run_dir; a shipped policy "
      f"(eval.policy={cfg.eval.policy}) has one set of params: drop one of the two."
    )
  if cfg.eval.policy is not None:
    shipped = load_policy(cfg.eval.policy)
    check_compatible(shipped, cfg, model_cfg)
    folder = pathlib.Path("runs") / "shipped" / shipped.label.strip("/").replace("/", "_")
    return shipped.params, shipped.provenance["step"], folder
  run_dir = run_directory(cfg)
  ckpt = Checkpoints(run_dir)
  step = ckpt.latest_step()
  if step is None:
    raise FileNotFoundError(
      f"no checkpoint in {ckpt.directory}; train first "
      f"(python -m experiments.train {cfg.name}), set train.run_dir or eval.policy."
    )
  if cfg.eval.checkpoint_step is not None:
    steps = ckpt.all_steps()
    if cfg.eval.checkpoint_step not in steps:
      raise FileNotFoundError(
        f"eval.checkpoint_step={cfg.eval.checkpoint_step} is not in {ckpt.directory}; "
        f"it holds steps {steps}."
      )
    step = cfg.eval.checkpoint_step
  state = ckpt.restore(step, init_train_state(make_setup(cfg, model_cfg), cfg.train.seed))
  return state.params, step, run_dir
