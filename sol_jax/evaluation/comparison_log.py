"""One TensorBoard log directory comparing methods across operating points.

Layout (`write_comparison`): one run (subdirectory) per method, so the run
selector overlays methods, plus a `summary` run holding the images and text.

Scalars per method run: `ppl`, `net_keep`, `relative_flops` and
`realized/{kappa,rho,eta}`. Their step is the operating point's index: the
distinct `point` ids are sorted by the net keep of the policy's row at that
point (ties by id) and numbered 0..P-1; every method's row at a point gets that
point's index, so one x position compares all methods at one operating point.
A row without `point` takes its ordinal among its method's rows. A method with
no row at a point simply has no scalar at that step.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping, Optional, Sequence, Union

from sol_jax.config import ExperimentConfig, config_to_yaml
from sol_jax.tracking import Tracker

METHODS = (
  "policy",
  "fixed",
  "fixed_step",
  "shuffled",
  "random_best",
  "random_oracle",
  "emc",
  "dac",
  "dense",
)
SUMMARY_RUN = "summary"
SCALARS = ("ppl", "net_keep", "relative_flops")
REALIZED = ("kappa", "rho", "eta")


def row_field(row: Any, key: str, default: Any = None) -> Any:
  """`row[key]` for a mapping, else the attribute (dataclass records)."""
  if isinstance(row, Mapping):
    return row.get(key, default)
  return getattr(row, key, default)


def _point_ids(rows: Sequence[Any]) -> list:
  seen, out = {}, []
  for row in rows:
    method = row_field(row, "method")
    point = row_field(row, "point")
    out.append(seen.get(method, 0) if point is None else point)
    seen[method] = seen.get(method, 0) + 1
  return out


def operating_points(rows: Sequence[Any], sort_method: str = "policy") -> dict:
  """{point id: index}, indices increasing in `sort_method`'s net keep."""
  keys = [(row_field(r, "method"), p) for r, p in zip(rows, _point_ids(rows))]
  keep = {p: float(row_field(r, "net_keep")) for r, (m, p) in zip(rows, keys) if m == sort_method}
  missing = sorted({p for _, p in keys} - set(keep), key=str)
  if missing:
    raise ValueError(f"points {missing} have no {sort_method!r} row to order them by net keep")
  order = sorted(keep, key=lambda p: (keep[p], str(p)))
  return {p: i for i, p in enumerate(order)}


def results_markdown(rows: Sequence[Any], index: Mapping[Any, int]) -> str:
  """A markdown table of every row, ordered by operating point then method."""
  cols = ("point", "method") + SCALARS + REALIZED
  lines = ["| index | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
  rank = {m: i for i, m in enumerate(METHODS)}
  body = sorted(
    zip(_point_ids(rows), rows),
    key=lambda pr: (index[pr[0]], rank.get(row_field(pr[1], "method"), len(rank))),
  )
  for point, row in body:
    cells = [str(index[point]), str(point), str(row_field(row, "method"))]
    cells += [f"{float(row_field(row, c)):.4g}" for c in SCALARS + REALIZED]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def write_comparison(
  logdir: Union[str, pathlib.Path],
  rows: Sequence[Any],
  *,
  config: Union[ExperimentConfig, str, None] = None,
  table_markdown: Optional[str] = None,
  images: Optional[Mapping[str, Any]] = None,
  sort_method: str = "policy",
  enabled: Optional[bool] = None,
) -> dict:
  """Writes the comparison; returns {point id: step index}.

  `rows`: dicts or records with `method`, `ppl`, `net_keep`, `relative_flops`,
  realized `kappa`, `rho`, `eta` and optionally `point`. The `summary` run gets
  `images` ({tag: figure or array}, step 0), the config as YAML (text tag
  `config`), `table_markdown` or else `results_markdown` (text tag `results`).
  """
  logdir = pathlib.Path(logdir)
  index = operating_points(rows, sort_method)
  by_method: dict = {}
  for point, row in zip(_point_ids(rows), rows):
    by_method.setdefault(str(row_field(row, "method")), []).append((index[point], row))
  if SUMMARY_RUN in by_method:
    raise ValueError(f"method name {SUMMARY_RUN!r} is reserved for the summary run")
  for method, entries in by_method.items():  # validate all before writing any
    steps = [s for s, _ in entries]
    if len(set(steps)) != len(steps):
      raise ValueError(f"method {method!r} has several rows at one operating point")
  for method, entries in by_method.items():
    with Tracker(logdir / method, enabled=enabled) as t:
      for step, row in sorted(entries, key=lambda e: e[0]):
        t.scalars({k: row_field(row, k) for k in SCALARS}, step)
        t.scalars({k: row_field(row, k) for k in REALIZED}, step, prefix="realized")
  with Tracker(logdir / SUMMARY_RUN, enabled=enabled) as t:
    for tag, image in (images or {}).items():
      t.image(tag, image, 0)
    if config is not None:
      text = config if isinstance(config, str) else config_to_yaml(config)
      t.text("config", "```yaml\n" + text + "```", 0)
    t.text("results", table_markdown or results_markdown(rows, index), 0)
  return index
