"""Configs from YAML files and `section.field=value` overrides, and back.

A YAML file may name parents with `base: other.yaml` (or a list, or
`defaults: [...]`), relative to itself; parents merge first, field by field,
and lists replace. `actions.variant: 3L` expands sol_jax/configs/actions/
3L.yaml into the layer that names it; that layer's own `actions.*` keys win.

Overrides are parsed with `yaml.safe_load` (`rl.num_rollouts=32`,
`actions.keep_fracs=[0.1,1.0]`). Unknown keys, wrong types and out-of-range
values raise one ValueError saying what is valid.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import pathlib
from typing import Any, Mapping, Optional, Sequence

import yaml

from sol_jax.config.sections import ExperimentConfig
from sol_jax.efficiency.actions import VARIANT_DIR as ACTIONS_DIR
from sol_jax.efficiency.actions import read_variant

# Shipped with the package (found from a non-editable install too).
CONFIG_DIR = pathlib.Path(str(importlib.resources.files("sol_jax") / "configs"))

# Reference keys (method §15) that this package deliberately does not have.
_INERT = frozenset(
  (
    "probe_metric future_mask_rule eps_rel eps_acc margin_soft_tau "
    "score_soft_tau algo grpo_quality_topq tr_kl_coef value_coef gamma "
    "gae_lambda ppo_epochs epochs policy_tbptt_k enable_prune_quant "
    "dataset_pct max_blocks eval_every_updates relevancy_tier kl_pi_ref_coef "
    "dropout"
  ).split()
)
# Reference spellings a researcher may type, mapped to our keys.
_ALIASES = {
  "rollout_len": "data.horizon",
  "horizon": "data.horizon",
  "pi_temperature": "policy.temperature",
  "ppo_minibatch_size": "rl.minibatch_decisions",
  "ppo_target_batch_size": (
    "not a setting here: the RL buffer is always one data batch "
    "of B*K*T decisions (docs/method.md §9.7)"
  ),
  "C_target": "rl.budget_kappa_default",
  "C_target_prune": "rl.budget_rho_default",
  "C_target_quant_bits": "rl.budget_eta_default (as bits/16)",
}

_SECTIONS = {
  f.name: f.default_factory
  for f in dataclasses.fields(ExperimentConfig)
  if f.default_factory is not dataclasses.MISSING
}


def _unknown_key(key: str, valid: Sequence[str], where: str) -> ValueError:
  if key in _INERT:
    why = (
      f"{key!r} is an inert key of the reference implementation "
      "(docs/method.md §15) and is not supported by sol_jax"
    )
  elif key in _ALIASES:
    why = f"unknown key {key!r}; the reference's {key} is {_ALIASES[key]}"
  else:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    why = f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
  return ValueError(f"config {where}: {why}. Valid keys: {', '.join(valid)}")


def config_from_dict(raw: Mapping[str, Any]) -> ExperimentConfig:
  """Builds and validates a config from a nested mapping (no `base` keys)."""
  if not isinstance(raw, Mapping):
    raise ValueError(f"config must be a mapping of sections, got {raw!r}")
  raw = _expand_variant(raw)
  top = [f.name for f in dataclasses.fields(ExperimentConfig)]
  kwargs = {}
  for key, value in raw.items():
    if key not in top:
      raise _unknown_key(str(key), top, "top level")
    cls = _SECTIONS.get(key)
    if cls is None:
      kwargs[key] = value
      continue
    value = {} if value is None else value
    if not isinstance(value, Mapping):
      raise ValueError(f"config section {key!r} must be a mapping, got {value!r}")
    valid = [f.name for f in dataclasses.fields(cls)]
    for k in value:
      if k not in valid:
        raise _unknown_key(str(k), valid, f"section {key!r}")
    kwargs[key] = cls(**value)
  return ExperimentConfig(**kwargs)


def config_to_dict(cfg: Any) -> Any:
  """Plain nested dict (tuples become lists) that `config_from_dict` accepts."""
  if dataclasses.is_dataclass(cfg):
    return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
  if isinstance(cfg, (list, tuple)):
    return [config_to_dict(x) for x in cfg]
  return cfg


class _Dumper(yaml.SafeDumper):
  """Block-style sections with flow-style (one-line) lists."""


_Dumper.add_representer(
  list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True)
)


def config_to_yaml(cfg: ExperimentConfig) -> str:
  """The resolved config as YAML (log it as TensorBoard text; it reloads equal)."""
  return yaml.dump(config_to_dict(cfg), Dumper=_Dumper, sort_keys=False, width=100)


def config_to_flat_dict(cfg: ExperimentConfig) -> dict[str, Any]:
  """`section.field -> scalar` (lists as strings), e.g. for TensorBoard hparams."""
  flat = {}
  for key, value in config_to_dict(cfg).items():
    items = value.items() if isinstance(value, dict) else [(None, value)]
    for field, v in items:
      name = f"{key}.{field}" if field else key
      flat[name] = str(v) if isinstance(v, list) or v is None else v
  return flat


def _read_yaml(path: pathlib.Path) -> dict:
  try:
    data = yaml.safe_load(path.read_text())
  except yaml.YAMLError as e:
    raise ValueError(f"config file {path} is not valid YAML: {e}") from None
  if data is None:
    return {}
  if not isinstance(data, dict):
    raise ValueError(f"config file {path} must hold a mapping, got {type(data).__name__}")
  return data


def _merge(base: Mapping, top: Mapping) -> dict:
  """Two-level merge: sections merge field by field, everything else replaces."""
  out = dict(base)
  for k, v in top.items():
    if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
      out[k] = {**out[k], **v}
    else:
      out[k] = v
  return out


def _expand_variant(layer: Mapping) -> Mapping:
  """Fills `actions` from its named variant file; the layer's own keys win.

  The file is parsed and validated by `efficiency.actions.read_variant`.
  """
  actions = layer.get("actions")
  if not isinstance(actions, Mapping) or actions.get("variant") is None:
    return layer
  name = str(actions["variant"])
  try:
    grid = read_variant(name, ACTIONS_DIR)
  except FileNotFoundError as e:
    raise FileNotFoundError(
      f"config actions.variant={name!r}: {e}; or give the lists explicitly."
    ) from None
  except ValueError as e:
    raise ValueError(f"config actions.variant={name!r}: {e}") from None
  return {**layer, "actions": {**grid, **actions}}


def resolve_config_path(path: str | pathlib.Path) -> pathlib.Path:
  """An existing file, or a name under sol_jax/configs (`.yaml` optional)."""
  p = pathlib.Path(path)
  for cand in (p, CONFIG_DIR / p, CONFIG_DIR / f"{p}.yaml"):
    if cand.is_file():
      return cand
  have = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
  raise FileNotFoundError(
    f"config file {path} not found. Pass a YAML path or one of: {', '.join(have)}"
  )


def _load_layers(path: pathlib.Path, chain: tuple[pathlib.Path, ...]) -> dict:
  path = path.resolve()
  if path in chain:
    raise ValueError("config inheritance cycle: " + " -> ".join(str(p) for p in chain + (path,)))
  raw = _read_yaml(path)
  parents = []
  for key in ("base", "defaults"):
    v = raw.pop(key, None)
    parents += [v] if isinstance(v, str) else list(v or [])
  merged: dict = {}
  for parent in parents:
    p = pathlib.Path(str(parent))
    p = p if p.is_absolute() else path.parent / p
    if not p.is_file() and p.with_suffix(".yaml").is_file():
      p = p.with_suffix(".yaml")
    if not p.is_file():
      raise FileNotFoundError(f"config {path}: base file {parent!r} not found (looked at {p})")
    merged = _merge(merged, _load_layers(p, chain + (path,)))
  return _merge(merged, _expand_variant(raw))


def parse_overrides(overrides: Sequence[str]) -> dict:
  """`['rl.num_rollouts=32', ...]` -> a nested dict layer (values via YAML)."""
  layer: dict = {}
  for item in overrides:
    key, sep, text = item.lstrip("-").partition("=")
    key = key.strip()
    if not sep or not key:
      raise ValueError(
        f"override {item!r} must look like section.field=value, e.g. rl.num_rollouts=16"
      )
    try:
      value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
      raise ValueError(f"override {item!r}: value is not valid YAML: {e}") from None
    parts = key.split(".")
    if len(parts) > 2:
      raise ValueError(f"override {item!r}: keys have at most two levels, section.field")
    layer = _merge(layer, {key: value} if len(parts) == 1 else {parts[0]: {parts[1]: value}})
  return layer


def apply_overrides(cfg: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
  """Returns `cfg` with `section.field=value` overrides applied and validated."""
  layer = _expand_variant(parse_overrides(overrides))
  return config_from_dict(_merge(config_to_dict(cfg), layer))


def load_config(path: str | pathlib.Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
  """Loads a YAML config with its bases, applies overrides, validates."""
  merged = _load_layers(resolve_config_path(path), ())
  merged = _merge(merged, _expand_variant(parse_overrides(overrides)))
  return config_from_dict(merged)


def config_from_argv(argv: Sequence[str], default: Optional[str] = None) -> ExperimentConfig:
  """`[config.yaml, key=value, ...]` -> config.

  Without a leading file name: the `default` config file if given (what the
  experiment scripts use), else the dataclass defaults; overrides apply on top.
  """
  if argv and "=" not in argv[0]:
    return load_config(argv[0], argv[1:])
  if default is not None:
    return load_config(default, argv)
  return apply_overrides(ExperimentConfig(), argv)
