"""Export a run's trained policy (params only) as a shipped policy folder.

  python -m experiments.export_policy [CONFIG] train.run_dir=RUN --out policies/NAME/seedK

Writes policy.safetensors (float32), config.yaml (the run's saved config) and
provenance.json (step, export date, source run, git commit, sha256, the run's
train commands) for the latest checkpoint of train.run_dir (default
runs/<config name>), or its checkpoint eval.checkpoint_step (e.g. the step chosen on
a valid split). Evaluate it with
`python -m experiments.eval_policy eval.policy=NAME/seedK`.
"""

from __future__ import annotations

from experiments import cli
from sol_jax.models import gguf_loader, registry, safetensors_loader
from sol_jax.rl import load_run_config, run_directory
from sol_jax.rl.policy_export import export_policy

KEYS = ("train.run_dir", "eval.checkpoint_step")


def model_config(source: str):
  """The LM's ModelConfig from its metadata alone (no weights are read)."""
  resolved = registry.resolve(source)
  if resolved.kind == "gguf":
    return gguf_loader.read_config(resolved.path)
  return safetensors_loader.read_config(safetensors_loader.resolve_dir(resolved.path))


@cli.main_entry
def main(argv=None):
  cmd = cli.parse(argv, __doc__, KEYS, has_out=True)
  if not cmd.out:
    raise ValueError("--out is required: the folder to write, e.g. policies/NAME/seed1")
  run_dir = run_directory(cmd.cfg)
  saved = load_run_config(run_dir)
  if saved is None:
    raise FileNotFoundError(f"{run_dir} has no config.yaml; is train.run_dir a run directory?")
  out = export_policy(
    run_dir, cmd.out, model_config(saved.model.source), cmd.cfg.eval.checkpoint_step
  )
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
