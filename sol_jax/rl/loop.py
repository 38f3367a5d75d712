"""The GRPO training loop: grain data, sharded jitted step, orbax resume, TensorBoard."""

from __future__ import annotations

import functools
import logging
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from sol_jax import parallel, tracking
from sol_jax.config import ExperimentConfig
from sol_jax.data import make_block_dataset, make_iterator, text_blocks
from sol_jax.efficiency.actions import ActionSpace
from sol_jax.efficiency.controls import ControlSettings
from sol_jax.models.config import ModelConfig
from sol_jax.policy.network import PolicyConfig
from sol_jax.rl import run_config
from sol_jax.rl.checkpointing import Checkpoints
from sol_jax.rl.optimizer import flush_leftover
from sol_jax.rl.run_config import run_directory  # re-exported: scripts import it from here
from sol_jax.rl.train_step import TrainSetup, TrainState, init_train_state, make_train_step

logger = logging.getLogger(__name__)


def action_space(cfg: ExperimentConfig) -> ActionSpace:
  a = cfg.actions
  return ActionSpace.from_config(a.keep_fracs, a.struct_prune_choices, a.quant_choices)


def make_setup(cfg: ExperimentConfig, model_cfg: ModelConfig) -> TrainSetup:
  if cfg.rl.prefill_stale_budget_quirk:
    raise ValueError(
      "rl.prefill_stale_budget_quirk=true (reproducing the reference's stale Quest "
      "budgets in the prefill, method Q1) is not implemented; the prefill is always "
      "dense. Set it to false."
    )
  space = action_space(cfg)
  policy = PolicyConfig.from_section(
    cfg.policy,
    num_actions=space.num_actions,
    obs_hidden_dim=model_cfg.hidden_size,
    embed_dim=model_cfg.hidden_size,
  )
  return TrainSetup(
    model_cfg,
    space,
    ControlSettings.from_config(cfg.actions),
    policy,
    cfg.rl,
    cfg.optim,
    cfg.data.context_len,
    cfg.data.horizon,
  )


def train_dataset(cfg: ExperimentConfig, tokenizer, blocks: Optional[np.ndarray] = None):
  """This process's shuffled batches of C+T+1 blocks; only `train_fraction` of them (method Q10).

  Each of P processes reads every P-th block and makes batches of B/P rows;
  `parallel.shard_batch` assembles the global batch of B.
  """
  if blocks is None:
    blocks = text_blocks(
      cfg.data.train,
      tokenizer,
      cfg.data.block_len,
      data_dir=cfg.data.data_dir,
      cache_dir=cfg.data.cache_dir,
    )
  procs = jax.process_count()
  if cfg.rl.batch_size % procs:
    raise ValueError(
      f"rl.batch_size={cfg.rl.batch_size} must be divisible by the {procs} processes."
    )
  blocks = blocks[jax.process_index() :: procs]
  local = cfg.rl.batch_size // procs
  used = max(1, int(cfg.data.train_fraction * (len(blocks) // local)))
  return make_block_dataset(
    blocks, local, shuffle=True, seed=cfg.data.shuffle_seed, max_batches=used
  )


def train(
  cfg: ExperimentConfig,
  lm,
  tokenizer=None,
  *,
  num_steps: Optional[int] = None,
  blocks: Optional[np.ndarray] = None,
  progress: bool = True,
  log: bool = True,
) -> TrainState:
  """Trains (or resumes) the policy in `cfg.train.run_dir`; lm = (ModelConfig, params).

  `blocks` [N, C+T+1] replaces the configured training text (tests, custom data).
  `num_steps` stops early (e.g. to test resuming) without changing the schedule.
  The run dir keeps config.yaml; a resume that changes a trained key is refused.
  """
  model_cfg, lm_params = lm
  run_dir = run_directory(cfg)
  mesh = parallel.make_mesh(cfg)  # validates the mesh against batch and K
  setup = make_setup(cfg, model_cfg)
  ckpt = Checkpoints(run_dir, cfg.train.max_to_keep) if cfg.train.keep_checkpoints else None
  try:
    resume = ckpt.latest_step() if ckpt else None
    run_config.start_run(run_dir, cfg, resume)
    dataset = train_dataset(cfg, tokenizer, blocks)
    iterator = make_iterator(dataset)
    fresh = resume is None and cfg.train.init_from is None
    # The budget-head fit only matters for a fresh policy; otherwise params are replaced.
    state = init_train_state(
      setup, cfg.train.seed, cfg.train.budget_head_init if fresh else "torch"
    )
    if resume is not None:
      state = ckpt.restore(resume, state, iterator)
      _info("resumed from %s/%d", ckpt.directory, resume)
    elif cfg.train.init_from is not None:
      state, resume = _warm_start(cfg, model_cfg, state, iterator)
    return _run(
      cfg,
      setup,
      mesh,
      lm_params,
      state,
      dataset,
      iterator,
      ckpt,
      resume or 0,
      num_steps,
      progress,
      log,
    )
  finally:
    if ckpt:
      ckpt.close()  # waits for an asynchronous save still being written


def _warm_start(cfg, model_cfg, state: TrainState, iterator) -> tuple[TrainState, int]:
  """`train.init_from`: a shipped policy's params and data position, a fresh optimizer.

  Carries a run across machines that keep no run directory (only the shipped
  params travel): the data iterator skips the `step` batches already trained on.
  """
  from sol_jax.rl import policy_compat  # pylint: disable=g-import-not-at-top (imports loop)

  shipped = policy_compat.load_policy(cfg.train.init_from)
  policy_compat.check_compatible(shipped, cfg, model_cfg)
  start = int(shipped.provenance["step"])
  for _ in range(start):
    next(iterator)
  state = TrainState(
    jax.device_put(shipped.params),
    state.opt_state,
    jnp.asarray(start, jnp.int32),
    jax.random.fold_in(state.rng, start),  # not the fresh run's stream
  )
  _info("warm start from policy %s at data batch %d (fresh optimizer)", shipped.label, start)
  return state, start


def _info(msg: str, *args) -> None:
  if jax.process_index() == 0:
    logger.info(msg, *args)


def _run(
  cfg, setup, mesh, lm_params, state, dataset, iterator, ckpt, start, num_steps, progress, log
) -> TrainState:
  """The step loop of `train`, from data batch `start`."""
  run_dir = run_directory(cfg)
  planned = min(cfg.train.num_steps or len(dataset), len(dataset))
  total = min(num_steps or planned, planned)
  every = cfg.train.checkpoint_every or max(1, planned // 10)
  replicated = parallel.replicated(mesh)
  lm_shardings = parallel.lm_param_shardings(mesh, lm_params, setup.model)
  lm_params = jax.device_put(lm_params, lm_shardings)
  state = jax.device_put(state, replicated)
  step_fn = make_train_step(
    setup,
    in_shardings=(replicated, lm_shardings, parallel.batch_sharding(mesh, 2)),
    out_shardings=(replicated, replicated, parallel.batch_sharding(mesh, 3)),
  )
  tracker = tracking.Tracker(run_dir / "tb", enabled=None if log else False)
  if start == 0:
    tracker.config(cfg)
  bar = tqdm(total=total, initial=start, desc="train", disable=not progress)
  profile = range(start + 1, start + 1 + cfg.train.profile_steps)  # after the compiling step
  window_start, window_steps = time.perf_counter(), 0
  for step in range(start, total):
    blocks = parallel.shard_batch(np.asarray(next(iterator), np.int32), mesh)
    tracing = step in profile
    if tracing and step == profile.start:
      jax.profiler.start_trace(str(run_dir / "tb"))  # TensorBoard's profile tab
    with jax.profiler.StepTraceAnnotation("train", step_num=step):
      state, metrics, actions = step_fn(state, lm_params, blocks)
    if (
      step + 1 == planned == len(dataset)
    ):  # end of the epoch: step the leftover accumulation (§9.7)
      state = flush_leftover_gradients(setup, state)
    window_steps += 1
    if step % cfg.train.log_every == 0 or step + 1 == total:
      # Metrics stay on device between log steps: one host sync per log step.
      actions = multihost_utils.process_allgather(actions, tiled=True)
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      now = time.perf_counter()
      if not metrics["optimizer_steps"]:  # accumulation only: no clip happened
        del metrics["grad_norm"]
      # Wall time per data batch over the steps since the last log step
      # (data, logging and checkpoint saves included; the first includes compiling).
      metrics["step_seconds"] = (now - window_start) / window_steps
      metrics["lr"] = cfg.optim.lr  # constant (method Q10)
      window_start, window_steps = now, 0
      tracker.scalars(metrics, step + 1)
      tracking.action_histograms(
        tracker, np.asarray(actions), setup.space, step + 1, prefix="actions"
      )
      bar.update(step + 1 - bar.n)
      bar.set_postfix(
        reward=f"{metrics['reward']:.3f}",
        pen=f"{metrics['penalty']:.3f}",
        ent=f"{metrics['entropy']:.2f}",
      )
    if ckpt and ((step + 1) % every == 0 or step + 1 == total):
      ckpt.save(step + 1, state, iterator)  # asynchronous: the next step does not wait on disk
    if tracing and (step == profile[-1] or step + 1 == total):
      jax.block_until_ready(state)  # the traced steps must finish inside the trace
      jax.profiler.stop_trace()
  bar.close()
  tracker.close()
  return state


@functools.partial(jax.jit, static_argnums=0)
def flush_leftover_gradients(setup: TrainSetup, state: TrainState) -> TrainState:
  """Applies a partly filled gradient accumulation once, as the reference does at epoch end."""
  updates, opt_state = flush_leftover(
    setup.optim, setup.rl.grad_accum, state.opt_state, state.params
  )
  return state._replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state)
