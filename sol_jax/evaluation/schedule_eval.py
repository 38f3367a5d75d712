"""Schedule columns and the batch loop around `harness.run_controlled`.

Column k of every batch is one schedule family (a constant action, a Fixed
allocator, a random trial, a heuristic...): `Column` describes it, and
`ColumnResult` holds its PPL and realized budgets. Each column's PPL pools all
its scored tokens; its budgets pool all its effective steps (method §7, §12.1).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional, Sequence

import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from sol_jax.efficiency import budget, flops
from sol_jax.efficiency.actions import ActionSpace, is_effective
from sol_jax.efficiency.controls import ControlSettings
from sol_jax.evaluation.harness import StaticSchedule, run_controlled
from sol_jax.evaluation.perplexity import batches
from sol_jax.models.config import ModelConfig

COLUMN_KINDS = ("static", "emc", "dac")


@dataclasses.dataclass(frozen=True)
class Column:
  """One schedule column: a static generator factory, or a heuristic with targets.

  Built by `constant_columns`, `fixed_columns`, `random_columns` and
  `heuristic_columns`; run side by side by `plan.evaluate_plan`.
  """

  name: str
  kind: str = "static"  # one of COLUMN_KINDS
  make: Optional[Callable[[], object]] = None  # -> generator with .next_batch(rows, T, eff)
  targets: tuple[float, float, float] = (1.0, 1.0, 1.0)  # (κ*, ρ*, η*) for heuristics
  grid: Optional[ActionSpace] = None  # the grid its actions index; None: the execution grid

  def __post_init__(self):
    if self.kind not in COLUMN_KINDS:
      raise ValueError(f"column {self.name!r}: kind {self.kind!r}; use one of {COLUMN_KINDS}.")
    if (self.kind == "static") != (self.make is not None):
      raise ValueError(
        f"column {self.name!r}: static columns need `make`, heuristic ones must not."
      )


@dataclasses.dataclass
class ColumnResult:
  name: str
  ppl: float
  tokens: int
  avg_keep_effective: float
  avg_prune_keep: float
  avg_quant_ratio: float
  net_keep: float
  relative_flops: float
  # Per-block float64 NLL sums and scored-token counts, for the paired bootstrap
  # (`intervals.paired_bootstrap`): PPL = exp(sum(nll_sum) / sum(tokens)).
  block_nll_sum: Optional[np.ndarray] = None  # [blocks]
  block_tokens: Optional[np.ndarray] = None  # [blocks]
  # The executed action of every controlled step, [blocks, T] int32: replayable
  # in another batch layout (`constant.ReplaySchedule`) and drawn as a heat map.
  block_actions: Optional[np.ndarray] = None
  block_nll: Optional[np.ndarray] = None  # [blocks, T] per-step NLL (per-token analyses)

  def row(self) -> dict:
    """The scalar fields (no per-block arrays), for CSV / JSON rows."""
    return {
      f.name: getattr(self, f.name)
      for f in dataclasses.fields(self)
      if f.name not in ("block_nll_sum", "block_tokens", "block_actions", "block_nll")
    }


def evaluate_columns(
  params,
  cfg: ModelConfig,
  space: ActionSpace,
  settings: ControlSettings,
  blocks: np.ndarray,
  *,
  context_len: int,
  horizon: int,
  batch_size: int,
  names: Sequence[str],
  batch_inputs: Callable[[int, int], object],
  provider=None,
  progress: bool = True,
  desc: str = "schedules",
) -> list[ColumnResult]:
  """Runs every batch of blocks with K = len(names) schedule columns.

  batch_inputs(batch_index, rows) -> the provider's inputs for that batch.
  provider: None runs the precomputed schedules of `batch_inputs` (StaticSchedule).
  """
  provider = StaticSchedule() if provider is None else provider
  k = len(names)
  nll, actions, effective = [], [], None
  for i, batch in enumerate(
    tqdm(list(batches(blocks, batch_size)), desc=desc, disable=not progress)
  ):
    out = run_controlled(
      params,
      jnp.asarray(batch),
      batch_inputs(i, len(batch)),
      cfg=cfg,
      space=space,
      settings=settings,
      provider=provider,
      context_len=context_len,
      horizon=horizon,
      schedules=k,
    )
    nll.append(np.asarray(out.nll))
    actions.append(np.asarray(out.actions))
    effective = np.asarray(out.effective)
  nll, actions = np.concatenate(nll), np.concatenate(actions)  # [N, K, T]
  kv_len = context_len + 1 + np.arange(horizon)
  results = []
  for j, name in enumerate(names):
    acts = actions[:, j]
    real = {key: float(v) for key, v in budget.pooled_realized(acts, effective, space).items()}
    rel = float(flops.schedule_relative_flops(cfg, space, acts, kv_len))
    results.append(
      ColumnResult(
        name=name,
        ppl=math.exp(float(nll[:, j].mean(dtype=np.float64))),
        tokens=int(nll[:, j].size),
        net_keep=float(
          budget.net_keep(
            real["avg_keep_effective"], real["avg_prune_keep"], real["avg_quant_ratio"]
          )
        ),
        relative_flops=rel,
        block_nll_sum=nll[:, j].sum(-1, dtype=np.float64),
        block_tokens=np.full(len(nll), nll.shape[-1]),  # every block scores its T steps
        block_actions=acts.astype(np.int32),
        block_nll=nll[:, j],
        **real,
      )
    )
  return results


def effective_steps(context_len: int, horizon: int, settings: ControlSettings) -> np.ndarray:
  """[T] bool: which controlled steps may compress (method §4.6)."""
  kv_len = context_len + 1 + np.arange(horizon)
  return np.asarray(is_effective(kv_len, settings.sink_tokens, settings.window_tokens))


def static_inputs(
  generators: Sequence, horizon: int, effective: Optional[np.ndarray] = None
) -> Callable[[int, int], jnp.ndarray]:
  """Stacks K schedule generators into [B, K, T] inputs.

  Every generator has `.next_batch(rows, T, effective)`; `effective` [T] says
  which steps may compress, so Fixed / Random spend their budget only there.
  """

  def inputs(_, rows):
    return jnp.asarray(
      np.stack([g.next_batch(rows, horizon, effective) for g in generators], axis=1)
    )

  return inputs
