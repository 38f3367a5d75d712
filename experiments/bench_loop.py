"""Host-side costs of the training loop (`rl.loop.train`) and of a checkpoint save.

  python -m experiments.bench_loop [CONFIG] [key=value ...]

1. Loop overheads on a tiny 1-layer Llama (a step of a few ms, so the loop's
   own costs show), 40 batches per variant, interleaved, best of 3, TensorBoard
   off, the jitted step compiled once: a host sync every batch
   (train.log_every=1) vs one per 40; an asynchronous checkpoint every batch
   vs the same with a wait after each save (the synchronous behaviour).
2. `Checkpoints.save` of the train state of CONFIG's policy (default
   smollm2_3L_cpu): the SHA-256 digest, the time `save` blocks the loop, and
   the time until the write is on disk.
"""

from __future__ import annotations

import json
import pathlib
import tempfile
import time

import jax
import numpy as np

from experiments import cli
from sol_jax import config as config_lib
from sol_jax.data import make_block_dataset, make_iterator
from sol_jax.models import llama
from sol_jax.models.config import ModelConfig
from sol_jax.models.registry import load_model
from sol_jax.rl import checkpointing, loop
from sol_jax.rl import train_step as ts

KEYS = ("model.source", "policy", "actions", "rl.grad_accum", "train.seed")
TINY = ModelConfig(
  vocab_size=64,
  hidden_size=32,
  intermediate_size=48,
  num_layers=1,
  num_heads=4,
  num_kv_heads=2,
  head_dim=8,
)
STEPS = 40


def _tiny_config(run_dir, *extra) -> config_lib.ExperimentConfig:
  return config_lib.apply_overrides(
    config_lib.ExperimentConfig(),
    [
      "data.context_len=8",
      "data.horizon=4",
      "data.train_fraction=1.0",
      "actions.variant=2L",
      "policy.d_model=32",
      "policy.num_heads=2",
      "policy.max_len=16",
      "rl.num_rollouts=2",
      "rl.batch_size=2",
      "rl.minibatch_decisions=16",
      f"train.num_steps={STEPS}",
      f"train.run_dir={run_dir}",
      *extra,
    ],
  )


def _sync_save(save):
  def wrapper(self, *args):
    save(self, *args)
    self.wait()

  return wrapper


def loop_overheads(root: pathlib.Path, repeats: int = 3) -> dict:
  """Best wall seconds per batch of each loop variant."""
  lm = (TINY, llama.init_params(TINY, jax.random.PRNGKey(0)))
  blocks = np.random.default_rng(0).integers(0, 64, (2 * (STEPS + 1), 13), dtype=np.int32)
  make, jitted = loop.make_train_step, {}
  # Compile once: every variant has the same TrainSetup and shardings.
  loop.make_train_step = lambda setup, *a, **kw: jitted.setdefault(setup, make(setup, *a, **kw))
  async_save = checkpointing.Checkpoints.save
  variants = {
    "sync every batch (log_every=1)": (
      ["train.log_every=1", "train.keep_checkpoints=false"],
      async_save,
    ),
    f"sync every {STEPS} (log_every={STEPS})": (
      [f"train.log_every={STEPS}", "train.keep_checkpoints=false"],
      async_save,
    ),
    "async checkpoint every batch": (
      [f"train.log_every={STEPS}", "train.checkpoint_every=1"],
      async_save,
    ),
    "sync checkpoint every batch": (
      [f"train.log_every={STEPS}", "train.checkpoint_every=1"],
      _sync_save(async_save),
    ),
  }
  best = {name: float("inf") for name in variants}
  for i in range(repeats + 1):  # round 0 compiles and warms up
    for j, (name, (extra, save)) in enumerate(variants.items()):
      checkpointing.Checkpoints.save = save
      cfg = _tiny_config(root / f"r{i}v{j}", *extra)
      start = time.perf_counter()
      loop.train(cfg, lm, blocks=blocks, progress=False, log=False)
      if i:
        best[name] = min(best[name], (time.perf_counter() - start) / STEPS)
  checkpointing.Checkpoints.save, loop.make_train_step = async_save, make
  return best


def save_timing(cfg: config_lib.ExperimentConfig, root: pathlib.Path, repeats: int = 3) -> dict:
  """Digest, blocking and total seconds of saving CONFIG's train state (best of `repeats`)."""
  model_cfg, _ = load_model(cfg.model.source, dtype=cfg.model.dtype)
  state = ts.init_train_state(loop.make_setup(cfg, model_cfg), cfg.train.seed)
  iterator = make_iterator(make_block_dataset(np.zeros((4, 3), np.int32), 2, shuffle=False, seed=0))
  mb = sum(x.nbytes for x in jax.tree.leaves(state)) / 2**20
  ckpt = checkpointing.Checkpoints(root / "save_timing")
  digest, blocking, total = [], [], []
  for step in range(repeats):
    start = time.perf_counter()
    checkpointing.state_digest(state._asdict())
    digest.append(time.perf_counter() - start)
    start = time.perf_counter()
    ckpt.save(step, state, iterator)
    blocking.append(time.perf_counter() - start)
    ckpt.wait()
    total.append(time.perf_counter() - start)
  ckpt.close()
  return {
    "state_mb": mb,
    "digest_s": min(digest),
    "save_blocks_s": min(blocking),
    "save_total_s": min(total),
  }


@cli.main_entry
def main(argv=None):
  cfg = cli.parse(argv, __doc__, KEYS).cfg
  with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    loop_s = loop_overheads(root)
    save = save_timing(cfg, root)
  for name, s in loop_s.items():
    print(f"{name:>36}: {1e3 * s:7.2f} ms per batch")
  print(
    f"save of the {cfg.name} train state ({save['state_mb']:.0f} MB): digest "
    f"{save['digest_s']:.2f} s; save() blocks {save['save_blocks_s']:.2f} s; on disk after "
    f"{save['save_total_s']:.2f} s"
  )
  print(json.dumps({"loop_s_per_batch": loop_s, "save": save}))


if __name__ == "__main__":
  main()
