"""Summarise a training run's TensorBoard scalars without TensorBoard's UI.

  python -m experiments.training_curves [CONFIG] [key=value ...] [--out DIR]
  e.g.  ... smollm2_3L_cpu eval.curve_bins=16     (the run of `experiments.train smollm2_3L_cpu`)
        ... train.run_dir=runs/my_run

The run is the one training with the same config writes: train.run_dir, else
runs/<config name>. Reads every event file under <run>/tb (a run resumed several
times writes one per process), keeps the last value logged for each step, and
writes <out>/training_curves.txt (binned means, eval.curve_bins rows of steps)
and <out>/training_curves.png (reward, penalty, entropy, budget gaps, realized
vs requested budgets). --out defaults to the run directory.

With eval.curve_compare=[RUN,...] it also overlays those runs on this one
(training_curves_compare.png and .txt: penalty, entropy and the three budget
gaps per data batch, binned on common edges). A run continued in another
directory is one series: join the directories with "+", e.g.
runs/seed1b+runs/seed1c. A compared run that logged the same requested targets
at every shared step (same seed and data: an A/B of settings) is also compared
*paired*, batch by batch (training_curves_paired.txt): its NLL, net keep,
penalty and entropy minus this run's, with standard errors, and the NLL
difference at equal net keep (intercept of a line fit): whether a setting buys
log-likelihood with better allocation or only with more compute.
"""

from __future__ import annotations

import pathlib
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from experiments import cli
from sol_jax.rl import run_directory

AXES = ("kappa", "rho", "eta")
TABLE_TAGS = (
  "reward",
  "penalty",
  "entropy",
  "loss",
  "grad_norm",
  *(f"gap/{a}" for a in AXES),
  "step_seconds",
)


def read_scalars(tb_dir: pathlib.Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """tag -> (steps, values), sorted by step; a step logged twice keeps its last value."""
  files = sorted(tb_dir.glob("events.out.tfevents.*"))
  if not files:
    raise FileNotFoundError(
      f"no TensorBoard event files in {tb_dir}; pass the run directory "
      "that `python -m experiments.train` wrote (it holds tb/)."
    )
  merged: dict[str, dict[int, float]] = {}
  for f in files:  # in creation order, so a resumed run's values win
    acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
    acc.Reload()
    for tag in acc.Tags()["scalars"]:
      merged.setdefault(tag, {}).update((e.step, e.value) for e in acc.Scalars(tag))
  return {
    tag: (np.array(sorted(d)), np.array([d[s] for s in sorted(d)])) for tag, d in merged.items()
  }


def read_series(spec: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Scalars of one series: run dirs joined by "+", later dirs winning on shared steps."""
  merged: dict[str, dict[int, float]] = {}
  for run in spec.split("+"):
    for tag, (steps, values) in read_scalars(pathlib.Path(run) / "tb").items():
      merged.setdefault(tag, {}).update(zip(steps.tolist(), values.tolist()))
  return {
    tag: (np.array(sorted(d)), np.array([d[s] for s in sorted(d)])) for tag, d in merged.items()
  }


COMPARE_TAGS = ("penalty", "entropy", *(f"gap/{a}" for a in AXES))


def compare(series: dict[str, dict], out: pathlib.Path, bins: int, window: int = 10) -> str:
  """Overlay plot and binned table of COMPARE_TAGS for several series (label -> scalars)."""
  fig, axes = plt.subplots(1, len(COMPARE_TAGS), figsize=(4 * len(COMPARE_TAGS), 3.6))
  for i, (label, scalars) in enumerate(series.items()):
    for ax, tag in zip(axes, COMPARE_TAGS):
      if tag in scalars:
        ax.plot(*smoothed(scalars[tag], window), color=f"C{i}", label=label)
        ax.set(title=f"{tag} ({window}-batch mean)", xlabel="data batch")
  axes[0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out / "training_curves_compare.png", dpi=110)
  plt.close(fig)
  edges = step_edges(list(series.values()), COMPARE_TAGS, bins)
  lines = []
  for label, scalars in series.items():
    lines += [label, *binned_rows(scalars, COMPARE_TAGS, edges, 10)]
  text = "\n".join(lines) + "\n"
  (out / "training_curves_compare.txt").write_text(text)
  (base_label, base), *others = series.items()
  pairs = []
  for label, scalars in others:
    rows = paired(base, scalars, edges)
    if rows is not None:
      pairs += [f"{label} − {base_label} (same data and targets)", *rows]
  if pairs:
    paired_text = "\n".join(pairs) + "\n"
    (out / "training_curves_paired.txt").write_text(paired_text)
    text += paired_text
  return text


def _net_keep(scalars) -> tuple[np.ndarray, np.ndarray]:
  """(steps, per-batch realized net keep) from the three realized/* tags."""
  steps = scalars["realized/kappa"][0]
  return steps, np.mean([scalars[f"realized/{a}"][1] for a in AXES], axis=0)


PAIRED_TAGS = ("nll", "net_keep", "penalty", "entropy")


def values_at(series: tuple[np.ndarray, np.ndarray], steps: np.ndarray) -> np.ndarray:
  """The values of one (steps, values) series at the given steps (all present)."""
  by_step = dict(zip(series[0].tolist(), series[1].tolist()))
  return np.array([by_step[s] for s in steps.tolist()])


def paired(base: dict, other: dict, edges: np.ndarray) -> Optional[list[str]]:
  """other − base per shared data batch, when both drew the same targets there; else None."""
  need = (
    "nll",
    "penalty",
    "entropy",
    *(f"{k}/{a}" for k in ("requested", "realized") for a in AXES),
  )
  if any(t not in base or t not in other for t in need):
    return None
  shared = np.intersect1d(base["nll"][0], other["nll"][0])
  for a in AXES:
    shared = np.intersect1d(shared, base[f"requested/{a}"][0])
    shared = np.intersect1d(shared, other[f"requested/{a}"][0])
  same = shared.size > 0 and all(
    np.allclose(
      values_at(base[f"requested/{a}"], shared),
      values_at(other[f"requested/{a}"], shared),
      atol=1e-6,
    )
    for a in AXES
  )
  if not same:
    return None
  series = lambda sc: {**sc, "net_keep": _net_keep(sc)}
  b, o = series(base), series(other)
  diff = {t: values_at(o[t], shared) - values_at(b[t], shared) for t in PAIRED_TAGS}
  se = lambda x: x.std(ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
  if np.ptp(diff["net_keep"]) > 0 and shared.size > 2:
    fit = np.polyfit(diff["net_keep"], diff["nll"], 1)[1]
  else:  # the same compute on every batch (or too few): the mean is the answer
    fit = diff["nll"].mean()
  rows = [
    f"{shared.size} paired batches: "
    + ", ".join(f"Δ{t} {diff[t].mean():+.4f} ± {se(diff[t]):.4f}" for t in PAIRED_TAGS)
    + f"; ΔNLL at equal net keep {fit:+.4f}",
    f"{'steps':>9} " + " ".join(f"{'Δ' + t:>12}" for t in PAIRED_TAGS),
  ]
  for lo, hi in zip(edges[:-1], edges[1:]):
    sel = (shared > lo) & (shared <= hi)
    if sel.any():
      cells = " ".join(f"{diff[t][sel].mean():+12.4f}" for t in PAIRED_TAGS)
      rows.append(f"{f'{lo + 1}-{hi}':>9} {cells}")
  return rows


def step_edges(scalars_list, tags, bins: int) -> np.ndarray:
  """bins + 1 integer step edges from 0 to the last step any of the series logged."""
  last = max(int(s[t][0].max()) for s in scalars_list for t in tags if t in s)
  return np.linspace(0, last, bins + 1).round().astype(int)


def binned_rows(scalars, tags, edges, width: int) -> list[str]:
  """Header and one row per (lo, hi] step bin: each tag's mean there ("-" if none)."""
  rows = [f"{'steps':>9} " + " ".join(f"{t:>{width}}" for t in tags)]
  for lo, hi in zip(edges[:-1], edges[1:]):
    cells = []
    for t in tags:
      steps, vals = scalars.get(t, (np.zeros(0), np.zeros(0)))
      sel = (steps > lo) & (steps <= hi)
      cells.append(f"{vals[sel].mean():{width}.4f}" if sel.any() else f"{'-':>{width}}")
    rows.append(f"{f'{lo + 1}-{hi}':>9} " + " ".join(cells))
  return rows


def binned_table(scalars, bins: int) -> str:
  tags = [t for t in TABLE_TAGS if t in scalars]
  return "\n".join(binned_rows(scalars, tags, step_edges([scalars], tags, bins), 12)) + "\n"


def smoothed(series, window: int):
  """(steps, moving mean over `window` batches), aligned to each window's last step."""
  steps, values = series
  window = max(1, min(window, len(values)))
  return steps[window - 1 :], np.convolve(values, np.ones(window) / window, mode="valid")


def plot(scalars, path: pathlib.Path, window: int = 10) -> None:
  fig, axes = plt.subplots(2, 3, figsize=(15, 8))
  for ax, tag in zip(axes[0], ("reward", "penalty", "entropy")):
    ax.plot(*scalars[tag], alpha=0.3, color="C0")
    ax.plot(*smoothed(scalars[tag], window), color="C0")
    ax.set(title=tag, xlabel="data batch")
  for ax, axis in zip(axes[1], AXES):
    for i, kind in enumerate(("requested", "realized")):
      ax.plot(
        *smoothed(scalars[f"{kind}/{axis}"], window), color=f"C{i}", label=f"{kind} (mean of batch)"
      )
    ax.plot(
      *smoothed(scalars[f"gap/{axis}"], window),
      color="C3",
      label="|realized - requested| per input",
    )
    ax.set(title=f"budget {axis} ({window}-batch moving mean)", xlabel="data batch")
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


@cli.main_entry
def main(argv=None):
  cmd = cli.parse(
    argv,
    __doc__,
    ("train.run_dir", "eval.curve_bins", "eval.curve_compare"),
    has_out=True,
    moved={"bins": "eval.curve_bins"},
  )
  run_dir = run_directory(cmd.cfg)
  scalars = read_scalars(run_dir / "tb")
  out = pathlib.Path(cmd.out) if cmd.out else run_dir
  out.mkdir(parents=True, exist_ok=True)
  table = binned_table(scalars, cmd.cfg.eval.curve_bins)
  (out / "training_curves.txt").write_text(table)
  plot(scalars, out / "training_curves.png")
  print(table, end="")
  print(f"wrote {out / 'training_curves.txt'} and {out / 'training_curves.png'}")
  if cmd.cfg.eval.curve_compare:
    series = {str(run_dir): scalars}
    series.update((spec, read_series(spec)) for spec in cmd.cfg.eval.curve_compare)
    print(compare(series, out, cmd.cfg.eval.curve_bins), end="")
    print(f"wrote {out / 'training_curves_compare.png'} and .txt")


if __name__ == "__main__":
  main()
