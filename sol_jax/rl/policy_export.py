"""Exports a run's checkpointed policy as a shipped policy folder (see policy_files)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import pathlib
import sys
from typing import Optional

import jax.numpy as jnp
from etils import epath
from safetensors.flax import save_file

from sol_jax import config as config_lib
from sol_jax.models.config import ModelConfig
from sol_jax.rl import run_config
from sol_jax.rl.checkpointing import Checkpoints
from sol_jax.rl.loop import make_setup
from sol_jax.rl.policy_files import WEIGHTS_FILE, flatten, sha256
from sol_jax.rl.train_step import init_train_state
from sol_jax.run_paths import is_uri, run_path


def export_policy(
  run_dir: str | pathlib.Path | epath.Path,
  out_dir: str | pathlib.Path,
  model_cfg: ModelConfig,
  step: Optional[int] = None,
  *,
  dtype: str = "float32",
) -> pathlib.Path:
  """Writes the params of `run_dir`'s checkpoint `step` (default latest) to `out_dir`.

  `model_cfg` is the LM the run trained on (its width sizes the policy).
  """
  run_dir = run_path(run_dir)  # may be gs://bucket/run
  cfg = run_config.load_run_config(run_dir)
  if cfg is None:
    raise FileNotFoundError(f"{run_dir} has no {run_config.CONFIG_FILE}: cannot export it.")
  setup = make_setup(cfg, model_cfg)
  ckpt = Checkpoints(run_dir)
  try:
    if step is None:
      step = ckpt.latest_step()
      if step is None:
        raise FileNotFoundError(f"no checkpoint in {ckpt.directory} to export.")
    elif step not in ckpt.all_steps():
      raise FileNotFoundError(
        f"checkpoint step {step} is not in {ckpt.directory}; it holds steps {ckpt.all_steps()}."
      )
    state = ckpt.restore(step, init_train_state(setup, cfg.train.seed))
  finally:
    ckpt.close()
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  flat = {k: jnp.asarray(v, dtype) for k, v in flatten(state.params).items()}
  save_file(flat, str(out / WEIGHTS_FILE), metadata={"format": "sol_jax policy"})
  (out / run_config.CONFIG_FILE).write_text(config_lib.config_to_yaml(cfg))
  prov_path = run_dir / run_config.PROVENANCE_FILE
  starts = json.loads(prov_path.read_text())["starts"] if prov_path.is_file() else []
  prov = {
    "step": step,
    "data_batches": step,  # one optimizer step per data batch
    "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "export_argv": sys.argv,
    "source_run_dir": str(run_dir if is_uri(run_dir) else pathlib.Path(run_dir).resolve()),
    "git": run_config._git_commit(),
    "policy": dataclasses.asdict(setup.policy),
    "weights": {"file": WEIGHTS_FILE, "dtype": dtype, "sha256": sha256(out / WEIGHTS_FILE)},
    "train_starts": starts,  # each start's argv (the train command), versions, commit
  }
  text = json.dumps(prov, indent=1, default=str) + "\n"
  (out / run_config.PROVENANCE_FILE).write_text(text)
  return out
