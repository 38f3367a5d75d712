"""TensorBoard logging through tensorboardX (no TensorFlow needed).

`Tracker` wraps one `tensorboardX.SummaryWriter` per run directory. In a
multi-host run only process 0 writes; on the others every method is a no-op,
so training code can log unconditionally. Values may be JAX arrays: they are
fetched to the host here.

Hyperparameters are written into the run itself (not a tensorboardX sub-run),
so the HParams dashboard links them to the run's own scalar tags: pass the
tags you want compared (e.g. "eval/ppl") as `metrics`.

`logdir` may be a bucket URI (gs://bucket/run/tb): tensorboardX writes it
itself (gs:// needs the google-cloud-storage package).
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping, Optional, Sequence, Union

import jax
import numpy as np
from etils import epath

from sol_jax.config import ExperimentConfig, config_to_flat_dict, config_to_yaml
from sol_jax.efficiency.actions import ActionSpace
from sol_jax.run_paths import is_uri, run_path

_HPARAM_TYPES = (bool, int, float, str)


def _step(step: Any) -> int:
  return int(jax.device_get(step))


class Tracker:
  """Scalars, histograms, images, text and hparams for one run directory."""

  def __init__(
    self,
    logdir: Union[str, pathlib.Path, epath.Path],
    *,
    enabled: Optional[bool] = None,
    flush_secs: int = 30,
    max_queue: int = 100,
  ):
    """`enabled=None` means: write iff this is JAX process 0."""
    self.logdir = run_path(logdir)
    self.enabled = (jax.process_index() == 0) if enabled is None else bool(enabled)
    self._writer = None
    if self.enabled:
      if not is_uri(self.logdir):  # an object store has no folders to make
        self.logdir.mkdir(parents=True, exist_ok=True)
      import tensorboardX  # pylint: disable=g-import-not-at-top  (1.3 s, pulls torch)

      self._writer = tensorboardX.SummaryWriter(
        str(self.logdir), flush_secs=flush_secs, max_queue=max_queue
      )

  # ---- scalars ---------------------------------------------------------------

  def scalar(self, name: str, value: Any, step: Any) -> None:
    if self._writer is not None:
      self._writer.add_scalar(name, float(jax.device_get(value)), _step(step))

  def scalars(self, values: Mapping[str, Any], step: Any, prefix: str = "") -> None:
    """One scalar per entry, tag `prefix/name` (one host transfer for all)."""
    if self._writer is None:
      return
    values = jax.device_get(dict(values))
    step = _step(step)
    for name, value in values.items():
      tag = f"{prefix}/{name}" if prefix else name
      self._writer.add_scalar(tag, float(np.asarray(value)), step)

  # ---- distributions -----------------------------------------------------------

  def histogram(self, name: str, values: Any, step: Any, bins: Union[str, int] = "auto") -> None:
    """Histogram of any array (flattened); `bins` as in `numpy.histogram`."""
    if self._writer is None:
      return
    values = np.asarray(jax.device_get(values), np.float64).reshape(-1)
    if values.size == 0:
      raise ValueError(f"histogram {name!r}: got no values; log a non-empty array")
    counts, edges = np.histogram(values, bins=bins)
    self._raw_histogram(name, values, edges, counts, _step(step))

  def level_histogram(self, name: str, values: Any, levels: Sequence[float], step: Any) -> None:
    """Exact counts of discrete `values`, one bucket centred on each level."""
    if self._writer is None:
      return
    levels = np.sort(np.asarray(levels, np.float64))
    values = np.asarray(jax.device_get(values), np.float64).reshape(-1)
    # Nearest level, so float32 values (0.1f != 0.1) still match theirs.
    right = np.clip(np.searchsorted(levels, values), 0, len(levels) - 1)
    left = np.maximum(right - 1, 0)
    pos = np.where(np.abs(values - levels[left]) < np.abs(values - levels[right]), left, right)
    if values.size == 0 or not np.allclose(levels[pos], values, rtol=1e-5, atol=1e-6):
      raise ValueError(
        f"histogram {name!r}: values must be non-empty and drawn from the levels {levels.tolist()}"
      )
    counts = np.bincount(pos, minlength=len(levels))
    gaps = np.diff(levels)
    half = 0.5 * (gaps.min() if gaps.size else 1.0)  # outer buckets as wide as the closest
    edges = np.concatenate(
      [[levels[0] - half], (levels[1:] + levels[:-1]) / 2, [levels[-1] + half]]
    )
    self._raw_histogram(name, values, edges, counts, _step(step))

  def _raw_histogram(self, name, values, edges, counts, step) -> None:
    # TensorBoard draws [min, limit_0], [limit_0, limit_1], ... after dropping
    # empty end buckets, so min/max are the outer edges of the non-empty ones.
    nonzero = np.flatnonzero(counts)
    lo, hi = edges[nonzero[0]], edges[nonzero[-1] + 1]
    self._writer.add_histogram_raw(
      name,
      min=float(lo),
      max=float(hi),
      num=int(values.size),
      sum=float(values.sum()),
      sum_squares=float(np.square(values).sum()),
      bucket_limits=edges[1:].tolist(),
      bucket_counts=counts.astype(np.int64).tolist(),
      global_step=step,
    )

  # ---- images and text ------------------------------------------------------------

  def image(self, name: str, image: Any, step: Any) -> None:
    """A matplotlib figure (closed after writing) or an [H, W(, C)] array.

    Float arrays are read as [0, 1], uint8 as [0, 255]; C is 1, 3 or 4.
    """
    if self._writer is None:
      return
    if hasattr(image, "savefig"):  # a matplotlib Figure
      self._writer.add_figure(name, image, _step(step), close=True)
      return
    arr = np.asarray(jax.device_get(image))
    if arr.ndim == 2:
      arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
      raise ValueError(
        f"image {name!r}: expected a matplotlib figure or an [H, W] / "
        f"[H, W, C] array with C in (1, 3, 4), got shape {arr.shape}"
      )
    if arr.dtype != np.uint8:
      arr = np.clip(arr.astype(np.float32), 0.0, 1.0)
    self._writer.add_image(name, arr, _step(step), dataformats="HWC")

  def text(self, name: str, text: str, step: Any = 0) -> None:
    """Markdown text (TensorBoard renders tables and fenced code blocks)."""
    if self._writer is not None:
      self._writer.add_text(name, str(text), _step(step))

  # ---- run metadata ------------------------------------------------------------------

  def hparams(
    self, flat: Mapping[str, Any], metrics: Union[Mapping[str, Any], Sequence[str]] = ()
  ) -> None:
    """Writes hyperparameters for the HParams dashboard into this run.

    `metrics`: the scalar tags to compare across runs, or a {tag: value}
    mapping whose values are also logged as scalars at step 0.
    """
    if self._writer is None:
      return
    clean = {}
    for key, value in flat.items():
      value = jax.device_get(value)
      if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0:
        value = value.item()
      clean[str(key)] = value if isinstance(value, _HPARAM_TYPES) else str(value)
    metric_values = dict(metrics) if isinstance(metrics, Mapping) else {}
    tags = list(metric_values) if metric_values else [str(m) for m in metrics]
    from tensorboardX import summary as tbx_summary  # pylint: disable=g-import-not-at-top

    exp, ssi, _ = tbx_summary.hparams(clean, {tag: 0.0 for tag in tags})
    writer = self._writer.file_writer
    writer.add_summary(exp)
    writer.add_summary(ssi)
    if metric_values:
      self.scalars(metric_values, 0)

  def config(
    self, cfg: ExperimentConfig, metrics: Union[Mapping[str, Any], Sequence[str]] = ()
  ) -> None:
    """The resolved config as YAML text (tag "config") plus its hparams."""
    self.text("config", "```yaml\n" + config_to_yaml(cfg) + "```", 0)
    self.hparams(config_to_flat_dict(cfg), metrics)

  # ---- lifetime ------------------------------------------------------------------------

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  def __enter__(self) -> "Tracker":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def action_histograms(
  tracker: Tracker, actions: Any, space: ActionSpace, step: Any, prefix: str = "actions"
) -> None:
  """Histograms of executed actions: κ, ρ, bits and the joint index.

  Tags `prefix/kappa`, `prefix/rho`, `prefix/bits` count the level values of
  the actions (any shape of ints in [0, A)); `prefix/joint` counts indices.
  """
  if not tracker.enabled:
    return
  a = np.asarray(jax.device_get(actions)).reshape(-1)
  if (
    a.size == 0
    or not np.issubdtype(a.dtype, np.integer)
    or a.min() < 0
    or a.max() >= space.num_actions
  ):
    raise ValueError(
      f"actions must be a non-empty integer array with values in "
      f"[0, {space.num_actions}), got dtype {a.dtype}"
      + (f" and range [{a.min()}, {a.max()}]" if a.size else " and no values")
    )
  i_kappa, i_rho, i_bits = space.levels_of(a)
  step = _step(step)
  for axis, levels, idx in (
    ("kappa", space.keep_fracs, i_kappa),
    ("rho", space.prune_fracs, i_rho),
    ("bits", space.quant_bits, i_bits),
  ):
    tracker.level_histogram(f"{prefix}/{axis}", np.asarray(levels, np.float64)[idx], levels, step)
  tracker.level_histogram(f"{prefix}/joint", a, np.arange(space.num_actions), step)
