"""Paired bootstrap intervals for policy-vs-baseline PPL differences (issue 10).

Both columns score the same blocks, so blocks are resampled with replacement
and the *same* draw is applied to every column: block difficulty, which varies
far more than the schedule effect, cancels in the difference. PPL of a draw is
exp(sum of its blocks' NLL sums / sum of their token counts), i.e. pooled over
tokens exactly as `schedule_eval.evaluate_columns` pools the full set.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class PairedDiff(NamedTuple):
  """A vs B: point estimates on all blocks and percentile intervals."""

  diff_pct: float  # 100 * (PPL_a / PPL_b - 1)
  diff_pct_lo: float
  diff_pct_hi: float
  diff_ppl: float  # PPL_a - PPL_b
  diff_ppl_lo: float
  diff_ppl_hi: float
  gap: float = float("nan")  # gap_closure(a, b, dense); NaN without dense NLL
  gap_lo: float = float("nan")
  gap_hi: float = float("nan")


def gap_closure(ppl_policy, ppl_fixed, ppl_dense):
  """(PPL_fixed - PPL_policy) / (PPL_fixed - PPL_dense): 1 recovers dense, 0 is Fixed.

  Elementwise on arrays; NaN / inf where Fixed equals dense (nothing to close).
  """
  p, f, d = (np.asarray(x, np.float64) for x in (ppl_policy, ppl_fixed, ppl_dense))
  with np.errstate(divide="ignore", invalid="ignore"):
    out = (f - p) / (f - d)
  return float(out) if out.ndim == 0 else out


def resample_indices(n_blocks: int, resamples: int, seed: int) -> np.ndarray:
  """[resamples, n_blocks] block indices drawn with replacement; one draw serves all columns."""
  return np.random.default_rng(seed).integers(0, n_blocks, size=(resamples, n_blocks))


def paired_bootstrap(
  nll_a,
  nll_b,
  tokens,
  *,
  nll_dense=None,
  resamples: int = 10_000,
  seed: int = 0,
  level: float = 0.95,
) -> PairedDiff:
  """Difference of A's PPL vs B's, with `level` percentile intervals.

  Args:
    nll_a, nll_b: [blocks] per-block NLL sums of the two columns (same blocks).
    tokens: [blocks] scored tokens per block (or one count for all blocks).
    nll_dense: optional [blocks] dense NLL sums; adds gap_closure(A, B, dense).
    resamples: bootstrap draws; seed: their RNG seed; level: interval coverage.
  """
  cols = [np.asarray(nll_a, np.float64), np.asarray(nll_b, np.float64)]
  if nll_dense is not None:
    cols.append(np.asarray(nll_dense, np.float64))
  nll = np.stack(cols)  # [C, blocks]
  if nll.ndim != 2 or nll.shape[1] == 0:
    raise ValueError(f"per-block NLL must be equal-length non-empty 1-D arrays, got {nll.shape}")
  tok = np.broadcast_to(np.asarray(tokens, np.float64), nll.shape[1:])
  idx = resample_indices(nll.shape[1], resamples, seed)
  # Row 0: all blocks (the point estimate); rows 1..R: the resamples.
  ppl_all = np.exp(nll.sum(1) / tok.sum())[:, None]  # [C, 1]
  tok_boot = tok[idx].sum(-1)  # [R]
  # One column at a time keeps memory at [R, blocks] (not [C, R, blocks]).
  ppl_boot = np.stack([np.exp(col[idx].sum(-1) / tok_boot) for col in nll])  # [C, R]
  ppl = np.concatenate([ppl_all, ppl_boot], axis=1)
  stats = [100.0 * (ppl[0] / ppl[1] - 1.0), ppl[0] - ppl[1]]
  if nll_dense is not None:
    stats.append(gap_closure(ppl[0], ppl[1], ppl[2]))
  tail = 100.0 * (1.0 - level) / 2.0
  out = []
  for s in stats:
    lo, hi = np.percentile(s[1:], [tail, 100.0 - tail])
    out += [float(s[0]), float(lo), float(hi)]
  return PairedDiff(*out)


class PairedDifference(NamedTuple):
  """mean(A - B) over paired items and its percentile bootstrap interval."""

  diff: float
  lo: float
  hi: float


def paired_mean_difference(
  a, b, *, resamples: int = 10_000, seed: int = 0, level: float = 0.95
) -> PairedDifference:
  """A - B averaged over items measured on both (accuracy hits, per-window ΔNLL...),
  with a percentile interval from resampling items (the same draw for A and B)."""
  a, b = (np.asarray(x, np.float64) for x in (a, b))
  if a.shape != b.shape or a.ndim != 1 or a.size == 0:
    raise ValueError(
      f"paired values must be equal-length non-empty 1-D arrays: {a.shape}, {b.shape}"
    )
  d = a - b
  boot = d[resample_indices(d.size, resamples, seed)].mean(-1)
  tail = 100.0 * (1.0 - level) / 2.0
  lo, hi = np.percentile(boot, [tail, 100.0 - tail])
  return PairedDifference(float(d.mean()), float(lo), float(hi))
