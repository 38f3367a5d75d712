"""grain pipelines over in-memory token blocks, with checkpointable iterators.

Training (method §10): seeded global shuffle, last incomplete batch dropped.
Evaluation (method §12.1): blocks in order, no shuffle.
The iterator state (`get_state`/`set_state`, a small dict) is saved with
orbax through grain's handler: either `save_iterator_state` below, or
`grain.checkpoint.CheckpointSave(iterator)` as one item of an
`ocp.args.Composite` in the training loop's CheckpointManager.
"""

from __future__ import annotations

import os
import pathlib

import grain
import numpy as np
import orbax.checkpoint as ocp


def _check_blocks(blocks: np.ndarray) -> None:
  if not isinstance(blocks, np.ndarray) or blocks.ndim != 2:
    raise ValueError(
      'blocks must be a 2-D numpy array [N, block_len], got '
      f'{type(blocks).__name__} {getattr(blocks, "shape", "")}.'
    )
  if not np.issubdtype(blocks.dtype, np.integer):
    raise ValueError(f'blocks must hold integer token ids, got {blocks.dtype}.')


def make_block_dataset(
  blocks: np.ndarray,
  batch_size: int,
  shuffle: bool,
  seed: int = 1234,
  drop_remainder: bool = True,
  num_epochs: int = 1,
  max_blocks: int | None = None,
  max_batches: int | None = None,
) -> grain.MapDataset:
  """MapDataset of [batch_size, block_len] batches (`len()` = batch count).

  Args:
    blocks: [N, block_len] token blocks.
    batch_size: blocks per batch.
    shuffle: global shuffle with `seed`; each epoch gets its own order.
    seed: shuffle seed (reference: 1234).
    drop_remainder: drop each epoch's last incomplete batch.
    num_epochs: passes over the blocks; batches never straddle epochs.
    max_blocks: keep only the first blocks (before shuffling).
    max_batches: keep only the first batches (e.g. the reference's 36 %).
  """
  _check_blocks(blocks)
  if batch_size <= 0 or num_epochs <= 0:
    raise ValueError(f'batch_size ({batch_size}) and num_epochs ({num_epochs}) must be positive.')
  if max_blocks is not None:
    if max_blocks <= 0:
      raise ValueError(f'max_blocks must be positive or None, got {max_blocks}.')
    blocks = blocks[:max_blocks]
  n = len(blocks)
  if drop_remainder and n < batch_size:
    raise ValueError(
      f'{n} blocks make no full batch of {batch_size}; lower batch_size or use more data.'
    )
  ds = grain.MapDataset.source(blocks)
  if shuffle:
    ds = ds.shuffle(seed=seed)
  # Shuffle reseeds per epoch; batching per-epoch slices keeps the remainder
  # drop per epoch, as a PyTorch DataLoader with drop_last does.
  ds = ds.repeat(num_epochs)
  ds = grain.MapDataset.concatenate(
    [
      ds[e * n : (e + 1) * n].batch(batch_size, drop_remainder=drop_remainder)
      for e in range(num_epochs)
    ]
  )
  if max_batches is not None:
    if max_batches <= 0:
      raise ValueError(f'max_batches must be positive or None, got {max_batches}.')
    ds = ds[:max_batches]
  return ds


def make_eval_dataset(
  blocks: np.ndarray, batch_size: int, max_blocks: int | None = None, max_batches: int | None = None
) -> grain.MapDataset:
  """In-order batches of blocks; the last batch may be smaller."""
  return make_block_dataset(
    blocks,
    batch_size,
    shuffle=False,
    drop_remainder=False,
    max_blocks=max_blocks,
    max_batches=max_batches,
  )


def make_iterator(ds: grain.MapDataset) -> grain.DatasetIterator:
  """A checkpointable iterator; no reader threads (the data is in memory)."""
  return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)))


def save_iterator_state(directory: str | os.PathLike[str], iterator: grain.DatasetIterator) -> None:
  """Saves the iterator position to a new orbax checkpoint `directory`."""
  with ocp.Checkpointer(grain.checkpoint.CheckpointHandler()) as ckpt:
    ckpt.save(pathlib.Path(directory).absolute(), args=grain.checkpoint.CheckpointSave(iterator))


def restore_iterator_state(
  directory: str | os.PathLike[str], iterator: grain.DatasetIterator
) -> grain.DatasetIterator:
  """Moves a fresh iterator over the same dataset to the saved position."""
  path = pathlib.Path(directory).absolute()
  if not path.is_dir():
    raise FileNotFoundError(f'no iterator checkpoint at {str(path)!r}.')
  with ocp.Checkpointer(grain.checkpoint.CheckpointHandler()) as ckpt:
    return ckpt.restore(path, args=grain.checkpoint.CheckpointRestore(iterator))
