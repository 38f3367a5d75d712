"""Orbax checkpoints of the train state and the grain iterator, with auto-resume."""
from __future__ import annotations

import pathlib
from typing import Optional

import grain
import jax
import orbax.checkpoint as ocp

from sol_jax.rl.train_step import TrainState


class Checkpoints:
  """CheckpointManager over `<run_dir>/checkpoints`: items `state` and `data`."""

  def __init__(self, run_dir: str | pathlib.Path, max_to_keep: Optional[int] = None):
    self.directory = pathlib.Path(run_dir).absolute() / "checkpoints"
    self.manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state: TrainState, iterator: grain.DatasetIterator) -> None:
    # Orbax writes to a temporary directory and renames it when complete, so an
    # interrupted save never looks like a checkpoint.
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state._asdict()),
        data=grain.checkpoint.CheckpointSave(iterator)))
    self.manager.wait_until_finished()

  def restore(self, step: int, template: TrainState, iterator: grain.DatasetIterator) -> TrainState:
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template._asdict())
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract),
          data=grain.checkpoint.CheckpointRestore(iterator)))
    except Exception as err:  # orbax raises several types for damaged files
      raise ValueError(
          f"checkpoint step {step} in {self.directory} could not be restored ({type(err).__name__}: "
          f"{err}). It is corrupt or from an incompatible config: delete "
          f"{self.directory / str(step)} to resume from an earlier step, or use a new "
          "train.run_dir.") from err
    return TrainState(**restored.state)

  def close(self) -> None:
    self.manager.close()
