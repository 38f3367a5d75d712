"""Train a SOL policy with GRPO.

  python -m experiments.train [CONFIG] [key=value ...]

CONFIG defaults to smollm2_3L_cpu. Resumes automatically from the latest
checkpoint in train.run_dir (default runs/<config name>). TensorBoard logs go to
<run_dir>/tb. Multi-host (Cloud TPU pods, multi-node GPU): run the same command
on every host; sol_jax.parallel.initialize_distributed() reads the standard
environment (see its docstring).
"""
from __future__ import annotations

import sys

from experiments import DEFAULT_CONFIG
from sol_jax import config as config_lib
from sol_jax import parallel
from sol_jax.models.registry import load_model
from sol_jax.models.tokenizer import load_tokenizer
from sol_jax.rl.loop import train


def main(argv=None):
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] in ("-h", "--help"):
    print(__doc__)
    return
  parallel.initialize_distributed()
  cfg = config_lib.config_from_argv(argv, default=DEFAULT_CONFIG)
  lm = load_model(cfg.model.source, dtype=cfg.model.dtype)
  state = train(cfg, lm, load_tokenizer(cfg.model.source))
  print(f"done: {int(state.step)} data batches")


if __name__ == "__main__":
  main()
