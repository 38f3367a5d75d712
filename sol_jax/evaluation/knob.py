"""The one-number budget knob: k in [0, 1] -> requested targets (κ*, ρ*, η*) (issue 10).

A path is a list of anchor triples from the tightest budget (k = 0) to the
loosest (k = 1), placed at equal knob spacing; k between two anchors
interpolates them linearly. The default path is the grid's diagonal: every
axis moves from its lowest level to its highest at the same fraction k, so
the requested net keep (κ* + ρ* + η*) / 3 is linear in k. A path fitted to a
trained policy's front (cheapest axes first) is passed as `eval.knob_path`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from sol_jax.efficiency.actions import ActionSpace
from sol_jax.evaluation.axis_levels import axis_levels

Triple = tuple[float, float, float]


def diagonal_path(space: ActionSpace) -> tuple[Triple, Triple]:
  """(lowest level of every axis, highest level of every axis), η as bits/16."""
  axes = axis_levels(space)
  return tuple(ax.vmin for ax in axes), tuple(ax.vmax for ax in axes)


def knob_targets(
  knob: Sequence[float], space: ActionSpace, path: Optional[Sequence[Sequence[float]]] = None
) -> tuple[Triple, ...]:
  """One (κ*, ρ*, η*) per knob value, along `path` (None: `diagonal_path(space)`)."""
  anchors = np.asarray(path if path is not None else diagonal_path(space), np.float64)
  if anchors.ndim != 2 or anchors.shape[1] != 3 or len(anchors) < 2:
    raise ValueError(
      f"a knob path needs at least two [kappa, rho, eta] anchors, got shape {anchors.shape}"
    )
  values = np.asarray(knob, np.float64).reshape(-1)
  if values.size == 0 or not np.all((values >= 0.0) & (values <= 1.0)):
    raise ValueError(f"budget knob values must be in [0, 1], got {list(knob)}")
  pos = np.linspace(0.0, 1.0, len(anchors))
  cols = [np.interp(values, pos, anchors[:, a]) for a in range(3)]
  return tuple(tuple(float(c[i]) for c in cols) for i in range(values.size))


def requested_targets(eval_cfg, space: ActionSpace) -> tuple[Triple, ...]:
  """The targets a script conditions the policy on: `eval.knob` if set, else `eval.budgets`."""
  if eval_cfg.knob is None:
    return tuple(tuple(b) for b in eval_cfg.budgets)
  return knob_targets(eval_cfg.knob, space, eval_cfg.knob_path)
