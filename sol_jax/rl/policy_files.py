"""Shipped policies: a trained policy's params in a folder, loadable without its run.

  <dir>/policy.safetensors  the params (no optimizer state), named by tree path
  <dir>/config.yaml         the run's resolved config (grid, policy, LM source)
  <dir>/provenance.json     step, export date, source run, git commit, sha256, ...

A name like `smollm2_3L_cpu/seed1` resolves under the repository's policies/
(or $SOL_POLICY_DIR); any directory path works too.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from safetensors.flax import load_file

from sol_jax.config import ExperimentConfig
from sol_jax.policy import network
from sol_jax.rl import run_config

WEIGHTS_FILE = "policy.safetensors"


class ShippedPolicy(NamedTuple):
  params: dict  # float32, as the network takes them
  config: ExperimentConfig  # the run's saved config
  policy: network.PolicyConfig  # with the trained LM width and grid size
  label: str  # the name (or path) it was loaded by
  provenance: dict


def policies_dir() -> pathlib.Path:
  """$SOL_POLICY_DIR, else policies/ at the root of this checkout."""
  env = os.environ.get("SOL_POLICY_DIR")
  return pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[2] / "policies"


def flatten(params: dict) -> dict[str, Any]:
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  return {"/".join(k.key for k in path): leaf for path, leaf in leaves}


def _unflatten(flat: dict[str, Any]) -> dict:
  tree: dict = {}
  for name, leaf in flat.items():
    *parents, last = name.split("/")
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[last] = leaf
  return tree


def sha256(path: pathlib.Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def resolve_policy(name_or_path: str | pathlib.Path) -> pathlib.Path:
  """A folder holding policy.safetensors: a path, or a name under `policies_dir()`."""
  root = policies_dir()
  for cand in (pathlib.Path(name_or_path), root / name_or_path):
    if (cand / WEIGHTS_FILE).is_file():
      return cand
  have = sorted(str(p.parent.relative_to(root)) for p in root.glob(f"**/{WEIGHTS_FILE}"))
  raise FileNotFoundError(
    f"policy {name_or_path!r} not found: not a folder with {WEIGHTS_FILE}, nor a name under "
    f"{root} (set SOL_POLICY_DIR to move it). Shipped: {', '.join(have) or 'none'}."
  )


def load_policy(name_or_path: str | pathlib.Path) -> ShippedPolicy:
  """Reads and validates a shipped policy (checksum, tensor names and shapes)."""
  where = resolve_policy(name_or_path)
  label = str(name_or_path)
  prov = json.loads((where / run_config.PROVENANCE_FILE).read_text())
  cfg = run_config.load_run_config(where)
  if cfg is None:
    raise FileNotFoundError(f"policy {label}: {where / run_config.CONFIG_FILE} is missing.")
  weights = where / WEIGHTS_FILE

  def fail(why: str) -> ValueError:
    return ValueError(f"policy {label} ({weights}) {why}; re-export it from its run.")

  if sha256(weights) != prov["weights"]["sha256"]:
    raise fail("does not match the sha256 in its provenance.json: corrupt or replaced")
  policy_cfg = network.PolicyConfig(**prov["policy"])
  try:
    flat = load_file(str(weights))
  except Exception as err:  # safetensors raises several types for damaged files
    raise fail(f"cannot be read ({type(err).__name__}: {err})") from None
  want = jax.eval_shape(lambda: network.init_params(policy_cfg, jax.random.PRNGKey(0)))
  want = {k: tuple(v.shape) for k, v in flatten(want).items()}
  problems = [f"missing {k}" for k in sorted(want.keys() - flat.keys())]
  problems += [f"unexpected {k}" for k in sorted(flat.keys() - want.keys())]
  problems += [
    f"{k} has shape {tuple(flat[k].shape)}, expected {want[k]}"
    for k in sorted(want.keys() & flat.keys())
    if tuple(flat[k].shape) != want[k]
  ]
  if problems:
    raise fail("does not fit its saved policy config: " + "; ".join(problems))
  params = _unflatten({k: jnp.asarray(v, jnp.float32) for k, v in flat.items()})
  return ShippedPolicy(params, cfg, policy_cfg, label, prov)
