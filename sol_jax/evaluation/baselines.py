"""Static baselines as schedule columns: constant, Fixed (§12.3), Random (§12.4), EMC/DAC (§12.5).

A `Column` describes one schedule family; `evaluate_plan` runs any mix of
columns over the same blocks in ONE harness call per batch (one shared dense
prefill), through `MixedProvider` when a heuristic column is present.
Generators are built fresh from each column's factory on every evaluation, so
random trial i replays the same seed `trial_seed(i)` on every split. A column
may index a smaller grid (`Column.grid`, e.g. 3L) than the execution grid (e.g.
FL) as long as its levels are in it: its actions are translated by value.

Best-of-N (spec §12.4, Q13): the reference picks the random trial with the
lowest PPL on the very blocks it reports (an oracle). `best_of_n` selects on a
separate selection split and reports the selected trial on the report split,
with the oracle number beside it; we report both.
"""
from __future__ import annotations

import dataclasses
import statistics
from typing import Callable, Optional, Sequence, Union

import jax.numpy as jnp
import numpy as np

from sol_jax.efficiency.actions import ActionSpace
from sol_jax.efficiency.controls import ControlSettings
from sol_jax.evaluation.fixed import FixedAllocator
from sol_jax.evaluation.harness import StaticSchedule
from sol_jax.evaluation.providers import DAC, EMC, STATIC, MixedInputs, MixedProvider
from sol_jax.evaluation.random_schedules import BASE_SEED, RandomScheduler, trial_seed
from sol_jax.evaluation.schedule_eval import (ColumnResult, ConstantGenerator, effective_steps,
                                             evaluate_columns)
from sol_jax.models.config import ModelConfig

_KINDS = {"static": STATIC, "emc": EMC, "dac": DAC}
_NO_TARGETS = (1.0, 1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Column:
  """One schedule column: a static generator factory, or a heuristic with targets."""
  name: str
  kind: str = "static"  # "static", "emc" or "dac"
  make: Optional[Callable[[], object]] = None  # -> generator with .next_batch(rows, T, eff)
  targets: tuple[float, float, float] = _NO_TARGETS  # (κ*, ρ*, η*) for heuristics
  grid: Optional[ActionSpace] = None  # the grid its actions index; None: the execution grid

  def __post_init__(self):
    if self.kind not in _KINDS:
      raise ValueError(f"column {self.name!r}: kind {self.kind!r}; use one of {tuple(_KINDS)}.")
    if (self.kind == "static") != (self.make is not None):
      raise ValueError(f"column {self.name!r}: static columns need `make`, heuristic ones must not.")


def constant_columns(space: ActionSpace, actions: Optional[Sequence[int]] = None) -> list[Column]:
  """One column per constant action (all of the grid by default), named by its tag."""
  actions = range(space.num_actions) if actions is None else actions
  return [Column(space.tags[a], make=lambda a=int(a): ConstantGenerator(a), grid=space) for a in actions]


def fixed_columns(space: ActionSpace, targets: Sequence[Sequence[float]],
                  names: Optional[Sequence[str]] = None) -> list[Column]:
  """Fixed matched to each target triple (κ̄, ρ̄, η̄): one `FixedAllocator` per column."""
  names = names or [f"fixed {_fmt(t)}" for t in targets]
  return [Column(n, make=lambda t=tuple(t): FixedAllocator(space, t), grid=space)
          for n, t in zip(names, targets)]


def random_columns(space: ActionSpace, targets: Sequence[float], trials: int,
                   base_seed: int = BASE_SEED, prefix: Optional[str] = None) -> list[Column]:
  """N random matched-budget trials; trial i is seeded `trial_seed(i, base_seed)`."""
  if trials < 1:
    raise ValueError(f"random trials must be >= 1, got {trials}.")
  prefix = prefix or f"random {_fmt(targets)}"
  return [Column(f"{prefix} trial {i}",
                 make=lambda i=i: RandomScheduler(space, targets, trial_seed(i, base_seed)), grid=space)
          for i in range(trials)]


def heuristic_columns(kind: str, targets: Sequence[Sequence[float]],
                      space: Optional[ActionSpace] = None) -> list[Column]:
  """EMC or DAC at each target triple, choosing on `space` (None: the execution grid)."""
  return [Column(f"{kind} {_fmt(t)}", kind, targets=tuple(float(x) for x in t), grid=space)
          for t in targets]


def index_map(src: ActionSpace, dst: ActionSpace) -> np.ndarray:
  """[src.num_actions] index in `dst` of each `src` action, matched by (κ, ρ, b) value.

  ValueError if some src level is not in dst (e.g. 3L -> FL works, FL -> 3L does not).
  """
  levels = zip(*src.levels_of(np.arange(src.num_actions)))
  return np.asarray([dst.lookup(src.keep_fracs[i], src.prune_fracs[j], src.quant_bits[k])
                     for i, j, k in levels], np.int32)


def evaluate_plan(params, cfg: ModelConfig, space: ActionSpace, settings: ControlSettings,
                  blocks: np.ndarray, columns: Sequence[Column], *, context_len: int, horizon: int,
                  batch_size: int, progress: bool = True, desc: str = "schedules") -> list[ColumnResult]:
  """All `columns` side by side over `blocks`, one harness call per batch."""
  if not columns:
    raise ValueError("evaluate_plan needs at least one column.")
  eff = effective_steps(context_len, horizon, settings)
  maps = {g: index_map(g, space) for g in {c.grid for c in columns} if g not in (None, space)}
  to_exec = [maps.get(c.grid) for c in columns]
  gens = [c.make() if c.make else None for c in columns]
  kind = jnp.asarray([_KINDS[c.kind] for c in columns], jnp.int32)
  targets = np.asarray([c.targets for c in columns], np.float32)

  def static(rows):
    out = np.full((rows, len(columns), horizon), space.forced_dense_index, np.int32)
    for j, g in enumerate(gens):
      if g is not None:
        acts = g.next_batch(rows, horizon, eff)
        out[:, j] = acts if to_exec[j] is None else to_exec[j][acts]
    return jnp.asarray(out)

  heuristic_grids = {c.grid or space for c in columns if c.kind != "static"}
  if not heuristic_grids:
    provider, inputs = StaticSchedule(), lambda _, rows: static(rows)
  else:
    if len(heuristic_grids) > 1:
      raise ValueError("all heuristic columns of one plan must choose on the same grid.")
    (grid,) = heuristic_grids
    provider = MixedProvider(grid, None if grid == space else tuple(int(i) for i in maps[grid]))
    inputs = lambda _, rows: MixedInputs(static(rows), jnp.broadcast_to(targets, (rows,) + targets.shape),
                                         kind)
  return evaluate_columns(params, cfg, space, settings, blocks, context_len=context_len,
                          horizon=horizon, batch_size=batch_size, names=[c.name for c in columns],
                          batch_inputs=inputs, provider=provider, progress=progress, desc=desc)


def fixed_matched(params, cfg: ModelConfig, space: ActionSpace, settings: ControlSettings,
                  blocks: np.ndarray, targets: Sequence[Sequence[float]],
                  **kwargs) -> list[ColumnResult]:
  """Fixed matched to given realized averages (κ̄, ρ̄, η̄), one column per triple."""
  return evaluate_plan(params, cfg, space, settings, blocks, fixed_columns(space, targets), **kwargs)


def random_trials(params, cfg: ModelConfig, space: ActionSpace, settings: ControlSettings,
                  blocks: np.ndarray, targets: Sequence[float], trials: int,
                  base_seed: int = BASE_SEED, **kwargs) -> list[ColumnResult]:
  """N random trials at one budget as N columns of one run."""
  return evaluate_plan(params, cfg, space, settings, blocks,
                       random_columns(space, targets, trials, base_seed), **kwargs)


@dataclasses.dataclass
class BestOfN:
  """Best-of-N random: selected on one split, reported on another, oracle beside it."""
  trials: int
  selected: int  # trial index with the lowest selection-split PPL
  selected_select_ppl: float
  selected_ppl: float  # that trial's report-split PPL: the honest best-of-N number
  oracle: int  # trial index with the lowest report-split PPL (the reference's number, Q13)
  oracle_ppl: float
  mean_ppl: float  # report-split statistics over all trials
  median_ppl: float
  min_ppl: float
  max_ppl: float

  def row(self) -> dict:
    return dataclasses.asdict(self)


def best_of_n(select_results: Sequence[Union[ColumnResult, float]],
              report_results: Sequence[Union[ColumnResult, float]]) -> BestOfN:
  """Trial i of both lists must be the same schedule seed (e.g. `random_trials` on two splits)."""
  if not select_results or len(select_results) != len(report_results):
    raise ValueError(f"best_of_n needs the same non-zero number of trials on both splits, got "
                     f"{len(select_results)} selection and {len(report_results)} report results.")
  for s, r in zip(select_results, report_results):
    if isinstance(s, ColumnResult) and isinstance(r, ColumnResult) and s.name != r.name:
      raise ValueError(f"trial mismatch: selection {s.name!r} vs report {r.name!r}; pass the "
                       "same trials in the same order on both splits.")
  sel = [float(getattr(x, "ppl", x)) for x in select_results]
  rep = [float(getattr(x, "ppl", x)) for x in report_results]
  i, j = int(np.argmin(sel)), int(np.argmin(rep))
  return BestOfN(trials=len(rep), selected=i, selected_select_ppl=sel[i], selected_ppl=rep[i],
                 oracle=j, oracle_ppl=rep[j], mean_ppl=statistics.fmean(rep),
                 median_ppl=statistics.median(rep), min_ppl=min(rep), max_ppl=max(rep))


def _fmt(t: Sequence[float]) -> str:
  return "(" + ", ".join(f"{float(x):.3g}" for x in t) + ")"
