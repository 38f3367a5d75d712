"""The GRPO training loop: grain data, sharded jitted step, orbax resume, TensorBoard."""
from __future__ import annotations

import functools
import pathlib
import time
from typing import Optional

import jax
import numpy as np
import optax
from tqdm.auto import tqdm

from sol_jax import parallel, tracking
from jax.experimental import multihost_utils

from sol_jax.config import ExperimentConfig
from sol_jax.data import make_block_dataset, make_iterator, text_blocks
from sol_jax.efficiency.actions import ActionSpace
from sol_jax.efficiency.controls import ControlSettings
from sol_jax.models.config import ModelConfig
from sol_jax.policy.network import PolicyConfig
from sol_jax.rl.checkpointing import Checkpoints
from sol_jax.rl.optimizer import flush_leftover
from sol_jax.rl.train_step import TrainSetup, TrainState, init_train_state, make_train_step


def action_space(cfg: ExperimentConfig) -> ActionSpace:
  a = cfg.actions
  return ActionSpace.from_config(a.keep_fracs, a.struct_prune_choices, a.quant_choices)


def run_directory(cfg: ExperimentConfig) -> pathlib.Path:
  """Where a run keeps checkpoints/ and tb/: train.run_dir, else runs/<config name>."""
  return pathlib.Path(cfg.train.run_dir or f"runs/{cfg.name}")


def make_setup(cfg: ExperimentConfig, model_cfg: ModelConfig) -> TrainSetup:
  if cfg.rl.prefill_stale_budget_quirk:
    raise ValueError("rl.prefill_stale_budget_quirk=true (reproducing the reference's stale Quest "
                     "budgets in the prefill, spec Q1) is not implemented; the prefill is always "
                     "dense. Set it to false.")
  space = action_space(cfg)
  p = cfg.policy
  policy = PolicyConfig(num_actions=space.num_actions, obs_hidden_dim=model_cfg.hidden_size,
                        embed_dim=model_cfg.hidden_size, d_model=p.d_model, num_heads=p.num_heads,
                        num_layers=p.num_layers, mlp_ratio=p.mlp_ratio,
                        action_embed_dim=p.action_embed_dim, scalar_embed_dim=p.scalar_embed_dim,
                        max_len=p.max_len, temperature=p.temperature)
  return TrainSetup(model_cfg, space, ControlSettings.from_config(cfg.actions), policy, cfg.rl,
                    cfg.optim, cfg.data.context_len, cfg.data.horizon)


def train_dataset(cfg: ExperimentConfig, tokenizer, blocks: Optional[np.ndarray] = None):
  """This process's shuffled batches of C+T+1 blocks; only `train_fraction` of them (spec Q10).

  Each of P processes reads every P-th block and makes batches of B/P rows;
  `parallel.shard_batch` assembles the global batch of B.
  """
  if blocks is None:
    blocks = text_blocks(cfg.data.train, tokenizer, cfg.data.block_len, data_dir=cfg.data.data_dir,
                         cache_dir=cfg.data.cache_dir)
  procs = jax.process_count()
  if cfg.rl.batch_size % procs:
    raise ValueError(f"rl.batch_size={cfg.rl.batch_size} must be divisible by the {procs} processes.")
  blocks = blocks[jax.process_index()::procs]
  local = cfg.rl.batch_size // procs
  used = max(1, int(cfg.data.train_fraction * (len(blocks) // local)))
  return make_block_dataset(blocks, local, shuffle=True, seed=cfg.data.shuffle_seed,
                            max_batches=used)


def train(cfg: ExperimentConfig, lm, tokenizer=None, *, num_steps: Optional[int] = None,
          blocks: Optional[np.ndarray] = None, progress: bool = True,
          log: bool = True) -> TrainState:
  """Trains (or resumes) the policy in `cfg.train.run_dir`; lm = (ModelConfig, params).

  `blocks` [N, C+T+1] replaces the configured training text (tests, custom data).
  `num_steps` stops early (e.g. to test resuming) without changing the schedule.
  """
  model_cfg, lm_params = lm
  run_dir = run_directory(cfg)
  mesh = parallel.make_mesh(cfg)  # validates the mesh against batch and K
  setup = make_setup(cfg, model_cfg)
  dataset = train_dataset(cfg, tokenizer, blocks)
  planned = min(cfg.train.num_steps or len(dataset), len(dataset))
  total = min(num_steps or planned, planned)
  iterator = make_iterator(dataset)
  state = init_train_state(setup, cfg.train.seed)
  ckpt = Checkpoints(run_dir, cfg.train.max_to_keep) if cfg.train.keep_checkpoints else None
  start = 0
  if ckpt and ckpt.latest_step() is not None:
    start = ckpt.latest_step()
    state = ckpt.restore(start, state, iterator)
    print(f"resumed from {ckpt.directory}/{start}")
  every = cfg.train.checkpoint_every or max(1, planned // 10)

  replicated = parallel.replicated(mesh)
  lm_shardings = parallel.lm_param_shardings(mesh, lm_params, model_cfg)
  lm_params = jax.device_put(lm_params, lm_shardings)
  state = jax.device_put(state, replicated)
  step_fn = make_train_step(setup, in_shardings=(replicated, lm_shardings,
                                                 parallel.batch_sharding(mesh, 2)),
                            out_shardings=(replicated, replicated, parallel.batch_sharding(mesh, 3)))
  tracker = tracking.Tracker(run_dir / "tb", enabled=None if log else False)
  if start == 0:
    tracker.config(cfg)
  bar = tqdm(range(start, total), initial=start, total=total, desc="train", disable=not progress)
  for step in bar:
    blocks = parallel.shard_batch(np.asarray(next(iterator), np.int32), mesh)
    t0 = time.perf_counter()
    state, metrics, actions = step_fn(state, lm_params, blocks)
    metrics = {k: float(v) for k, v in metrics.items()}
    if not metrics["optimizer_steps"]:  # accumulation only: no clip happened
      del metrics["grad_norm"]
    metrics["step_seconds"] = time.perf_counter() - t0
    metrics["lr"] = cfg.optim.lr  # constant (spec Q10)
    if step % cfg.train.log_every == 0 or step + 1 == total:
      tracker.scalars(metrics, step + 1)
      actions = multihost_utils.process_allgather(actions, tiled=True)
      tracking.action_histograms(tracker, np.asarray(actions), setup.space, step + 1, prefix="actions")
    bar.set_postfix(reward=f"{metrics['reward']:.3f}", pen=f"{metrics['penalty']:.3f}",
                    ent=f"{metrics['entropy']:.2f}")
    if step + 1 == planned == len(dataset):  # end of the epoch: step the leftover accumulation (§9.7)
      state = flush_leftover_gradients(setup, state)
    if ckpt and ((step + 1) % every == 0 or step + 1 == total):
      ckpt.save(step + 1, state, iterator)
  tracker.close()
  if ckpt:
    ckpt.close()
  return state


@functools.partial(jax.jit, static_argnums=0)
def flush_leftover_gradients(setup: TrainSetup, state: TrainState) -> TrainState:
  """Applies a partly filled gradient accumulation once, as the reference does at epoch end."""
  updates, opt_state = flush_leftover(setup.optim, setup.rl.grad_accum, state.opt_state, state.params)
  return state._replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state)
