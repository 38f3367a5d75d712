"""Long-generation quality (method §12.7): repetition and diversity of continuations.

- seq-rep-n (Welleck et al. 2019): within one continuation, the fraction of its
  n-grams that are repeats, 1 - unique / total; averaged over continuations.
  Sparse attention that slides into a loop drives it towards 1.
- distinct-n (Li et al. 2016): unique / total n-grams over all continuations of a
  method together (diversity across prompts).
- The continuation's mean log-probability under the dense model (teacher-forced):
  how likely the uncompressed model finds what the compressed one wrote.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def ngrams(tokens: Sequence[int], n: int) -> list[tuple[int, ...]]:
  t = list(tokens)
  return [tuple(t[i : i + n]) for i in range(len(t) - n + 1)]


def seq_rep(tokens: Sequence[int], n: int) -> float:
  """1 - unique / total n-grams of one sequence (0 without any n-gram)."""
  grams = ngrams(tokens, n)
  return 0.0 if not grams else 1.0 - len(set(grams)) / len(grams)


def distinct(sequences: Sequence[Sequence[int]], n: int) -> float:
  """unique / total n-grams pooled over sequences (0 without any n-gram)."""
  grams = [g for s in sequences for g in ngrams(s, n)]
  return 0.0 if not grams else len(set(grams)) / len(grams)


def repetition_table(sequences: Sequence[Sequence[int]], orders: Sequence[int]) -> dict[str, float]:
  """{"seq_rep_n": mean over sequences, "distinct_n": pooled} for every n in orders."""
  out = {}
  for n in orders:
    out[f"seq_rep_{n}"] = float(np.mean([seq_rep(s, n) for s in sequences]))
    out[f"distinct_{n}"] = distinct(sequences, n)
  return out
