"""Orbax checkpoints of the train state and the grain iterator, with auto-resume.

Orbax stores no checksum of array data, so each save also writes a SHA-256 of
every state leaf (`digest` item); restore recomputes it and refuses a mismatch.

Saves are asynchronous: `save` returns once the state is copied to the host
and hashed (the digest is computed from those values before the write starts)
and the iterator position is written; orbax writes the arrays in a background
thread into a temporary directory that it renames only when every item is
complete, so a crash mid-save leaves no step that `latest_step` reports. The
next `save`, `wait` and `close` wait for a pending write.
"""

from __future__ import annotations

import hashlib
from typing import Optional

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from sol_jax.rl.train_step import TrainState
from sol_jax.run_paths import absolute


def state_digest(state: dict) -> str:
  """SHA-256 over every leaf's path, dtype, shape and bytes."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    arr = np.ascontiguousarray(jax.device_get(leaf))
    h.update(f"{jax.tree_util.keystr(path)}|{arr.dtype}|{arr.shape}|".encode())
    h.update(arr.tobytes())
  return h.hexdigest()


class Checkpoints:
  """CheckpointManager over `<run_dir>/checkpoints`: items `state`, `digest` and `data`.

  `run_dir` may be a bucket URI (gs://bucket/run): orbax writes it through epath.
  """

  def __init__(self, run_dir: epath.PathLike, max_to_keep: Optional[int] = None):
    self.directory = absolute(run_dir) / "checkpoints"
    self.manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True
      ),
    )

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: TrainState, iterator: grain.DatasetIterator) -> None:
    """Starts writing `step`; returns before the arrays are on disk (see module doc)."""
    self.wait()  # one write at a time; raises here if the previous one failed
    tree = state._asdict()
    # Hashed now, from the values being saved: the write happens later.
    digest = state_digest(tree)
    # The grain item has no async handler: orbax writes the iterator position
    # during this call, so the iterator may advance as soon as it returns.
    self.manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(tree),
        digest=ocp.args.JsonSave({"sha256": digest}),
        data=grain.checkpoint.CheckpointSave(iterator),
      ),
    )

  def wait(self) -> None:
    """Blocks until a pending asynchronous save is complete on disk."""
    self.manager.wait_until_finished()

  def _fail(self, step: int, why: str) -> ValueError:
    return ValueError(
      f"checkpoint step {step} in {self.directory} could not be restored: {why}. It is corrupt "
      f"or from an incompatible config: delete {self.directory / str(step)} to resume from an "
      "earlier step, or use a new train.run_dir."
    )

  def restore(
    self, step: int, template: TrainState, iterator: Optional[grain.DatasetIterator] = None
  ) -> TrainState:
    """The train state at `step`; also rewinds `iterator` in place when given."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template._asdict())
    items = {"state": ocp.args.StandardRestore(abstract), "digest": ocp.args.JsonRestore()}
    if iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(iterator)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as err:  # orbax raises several types for damaged files
      first_line = (str(err).strip().splitlines() or [""])[0][:300]
      raise self._fail(step, f"{type(err).__name__}: {first_line}") from None
    if restored.digest.get("sha256") != state_digest(restored.state):
      raise self._fail(step, "its data does not match the SHA-256 digest saved with it")
    return TrainState(**restored.state)

  def close(self) -> None:
    self.manager.close()  # waits for a pending save
