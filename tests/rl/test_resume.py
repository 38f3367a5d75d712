"""Exact resume of `sol_jax.rl.loop.train` from its orbax checkpoints.

A run stopped after N/2 data batches and resumed in the same run_dir must end
bit-identical to one uninterrupted N-batch run: policy params, the whole
optimizer state (AdamW moments and the MultiSteps accumulator, which is half
full at the stop), the step counter and the PRNG key. It must also see the same
batches, i.e. the grain iterator position is restored too.

All runs share one compiled step: `loop.make_train_step` is wrapped so that
every `train` call reuses the first jitted step (same TrainSetup, same
shardings) and records the batches it is fed. Compiling it dominates the time.
"""

from __future__ import annotations

import pathlib
import re
import shutil

import jax
import numpy as np
import pytest

from sol_jax import config as config_lib
from sol_jax.data import make_iterator
from sol_jax.rl import checkpointing, loop
from sol_jax.rl import train_step as train_step_lib
from tests.tiny_models import TINY_LLAMA as MODEL

pytestmark = pytest.mark.integration  # compiles the whole train step

C, T, B, N = 8, 4, 2, 6  # N data batches; the interrupted run stops after N // 2
# B*K = 8 rollouts per batch in 2 minibatches of 4; an AdamW step every 4
# minibatches. After 3 batches (6 minibatches) one step is done and 2
# minibatches sit in the accumulator, so the stop falls mid-accumulation.
OVERRIDES = [
  f"data.context_len={C}",
  f"data.horizon={T}",
  "data.train_fraction=1.0",
  "actions.variant=2L",
  "policy.d_model=32",
  "policy.num_heads=2",
  "policy.max_len=16",
  "rl.num_rollouts=4",
  f"rl.batch_size={B}",
  "rl.minibatch_decisions=16",
  "rl.grad_accum=4",
  "optim.lr=1e-2",
  f"train.num_steps={N}",
  "train.checkpoint_every=3",
  "train.seed=7",
]


def _config(run_dir: pathlib.Path) -> config_lib.ExperimentConfig:
  return config_lib.apply_overrides(
    config_lib.ExperimentConfig(), OVERRIDES + [f"train.run_dir={run_dir}"]
  )


def _host(state) -> dict:
  return jax.tree.map(np.asarray, state._asdict())


def _leaves(tree) -> dict:
  return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _differing(a: dict, b: dict) -> list[str]:
  la, lb = _leaves(a), _leaves(b)
  assert la.keys() == lb.keys()
  return [k for k in la if not np.array_equal(la[k], lb[k])]


class _SharedStep:
  """`make_train_step` that jits once per TrainSetup and records every batch."""

  def __init__(self):
    self.jitted = {}
    self.batches = []

  def __call__(self, setup, in_shardings=None, out_shardings=None):
    if setup not in self.jitted:
      self.jitted[setup] = train_step_lib.make_train_step(setup, in_shardings, out_shardings)
    fn = self.jitted[setup]

    def step(state, lm_params, blocks):
      self.batches.append(np.asarray(blocks))
      return fn(state, lm_params, blocks)

    return step


def _restore_state_only(restore):
  """A broken resume for the control run: restores the state, rewinds the data."""

  def wrapper(self, step, template, iterator):
    start = iterator.get_state()
    state = restore(self, step, template, iterator)
    iterator.set_state(start)
    return state

  return wrapper


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama):
  root = tmp_path_factory.mktemp("resume")
  lm = tiny_llama  # (MODEL, its seed-0 params)
  # One batch more than the run uses: the epoch does not end, so `train` skips
  # its leftover-gradient flush (nothing is pending at step N anyway), which
  # runs op by op and would cost more CPU time than all the training here.
  blocks = np.random.default_rng(0).integers(
    0, MODEL.vocab_size, (B * (N + 1), C + T + 1), dtype=np.int32
  )
  shared = _SharedStep()
  out = {"root": root, "lm": lm, "blocks": blocks}

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(loop, "make_train_step", shared)

    def run(name, **kw):
      shared.batches = []
      state = loop.train(_config(root / name), lm, blocks=blocks, progress=False, log=False, **kw)
      return _host(state), shared.batches

    out["straight"] = run("straight")
    out["half"] = run("resumed", num_steps=N // 2)
    shutil.copytree(root / "resumed", root / "half_copy")  # pristine, for the other tests
    out["resumed"] = run("resumed")
    shutil.copytree(root / "half_copy", root / "restarted")
    mp.setattr(
      checkpointing.Checkpoints, "restore", _restore_state_only(checkpointing.Checkpoints.restore)
    )
    out["restarted"] = run("restarted")
  assert len(shared.jitted) == 1
  return out


def test_interrupted_run_stops_mid_accumulation(runs):
  half, _ = runs["half"]
  straight, _ = runs["straight"]
  assert int(half["step"]) == N // 2 and int(straight["step"]) == N
  assert int(half["opt_state"].gradient_step) == 1
  assert int(half["opt_state"].mini_step) == 2  # accumulated, not yet applied
  assert int(straight["opt_state"].gradient_step) == 3
  steps = sorted(int(p.name) for p in (runs["root"] / "half_copy" / "checkpoints").iterdir())
  assert steps == [N // 2]


def test_resumed_run_is_bit_identical(runs):
  straight, _ = runs["straight"]
  resumed, _ = runs["resumed"]
  assert _differing(straight, resumed) == []
  # Not vacuous: training moved the params away from their initial values.
  cfg = _config(runs["root"])
  init = _host(train_step_lib.init_train_state(loop.make_setup(cfg, MODEL), cfg.train.seed))
  assert len(_differing(init["params"], straight["params"])) > 10


def test_resumed_run_continues_the_data_stream(runs):
  _, straight = runs["straight"]
  _, first = runs["half"]
  _, second = runs["resumed"]
  assert len(straight) == N and len(first) == len(second) == N // 2
  for got, want in zip(first + second, straight):
    np.testing.assert_array_equal(got, want)
  # All N batches differ, so replaying any of them would show.
  assert len({b.tobytes() for b in straight}) == N


def test_a_rewound_iterator_is_caught(runs):
  """The control: resuming without the data position replays the first batches
  and ends with different params, so the equality above does check the data."""
  straight, straight_batches = runs["straight"]
  restarted, batches = runs["restarted"]
  assert len(batches) == N // 2
  for got, want in zip(batches, straight_batches[: N // 2]):
    np.testing.assert_array_equal(got, want)
  assert len(_differing(straight["params"], restarted["params"])) > 10


def _truncate_array_files(step_dir: pathlib.Path) -> None:
  for f in (step_dir / "state" / "ocdbt.process_0" / "d").iterdir():
    f.write_bytes(f.read_bytes()[:8])


def _garble_state_metadata(step_dir: pathlib.Path) -> None:
  (step_dir / "state" / "_METADATA").write_text("{garbage")


def _garble_iterator_state(step_dir: pathlib.Path) -> None:
  (step_dir / "data" / "process_0-of-1.json").write_text("not json")


@pytest.mark.parametrize(
  "corrupt", [_truncate_array_files, _garble_state_metadata, _garble_iterator_state]
)
def test_corrupt_checkpoint_is_one_clear_error(runs, corrupt):
  run_dir = runs["root"] / corrupt.__name__
  shutil.copytree(runs["root"] / "half_copy", run_dir)
  ckpt_dir = run_dir / "checkpoints"
  corrupt(ckpt_dir / str(N // 2))
  with pytest.raises(ValueError) as err:
    loop.train(_config(run_dir), runs["lm"], blocks=runs["blocks"], progress=False, log=False)
  msg = str(err.value)
  # Names the checkpoint, and says what to do.
  assert f"checkpoint step {N // 2} in {ckpt_dir}" in msg
  assert re.search(
    rf"delete {re.escape(str(ckpt_dir / str(N // 2)))} to resume from an "
    r"earlier step, or use a new train\.run_dir",
    msg,
  )
  # Nothing was trained or written over.
  assert sorted(p.name for p in ckpt_dir.iterdir()) == [str(N // 2)]


def test_flipped_bytes_in_array_data_are_detected(runs):
  run_dir = runs["root"] / "bit_flip"
  shutil.copytree(runs["root"] / "half_copy", run_dir)
  data = max(
    (run_dir / "checkpoints" / str(N // 2) / "state" / "ocdbt.process_0" / "d").iterdir(),
    key=lambda f: f.stat().st_size,
  )
  raw = bytearray(data.read_bytes())
  mid = len(raw) // 2
  raw[mid : mid + 16] = bytes(b ^ 0xFF for b in raw[mid : mid + 16])
  data.write_bytes(bytes(raw))

  cfg = _config(run_dir)
  setup = loop.make_setup(cfg, MODEL)
  template = train_step_lib.init_train_state(setup, cfg.train.seed)
  iterator = make_iterator(loop.train_dataset(cfg, None, runs["blocks"]))
  ckpt = checkpointing.Checkpoints(run_dir)
  try:
    with pytest.raises(ValueError, match="could not be restored"):
      ckpt.restore(N // 2, template, iterator)
  finally:
    ckpt.close()


def test_a_checkpoint_saved_mid_run_holds_that_step(runs):
  """Saves are asynchronous: the straight run's step-3 checkpoint, written while
  steps 4-6 ran, restores to the state and data position the interrupted run had."""
  half, _ = runs["half"]
  _, straight_batches = runs["straight"]
  cfg = _config(runs["root"] / "straight")
  template = train_step_lib.init_train_state(loop.make_setup(cfg, MODEL), cfg.train.seed)
  iterator = make_iterator(loop.train_dataset(cfg, None, runs["blocks"]))
  ckpt = checkpointing.Checkpoints(runs["root"] / "straight")
  try:
    restored = _host(ckpt.restore(N // 2, template, iterator))
  finally:
    ckpt.close()
  assert _differing(half, restored) == []
  np.testing.assert_array_equal(next(iterator), straight_batches[N // 2])
