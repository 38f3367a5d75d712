"""What `loop.train` logs: scalars at log steps only, step_seconds, the profiler trace.

Metrics stay on device between log steps; each log step fetches them once and
logs `step_seconds` as the wall time per batch since the previous log step.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea

from sol_jax import config as config_lib
from sol_jax.models import llama
from sol_jax.rl import loop
from tests.tiny_models import TINY_LLAMA_1L

MODEL = TINY_LLAMA_1L
C, T, B, N = 8, 4, 2, 5


@pytest.mark.integration  # a whole loop.train run: compiles the train step
def test_logged_steps_timing_and_profile(tmp_path):
  # In a fresh interpreter: in the full suite (session 6) XLA segfaulted twice while
  # compiling under the profiler trace in this long-lived process, never when the
  # test ran alone; the profiler's native state does not mix well with what ~400
  # earlier tests left behind.
  code = (
    "import pathlib, sys; from tests.rl.test_loop_logging import check_logged_steps; "
    "check_logged_steps(pathlib.Path(sys.argv[1]))"
  )
  root = pathlib.Path(__file__).resolve().parents[2]
  run = subprocess.run(
    [sys.executable, "-c", code, str(tmp_path)], cwd=root, capture_output=True, text=True
  )
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def check_logged_steps(tmp_path):
  cfg = config_lib.apply_overrides(
    config_lib.ExperimentConfig(),
    [
      f"data.context_len={C}",
      f"data.horizon={T}",
      "data.train_fraction=1.0",
      "actions.variant=2L",
      "policy.d_model=32",
      "policy.num_heads=2",
      "policy.max_len=16",
      "rl.num_rollouts=2",
      f"rl.batch_size={B}",
      "rl.minibatch_decisions=16",
      f"train.num_steps={N}",
      "train.log_every=2",
      "train.keep_checkpoints=false",
      "train.profile_steps=2",
      f"train.run_dir={tmp_path}",
    ],
  )
  lm = (MODEL, llama.init_params(MODEL, jax.random.PRNGKey(0)))
  blocks = np.random.default_rng(0).integers(
    0, MODEL.vocab_size, (B * (N + 1), C + T + 1), dtype=np.int32
  )
  loop.train(cfg, lm, blocks=blocks, progress=False)
  acc = ea.EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0}).Reload()
  # Logged at batches 1, 3, 5 (step % log_every == 0, and the last).
  assert [e.step for e in acc.Scalars("reward")] == [1, 3, 5]
  seconds = [e.value for e in acc.Scalars("step_seconds")]
  assert len(seconds) == 3 and all(s > 0 for s in seconds)
  assert seconds[0] > seconds[1]  # the first window holds the compile
  assert all(np.isfinite(e.value) for e in acc.Scalars("entropy"))
  # train.profile_steps=2: one trace of batches 2-3 for TensorBoard's profile tab.
  traces = list((tmp_path / "tb" / "plugins" / "profile").rglob("*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0
