"""Asynchronous checkpoint saves: a process killed mid-save leaves no checkpoint.

`Checkpoints.save` returns while orbax still writes the arrays; the step only
appears (a rename) once every item is on disk. Here a child process starts a
save of a 64 MB state and exits at once, as a crash would.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sol_jax.data import make_block_dataset, make_iterator
from sol_jax.rl.checkpointing import Checkpoints
from sol_jax.rl.train_step import TrainState

CHILD = textwrap.dedent("""
    import os, sys
    import jax, jax.numpy as jnp, numpy as np
    from sol_jax.data import make_block_dataset, make_iterator
    from sol_jax.rl.checkpointing import Checkpoints
    from sol_jax.rl.train_step import TrainState
    state = TrainState(params={"w": jnp.ones((16, 1024, 1024))}, opt_state={"m": jnp.zeros(3)},
                       step=jnp.int32(1), rng=jax.random.PRNGKey(0))
    it = make_iterator(make_block_dataset(np.zeros((4, 3), np.int32), 2, shuffle=False, seed=0))
    Checkpoints(sys.argv[1]).save(1, state, it)
    os._exit(0)  # killed while the write is in flight: no wait, no close
""")


def _iterator():
  return make_iterator(make_block_dataset(np.zeros((4, 3), np.int32), 2, shuffle=False, seed=0))


@pytest.mark.integration  # a child process that imports jax and writes 64 MB
def test_a_save_killed_midway_leaves_no_checkpoint(tmp_path):
  subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], check=True, timeout=300)
  ckpt_dir = tmp_path / "checkpoints"
  left = [p.name for p in ckpt_dir.iterdir()]
  assert left and all("tmp" in name for name in left), left  # the save was cut short
  ckpt = Checkpoints(tmp_path)
  try:
    assert ckpt.latest_step() is None  # resume would start afresh, not from a torn step
    # ...and the same step can be saved again over the leftover.
    state = TrainState(
      {"w": jnp.full((4,), 2.0)}, {"m": jnp.zeros(3)}, jnp.int32(1), jax.random.PRNGKey(0)
    )
    ckpt.save(1, state, _iterator())
    ckpt.wait()
    assert ckpt.latest_step() == 1
    np.testing.assert_array_equal(ckpt.restore(1, state).params["w"], 2.0)
  finally:
    ckpt.close()
