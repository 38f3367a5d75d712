"""Any mix of schedule columns over the same blocks, in ONE harness call per batch.

The columns come from the baselines' own modules: `constant.constant_columns`,
`fixed.fixed_columns` (§12.3), `random_schedules.random_columns` (§12.4) and
`providers.heuristic_columns` (EMC/DAC, §12.5). All of them share one dense
prefill per batch; a plan with a heuristic column runs through `MixedProvider`.
Generators are built fresh from each column's factory on every evaluation, so
random trial i replays the same seed `trial_seed(i)` on every split. A column
may index a smaller grid (`Column.grid`, e.g. 3L) than the execution grid (e.g.
FL) as long as its levels are in it: its actions are translated by value.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from sol_jax.efficiency.actions import ActionSpace
from sol_jax.efficiency.controls import ControlSettings
from sol_jax.evaluation.harness import StaticSchedule
from sol_jax.evaluation.providers import DAC, EMC, STATIC, MixedInputs, MixedProvider
from sol_jax.evaluation.schedule_eval import Column, ColumnResult, effective_steps, evaluate_columns
from sol_jax.models.config import ModelConfig

_KIND_CODES = {"static": STATIC, "emc": EMC, "dac": DAC}


def index_map(src: ActionSpace, dst: ActionSpace) -> np.ndarray:
  """[src.num_actions] index in `dst` of each `src` action, matched by (κ, ρ, b) value.

  ValueError if some src level is not in dst (e.g. 3L -> FL works, FL -> 3L does not).
  """
  levels = zip(*src.levels_of(np.arange(src.num_actions)))
  return np.asarray(
    [dst.lookup(src.keep_fracs[i], src.prune_fracs[j], src.quant_bits[k]) for i, j, k in levels],
    np.int32,
  )


def evaluate_plan(
  params,
  cfg: ModelConfig,
  space: ActionSpace,
  settings: ControlSettings,
  blocks: np.ndarray,
  columns: Sequence[Column],
  *,
  context_len: int,
  horizon: int,
  batch_size: int,
  progress: bool = True,
  desc: str = "schedules",
) -> list[ColumnResult]:
  """All `columns` side by side over `blocks`, one harness call per batch."""
  if not columns:
    raise ValueError("evaluate_plan needs at least one column.")
  eff = effective_steps(context_len, horizon, settings)
  maps = {g: index_map(g, space) for g in {c.grid for c in columns} if g not in (None, space)}
  to_exec = [maps.get(c.grid) for c in columns]
  gens = [c.make() if c.make else None for c in columns]
  kind = jnp.asarray([_KIND_CODES[c.kind] for c in columns], jnp.int32)
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
    inputs = lambda _, rows: MixedInputs(
      static(rows), jnp.broadcast_to(targets, (rows,) + targets.shape), kind
    )
  return evaluate_columns(
    params,
    cfg,
    space,
    settings,
    blocks,
    context_len=context_len,
    horizon=horizon,
    batch_size=batch_size,
    names=[c.name for c in columns],
    batch_inputs=inputs,
    provider=provider,
    progress=progress,
    desc=desc,
  )
