"""Typed experiment configs: frozen dataclasses, YAML files, key=value overrides.

- `sections`: the config sections (model, data, actions, policy, rl, optim,
  train, mesh) with the reference's defaults and their range checks;
  `script_sections`: those the experiment scripts read (eval, sweep, front,
  generate, mc, bench).
- `loading`: YAML files with `base:` inheritance and action variants,
  `section.field=value` overrides, and the config back out as dict/YAML.

The reference's inert keys (method §15) are NOT present: always GRPO, one epoch,
one pass per buffer, no reference-policy KL, no value loss, no dropout, no eval
logit biases. Its inert `horizon` is not our `data.horizon`, which is its
`rollout_len` (T).
"""

from sol_jax.config.loading import (
  ACTIONS_DIR,
  CONFIG_DIR,
  apply_overrides,
  config_from_argv,
  config_from_dict,
  config_to_dict,
  config_to_flat_dict,
  config_to_yaml,
  load_config,
  parse_overrides,
  resolve_config_path,
)
from sol_jax.config.script_sections import (
  AllocationCfg,
  BenchCfg,
  EvalCfg,
  FrontCfg,
  GenerateCfg,
  LmEvalCfg,
  McCfg,
  PollutionCfg,
  QualityCfg,
  SweepCfg,
)
from sol_jax.config.sections import (
  ActionsCfg,
  DataCfg,
  ExperimentConfig,
  MeshCfg,
  ModelCfg,
  OptimCfg,
  PolicyCfg,
  RLCfg,
  TrainCfg,
  validate_mesh,
)

__all__ = [
  # loading and writing configs
  "ACTIONS_DIR",
  "CONFIG_DIR",
  "apply_overrides",
  "config_from_argv",
  "config_from_dict",
  "config_to_dict",
  "config_to_flat_dict",
  "config_to_yaml",
  "load_config",
  "parse_overrides",
  "resolve_config_path",
  # the sections
  "ActionsCfg",
  "BenchCfg",
  "DataCfg",
  "EvalCfg",
  "ExperimentConfig",
  "MeshCfg",
  "ModelCfg",
  "OptimCfg",
  "PolicyCfg",
  "RLCfg",
  "SweepCfg",
  "FrontCfg",
  "GenerateCfg",
  "LmEvalCfg",
  "McCfg",
  "PollutionCfg",
  "QualityCfg",
  "AllocationCfg",
  "TrainCfg",
  "validate_mesh",
]
