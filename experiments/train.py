"""Train a SOL policy with GRPO.

  python -m experiments.train [CONFIG] [key=value ...]

CONFIG defaults to smollm2_3L_cpu; every section of the config applies (--help
lists the run-control keys). Resumes automatically from the latest
checkpoint in train.run_dir (default runs/<config name>). TensorBoard logs go to
<run_dir>/tb. Multi-host (Cloud TPU pods, multi-node GPU): run the same command
on every host; sol_jax.parallel.initialize_distributed() reads the standard
environment (see its docstring).
"""

from __future__ import annotations

import logging

from experiments import cli
from sol_jax import parallel
from sol_jax.models import load_model, load_tokenizer
from sol_jax.rl import train


@cli.main_entry
def main(argv=None):
  cfg = cli.parse(argv, __doc__, ("train", "model.source", "model.dtype")).cfg
  # The library logs through `logging` (process 0 only); show its INFO lines.
  logging.basicConfig(format="%(asctime)s %(name)s: %(message)s")
  logging.getLogger("sol_jax").setLevel(logging.INFO)
  cli.check_data(cfg, cfg.data.train)
  parallel.initialize_distributed()
  # Host arrays: the loop places them sharded over the mesh (on_device would first put
  # the whole LM on device 0, and keep that copy for the whole run).
  lm = load_model(cfg.model.source, dtype=cfg.model.dtype, on_device=False)
  state = train(cfg, lm, load_tokenizer(cfg.model.source))
  print(f"done: {int(state.step)} data batches")


if __name__ == "__main__":
  main()
