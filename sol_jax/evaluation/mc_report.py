"""Multiple-choice results: accuracies, realized budgets and paired intervals.

- acc: the choice with the largest log-likelihood (sum of its token log-probs) is
  the label; acc_norm: the largest log-likelihood divided by the choice's length
  in characters (`len(choice)`, without the delimiter; lm-eval's acc_norm divides
  by the same string length, which equals the byte length for ASCII text). Ties
  go to the first choice (argmax).
- Realized budgets pool every effective continuation step of every choice of
  every item (method §7), as `budget.realized_averages` pools them.
- `paired_accuracy`: A's accuracy minus B's on the same items, with a percentile
  interval from resampling items (the same draw for both; `intervals`).
- With subjects (MMLU): micro = the mean over items, macro = the mean of the
  per-subject accuracies.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from sol_jax.data.mc_tasks import MCItem
from sol_jax.efficiency import budget
from sol_jax.efficiency.actions import ActionSpace
from sol_jax.evaluation.intervals import paired_mean_difference
from sol_jax.evaluation.multiple_choice import ItemScores


def correct(items: Sequence[MCItem], scores: Sequence[ItemScores]) -> tuple[np.ndarray, np.ndarray]:
  """([N] bool acc, [N] bool acc_norm) per item."""
  acc, norm = [], []
  for item, s in zip(items, scores):
    lengths = np.asarray([max(len(c), 1) for c in item.choices], np.float64)
    acc.append(int(np.argmax(s.loglik)) == item.label)
    norm.append(int(np.argmax(s.loglik / lengths)) == item.label)
  return np.asarray(acc, bool), np.asarray(norm, bool)


def realized_budgets(scores: Sequence[ItemScores], space: ActionSpace) -> dict[str, float]:
  """Pooled realized budgets of every scored step; a dense step (-1) counts as uncompressed."""
  acts = np.concatenate([a for s in scores for a in s.actions])
  eff = np.concatenate([e for s in scores for e in s.effective]).astype(np.float64)
  dense, safe = acts < 0, np.where(acts < 0, 0, acts)
  level = lambda values: np.where(dense, 1.0, np.asarray(values, np.float64)[safe])
  usage = budget.Usage(
    *(float(np.sum(eff * level(v))) for v in (space.kappa, space.rho, space.eta)),
    float(np.sum(eff)),
  )
  out = {k: float(v) for k, v in budget.realized_averages(usage).items()}
  out["net_keep"] = float(
    budget.net_keep(out["avg_keep_effective"], out["avg_prune_keep"], out["avg_quant_ratio"])
  )
  out["scored_tokens"] = float(acts.size)
  out["effective_steps"] = float(usage.count)
  return out


def subject_accuracy(items: Sequence[MCItem], hits: np.ndarray) -> dict[str, float]:
  """{subject: accuracy}; empty when the items have no subjects."""
  subjects = sorted({it.subject for it in items if it.subject})
  labels = np.asarray([it.subject for it in items])
  return {s: float(np.mean(hits[labels == s])) for s in subjects}


def summary(items: Sequence[MCItem], scores: Sequence[ItemScores], space: ActionSpace) -> dict:
  """acc, acc_norm (micro), their macro averages over subjects if any, budgets, item count."""
  acc, norm = correct(items, scores)
  out = {"items": len(items), "acc": float(np.mean(acc)), "acc_norm": float(np.mean(norm))}
  per = subject_accuracy(items, acc)
  if per:
    out["acc_macro"] = float(np.mean(list(per.values())))
    out["acc_norm_macro"] = float(np.mean(list(subject_accuracy(items, norm).values())))
    out["subjects"] = per
  return out | realized_budgets(scores, space)


class PairedAccuracy(NamedTuple):
  """A minus B in accuracy points (x100), on all items and its percentile interval."""

  diff: float
  lo: float
  hi: float


def paired_accuracy(
  hits_a, hits_b, *, resamples: int = 10_000, seed: int = 0, level: float = 0.95
) -> PairedAccuracy:
  d = paired_mean_difference(hits_a, hits_b, resamples=resamples, seed=seed, level=level)
  return PairedAccuracy(*(100.0 * v for v in d))
