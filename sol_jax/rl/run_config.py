"""What a run directory remembers: its resolved config and where it came from.

  <run_dir>/config.yaml      the config of the latest start of training (reloads equal)
  <run_dir>/provenance.json  one entry per start: time, step resumed from, argv,
                             package versions, git commit

A run directory may be local or a bucket URI (`train.run_dir=gs://bucket/run`):
its paths are `etils.epath.Path`s (see sol_jax.run_paths).

Resuming reads config.yaml and refuses a config that changes a key affecting
results; evaluation scripts rebuild the policy and action grid from it, so a
run is always read with the settings it was trained with.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import logging
import os
import pathlib
import platform
import subprocess
import sys
from typing import Any, Optional, Sequence

import jax
import yaml
from etils import epath

from sol_jax import config as config_lib
from sol_jax.config import ExperimentConfig
from sol_jax.run_paths import is_uri, run_path

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
PROVENANCE_FILE = "provenance.json"

# Keys a resume (or an evaluation of the run) may change: they decide how long
# the run goes, where files are, what is logged, and how it is evaluated, but
# not one trained value. Every other key changes the batches, the rollouts or
# the update, so a resumed run would no longer equal an uninterrupted one.
# `section.*` allows the whole section.
RUN_CONTROL_KEYS = (
  "name",
  "description",
  "train.num_steps",
  "train.log_every",
  "train.checkpoint_every",
  "train.max_to_keep",
  "train.run_dir",
  "train.keep_checkpoints",
  "train.profile_steps",
  "data.data_dir",
  "data.cache_dir",
  "data.eval",
  "data.eval_batch_size",
  "data.eval_batches",
  "eval.*",
  "sweep.*",
  "front.*",
  "generate.*",
  "mc.*",
  "lmeval.*",
  "pollution.*",
  "quality.*",
  "allocation.*",
  "bench.*",
)

_VERSIONED = ("sol_jax", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain")


def run_directory(cfg: ExperimentConfig) -> epath.Path:
  """Where a run keeps checkpoints/ and tb/: train.run_dir, else runs/<config name>.

  An epath.Path, so that a `gs://bucket/run` keeps its scheme (pathlib would make
  it the local folder `gs:/bucket/run`).
  """
  return run_path(cfg.train.run_dir or f"runs/{cfg.name}")


def is_run_control(key: str) -> bool:
  return key in RUN_CONTROL_KEYS or f"{key.split('.')[0]}.*" in RUN_CONTROL_KEYS


def _flat(cfg: ExperimentConfig) -> dict[str, Any]:
  flat = {}
  for key, value in config_lib.config_to_dict(cfg).items():
    if isinstance(value, dict):
      flat.update({f"{key}.{field}": v for field, v in value.items()})
    else:
      flat[key] = value
  return flat


def result_differences(old: ExperimentConfig, new: ExperimentConfig) -> list[str]:
  """`key: old → new` for every differing key that is not run control."""
  a, b = _flat(old), _flat(new)
  show = lambda v: json.dumps(v, default=str)
  return [f"{k}: {show(a[k])} → {show(b[k])}" for k in a if a[k] != b[k] and not is_run_control(k)]


def check_same_run(
  saved: ExperimentConfig, cfg: ExperimentConfig, run_dir: epath.PathLike, doing: str
) -> None:
  """Raises one ValueError listing the result-affecting keys where `cfg` differs."""
  diffs = result_differences(saved, cfg)
  if diffs:
    allowed = ", ".join(RUN_CONTROL_KEYS)
    raise ValueError(
      f"{doing} {run_dir} with a config that differs from its {CONFIG_FILE} in keys that "
      "affect results:\n  " + "\n  ".join(diffs) + f"\nOnly run-control keys ({allowed}) "
      f"may change. Repeat the run's settings (see {run_path(run_dir) / CONFIG_FILE}) or use a new "
      "train.run_dir."
    )


def load_run_config(run_dir: epath.PathLike) -> Optional[ExperimentConfig]:
  """The config saved in `run_dir`, or None for runs made before config.yaml existed."""
  path = run_path(run_dir) / CONFIG_FILE
  if not path.is_file():
    return None
  raw = yaml.safe_load(path.read_text())
  # The saved lists are the resolved grid: do not re-read the variant file,
  # which may have changed since (it would lose to the saved lists anyway).
  variant = raw.get("actions", {}).pop("variant", None)
  cfg = config_lib.config_from_dict(raw)
  return dataclasses.replace(cfg, actions=dataclasses.replace(cfg.actions, variant=variant))


def _write_atomic(path: epath.Path, text: str) -> None:
  # A crash mid-write leaves the old file (or none), never half a file. An object
  # store writes whole objects: an upload that fails leaves the old one.
  if is_uri(path):
    path.write_text(text)
    return
  tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _git_commit() -> dict[str, Any]:
  here = pathlib.Path(__file__).parent
  try:
    run = lambda *a: subprocess.run(
      ["git", *a], cwd=here, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()
    return {
      "commit": run("rev-parse", "HEAD"),
      "dirty": bool(run("status", "--porcelain", "--untracked-files=no")),
    }
  except (OSError, subprocess.SubprocessError):  # no git, or not a checkout (wheel install)
    return {"commit": None, "dirty": None}


def _version(name: str) -> Optional[str]:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return None


def provenance(resumed_from: Optional[int]) -> dict[str, Any]:
  return {
    "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "resumed_from_step": resumed_from,
    "argv": sys.argv,
    "host": platform.node(),
    "python": platform.python_version(),
    "versions": {n: _version(n) for n in _VERSIONED},
    "git": _git_commit(),
    "processes": jax.process_count(),
    "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
  }


def save_run_config(
  run_dir: epath.PathLike, cfg: ExperimentConfig, resumed_from: Optional[int] = None
) -> None:
  """Process 0 writes config.yaml and appends this start to provenance.json."""
  if jax.process_index() != 0:
    return
  run_dir = run_path(run_dir)
  run_dir.mkdir(parents=True, exist_ok=True)
  _write_atomic(run_dir / CONFIG_FILE, config_lib.config_to_yaml(cfg))
  prov_path = run_dir / PROVENANCE_FILE
  starts = json.loads(prov_path.read_text())["starts"] if prov_path.is_file() else []
  starts.append(provenance(resumed_from))
  _write_atomic(prov_path, json.dumps({"starts": starts}, indent=1, default=str) + "\n")


def start_run(run_dir: epath.PathLike, cfg: ExperimentConfig, resume_step: Optional[int]) -> None:
  """Checks a resume against the saved config, then records this start."""
  if resume_step is not None:
    saved = load_run_config(run_dir)
    if saved is None:
      if jax.process_index() == 0:
        log.warning(
          "%s has checkpoints but no %s (a run from before run dirs kept their "
          "config); resuming with this command line's config and saving it.",
          run_dir,
          CONFIG_FILE,
        )
    else:
      check_same_run(saved, cfg, run_dir, "refusing to resume")
  save_run_config(run_dir, cfg, resume_step)


def evaluation_config(argv: Sequence[str], default: Optional[str] = None) -> ExperimentConfig:
  """The config to evaluate the run that `argv` names (train.run_dir or runs/<name>).

  That run's config.yaml with argv's key=value overrides on top (argv's config
  file only locates the run). Overrides may change run-control keys (eval.*,
  data paths, ...); changing a trained key is refused. A run without
  config.yaml (made before it existed) is read with argv's config, with a warning.
  """
  cfg = config_lib.config_from_argv(argv, default=default)
  run_dir = run_directory(cfg)
  saved = load_run_config(run_dir)
  if saved is None:
    log.warning(
      "no %s in %s (a run from before run dirs kept their config): using the command line's config",
      CONFIG_FILE,
      run_dir,
    )
    return cfg
  overrides = list(argv[1:] if argv and "=" not in argv[0] else argv)
  merged = config_lib.apply_overrides(saved, overrides)
  check_same_run(saved, merged, run_dir, "refusing to evaluate")
  return merged
