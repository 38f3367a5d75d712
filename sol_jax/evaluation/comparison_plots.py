"""Figures for the method comparison log (`comparison_log.write_comparison`).

Each helper returns a `matplotlib.figure.Figure` built without pyplot's global
state (Agg canvas), so it works headless and can be handed to `Tracker.image`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from sol_jax.evaluation.comparison_log import METHODS, row_field


def _figure(width: float, height: float, dpi: int = 80):
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(width, height), dpi=dpi)
  FigureCanvasAgg(fig)
  return fig


def front_figure(rows: Sequence[Any], x: str = "net_keep"):
  """PPL (log scale) against `x` ("net_keep" or "relative_flops"), a line per method."""
  if x not in ("net_keep", "relative_flops"):
    raise ValueError(f"x must be 'net_keep' or 'relative_flops', got {x!r}")
  fig = _figure(6, 4)
  ax = fig.add_subplot()
  rank = {m: i for i, m in enumerate(METHODS)}  # the order, then extras
  methods = sorted(
    {str(row_field(r, "method")) for r in rows}, key=lambda m: (rank.get(m, len(rank)), m)
  )
  for method in methods:
    pts = sorted(
      (float(row_field(r, x)), float(row_field(r, "ppl")))
      for r in rows
      if row_field(r, "method") == method
    )
    xs, ys = zip(*pts)
    ax.plot(xs, ys, "o" if len(pts) == 1 else ".-", label=method)
  ax.set_yscale("log")
  from matplotlib.ticker import FormatStrFormatter  # pylint: disable=g-import-not-at-top

  for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
    axis(FormatStrFormatter("%g"))  # plain numbers, not 1.2x10^1
  ax.set_xlabel(x.replace("_", " "))
  ax.set_ylabel("perplexity (log)")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  return fig


def adherence_figure(requested: Mapping[str, Any], realized: Mapping[str, Any]):
  """Realized against requested budget, one panel per axis, with y = x."""
  axes = [a for a in requested if a in realized]
  if not axes:
    raise ValueError("requested and realized share no axis")
  fig = _figure(3 * len(axes), 3)
  for i, name in enumerate(axes):
    req = np.asarray(requested[name], np.float64).reshape(-1)
    got = np.asarray(realized[name], np.float64).reshape(-1)
    if req.shape != got.shape:
      raise ValueError(f"axis {name!r}: {req.size} requested vs {got.size} realized values")
    ax = fig.add_subplot(1, len(axes), i + 1)
    lo, hi = min(req.min(), got.min()), max(req.max(), got.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
    ax.plot(req, got, "o", ms=4)
    ax.set_title(name)
    ax.set_xlabel("requested")
    ax.set_ylabel("realized" if i == 0 else "")
    ax.set_aspect("equal", adjustable="datalim")
  fig.tight_layout()
  return fig


def _label(token: str, width: int = 8) -> str:
  # `$` would start mathtext; newlines would break the cell.
  text = token.replace("\n", "\\n").replace("$", r"\$")
  return text if len(text) <= width else text[: width - 1] + "…"


def action_heatmap(
  tokens: Sequence[str], kappa: Any, rho: Any, bits: Any, *, full_bits: int = 16, per_line: int = 16
):
  """One passage: per token, cells for κ, ρ and η = bits / full_bits.

  Tokens wrap every `per_line`; each line is a text row over three colour rows
  (brighter = more compute), each cell annotated with its value.
  """
  vals = np.stack([np.asarray(v, np.float64).reshape(-1) for v in (kappa, rho, bits)])
  if vals.shape[1] != len(tokens):
    raise ValueError(f"{len(tokens)} tokens but action arrays of shape {vals.shape[1:]}")
  frac = vals / np.array([[1.0], [1.0], [float(full_bits)]])
  n_lines = -(-len(tokens) // per_line)
  grid = np.full((4 * n_lines, per_line), np.nan)  # rows: text, κ, ρ, η per line
  fig = _figure(0.8 * per_line + 0.6, 1.0 * n_lines + 0.4, dpi=100)
  ax = fig.add_subplot()
  for i, tok in enumerate(tokens):
    line, col = divmod(i, per_line)
    grid[4 * line + 1 : 4 * line + 4, col] = frac[:, i]
    ax.text(col, 4 * line, _label(tok), ha="center", va="center", fontsize=8)
    for a in range(3):
      v = vals[a, i]
      txt = f"{v:.0f}" if a == 2 else f"{v:.2f}"
      color = "white" if frac[a, i] < 0.5 else "black"  # legible on dark viridis
      ax.text(col, 4 * line + 1 + a, txt, ha="center", va="center", fontsize=6, color=color)
  import matplotlib  # pylint: disable=g-import-not-at-top

  cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
  im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto")
  ax.set_yticks(range(4 * n_lines), ["", "κ", "ρ", "η"] * n_lines, fontsize=6)
  ax.set_xticks([])
  fig.colorbar(im, ax=ax, fraction=0.02, pad=0.01, label="compute fraction")
  fig.tight_layout()
  return fig


def schedule_heatmap(tokens: Sequence[str], actions: Any, space, *, per_line: int = 16):
  """`action_heatmap` of flat action indices of `space` (one per token)."""
  ki, ri, bi = space.levels_of(np.asarray(actions).reshape(-1))
  return action_heatmap(
    tokens,
    np.asarray(space.keep_fracs)[ki],
    np.asarray(space.prune_fracs)[ri],
    np.asarray(space.quant_bits)[bi],
    per_line=per_line,
  )
