"""Static Pareto experiment: PPL vs net keep / relative FLOPs of content-blind and heuristic schedules.

  python -m experiments.static_pareto [CONFIG] [key=value ...] [--out runs/static_pareto]
  e.g.  ... smollm2_3L_cpu sweep.pages=[4,8] sweep.blocks=112 sweep.random_trials=8
            'sweep.budgets=[[0.35,0.6,0.375],[0.5,0.7,8]]' sweep.estimate_only=true

CONFIG defaults to smollm2_3L_cpu (SmolLM2-135M, C = 512, T = 16, report split
`data.eval` = WikiText-2 raw test, read from `data.data_dir`). Per Quest page size:
- every constant action of the config's grid (the 3L grid: 27 columns), Fixed
  matched to each random budget (§12.3), N random trials per budget (§12.4),
  EMC/DAC per budget (§12.5) and a deterministic spread of constant actions of
  the FL grid, all in ONE harness call per batch (one dense prefill): the grid's
  levels are all FL levels, so its schedules run on the FL grid, translated by
  value (a grid outside FL gets a second call for the spread);
- the same random trials on the selection split, to pick best-of-N there and
  report it on the test split, with the oracle (picked on test, method Q13) beside it.

Settings are the `sweep` config section (see --help). Budgets are (κ*, ρ*, η*)
with η* = bits/16 (a third value in 2..16 is read as bits). The reference protocol
scores 112 blocks (7 x 16); the default 64 (4 x 16) test blocks and 32 selection
blocks are what 2 shared CPU cores allow; set sweep.blocks=112 for the protocol
amount. Outputs in --out: static_pareto.csv, static_pareto.png, summary.json and
a TensorBoard run under tb/.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import pathlib
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from experiments import cli
from sol_jax import config as config_lib
from sol_jax import evaluation
from sol_jax.data import text_blocks
from sol_jax.efficiency import ActionSpace, ControlSettings, load_action_variant
from sol_jax.models import load_model, load_tokenizer
from sol_jax.tracking import Tracker

MAX_GRID_ACTIONS = 128  # every grid action is a column; FL's 1560 would not fit a CPU run
# Measured on the 2 shared CPU cores (SmolLM2-135M, fp32): used only for the up-front estimate.
DECODE_ROW_STEPS_PER_S = 220.0
PREFILL_TOKENS_PER_S = 550.0
FIELDS = (
  "page_size",
  "method",
  "schedule",
  "target_kappa",
  "target_rho",
  "target_eta",
  "ppl",
  "avg_keep_effective",
  "avg_prune_keep",
  "avg_quant_ratio",
  "net_keep",
  "relative_flops",
  "tokens",
  "select_ppl",
)
MARKERS = {
  "constant-grid": "o",
  "constant-FL": "d",
  "fixed": "s",
  "random": "x",
  "random-best": "*",
  "random-oracle": "P",
  "emc": "^",
  "dac": "v",
}


# The config keys this script reads, for --help; former flags -> their keys.
KEYS = (
  "sweep",
  "model.source",
  "data.data_dir",
  "data.eval",
  "data.context_len",
  "data.horizon",
  "data.eval_batch_size",
  "eval.dtype",
  "eval.random_seed",
  "eval.progress",
)
MOVED = {
  "pages": "sweep.pages",
  "blocks": "sweep.blocks",
  "select_blocks": "sweep.select_blocks",
  "fl_actions": "sweep.fl_actions",
  "fl_variant": "sweep.fl_variant",
  "random_budgets": "sweep.budgets",
  "random_trials": "sweep.random_trials",
  "select_split": "sweep.select_split",
  "no_progress": "eval.progress=false",
  "estimate_only": "sweep.estimate_only=true",
}


# ----------------------------------------------------------------------------- schedules


def fl_spread(space: ActionSpace, n: int) -> list[int]:
  """n constant actions spread over a grid, deterministically, in priority order: dense,
  single-axis extremes, the diagonal (every axis at the same fraction of its range),
  single-axis quartiles, two-axis extremes, then evenly spaced indices."""
  axes = (space.keep_fracs, space.prune_fracs, space.quant_bits)

  def at(fk, fr, fb):
    pos = []
    for values, f in zip(axes, (fk, fr, fb)):
      v = np.asarray(values, np.float64)
      pos.append(int(np.argmin(np.abs(v - (v.min() + f * (v.max() - v.min()))))))
    return int(space.index_from_levels(*pos))

  cands = [at(1, 1, 1), at(0, 1, 1), at(1, 0, 1), at(1, 1, 0)]
  cands += [at(f, f, f) for f in np.arange(8) / 8]
  cands += [
    at(*(f if i == axis else 1 for i in range(3))) for f in (0.25, 0.5, 0.75) for axis in range(3)
  ]
  cands += [at(0, 0, 1), at(0, 1, 0), at(1, 0, 0)]
  cands += [int(a) for a in np.linspace(0, space.num_actions - 1, max(n, 1)).round()]
  chosen = list(dict.fromkeys(cands))
  for a in range(space.num_actions):  # only if n exceeds the distinct candidates
    if len(chosen) >= n:
      break
    if a not in chosen:
      chosen.append(a)
  return chosen[:n]


def _space(cfg) -> ActionSpace:
  a = cfg.actions
  space = ActionSpace.from_config(a.keep_fracs, a.struct_prune_choices, a.quant_choices)
  if space.num_actions > MAX_GRID_ACTIONS:
    raise ValueError(
      f"the config's grid has {space.num_actions} actions, each a column here; use a "
      f"grid of at most {MAX_GRID_ACTIONS} (e.g. smollm2_3L_cpu); the FL grid is "
      "covered by sweep.fl_actions."
    )
  return space


def _row(page, method, result, budget=None, select_ppl=None) -> dict:
  row = {
    "page_size": page,
    "method": method,
    "schedule": result.name,
    "target_kappa": "",
    "target_rho": "",
    "target_eta": "",
    "select_ppl": select_ppl or "",
  }
  if budget is not None:
    row.update(target_kappa=budget[0], target_rho=budget[1], target_eta=budget[2])
  row.update({k: v for k, v in result.row().items() if k in FIELDS})
  return row


def _fold_fl(sweep, space, fl_space) -> bool:
  """Whether the FL spread can share the main call (every grid level is an FL level)."""
  if not sweep.fl_actions:
    return False
  try:
    evaluation.index_map(space, fl_space)
  except ValueError:
    return False
  return True


def _estimate(sweep, space, fold, n_test, n_sel, c, t) -> dict:
  nb, nt, n_fl = len(sweep.budgets), sweep.random_trials, sweep.fl_actions
  k_main = space.num_actions + nb * (3 + nt) + (n_fl if fold else 0)
  steps = len(sweep.pages) * t * (n_test * (k_main + n_fl * (not fold)) + n_sel * nb * nt)
  tokens = len(sweep.pages) * c * (n_test * (1 + (n_fl > 0 and not fold)) + n_sel)
  seconds = steps / DECODE_ROW_STEPS_PER_S + tokens / PREFILL_TOKENS_PER_S
  return {
    "columns_per_batch": k_main,
    "decode_row_steps": steps,
    "prefill_tokens": tokens,
    "estimated_seconds": round(seconds),
  }


# ----------------------------------------------------------------------------- outputs


def pareto_figure(rows, title):
  fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
  pages = sorted({r["page_size"] for r in rows})
  colours = dict(zip(pages, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
  for ax, x, label in (
    (axes[0], "net_keep", "net keep (κ̄ + ρ̄ + η̄) / 3"),
    (axes[1], "relative_flops", "relative decode FLOPs"),
  ):
    for page in pages:
      for method, marker in MARKERS.items():
        pts = [r for r in rows if r["page_size"] == page and r["method"] == method]
        if pts:
          ax.scatter(
            [r[x] for r in pts],
            [r["ppl"] for r in pts],
            marker=marker,
            color=colours[page],
            alpha=0.45 if method == "random" else 0.9,
            s=60 if method == "random-best" else 28,
          )
    ax.set_yscale("log")
    ax.set_xlabel(label)
    ax.grid(True, which="both", alpha=0.3)
  axes[0].set_ylabel("perplexity (log scale)")
  handles = [plt.Line2D([], [], ls="", marker=m, color="k", label=k) for k, m in MARKERS.items()]
  handles += [
    plt.Line2D([], [], ls="", marker="s", color=colours[p], label=f"Quest page {p}") for p in pages
  ]
  axes[1].legend(handles=handles, fontsize=8, loc="upper right")
  fig.suptitle(title)
  fig.tight_layout()
  return fig


def _csv_text(rows) -> str:
  buf = io.StringIO()
  writer = csv.DictWriter(buf, FIELDS)
  writer.writeheader()
  for r in rows:
    writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
  return buf.getvalue()


def _pareto_front(rows) -> list[dict]:
  """Rows no other row beats on both net keep (lower) and PPL (lower)."""
  point = lambda r: (r["net_keep"], r["ppl"])
  beats = lambda o, r: (
    o["net_keep"] <= r["net_keep"] and o["ppl"] <= r["ppl"] and point(o) != point(r)
  )
  return [r for r in rows if not any(beats(o, r) for o in rows)]


def print_table(page, dense_ppl, budgets, per_budget, grid_rows):
  print(f"\n== Quest page {page}: dense PPL {dense_ppl:.3f} ==")
  print(
    f"{'budget (k, r, e)':<22}{'fixed':>15}{'random mean':>13}{'best(sel)':>11}{'oracle':>9}"
    f"{'emc':>15}{'dac':>15}"
  )
  for b, s in zip(budgets, per_budget):
    cell = lambda r: f"{r['ppl']:8.3f}@{r['net_keep']:.3f}"
    budget = str(tuple(round(x, 3) for x in b))
    print(
      f"{budget:<22}{cell(s['fixed']):>15}{s['random']['mean_ppl']:>13.3f}"
      f"{s['random']['selected_ppl']:>11.3f}{s['random']['oracle_ppl']:>9.3f}{cell(s['emc']):>15}"
      f"{cell(s['dac']):>15}"
    )
  front = sorted(_pareto_front(grid_rows), key=lambda r: r["net_keep"])
  print(
    "constant Pareto front (net keep -> PPL): "
    + ", ".join(f"{r['schedule']} {r['net_keep']:.3f}->{r['ppl']:.2f}" for r in front)
  )


# ----------------------------------------------------------------------------- main


def run_page(page, cfg, space, fl_space, fold, model_cfg, params, test, select, rows, timings):
  settings = dataclasses.replace(ControlSettings.from_config(cfg.actions), page_size=page)
  sweep = cfg.sweep
  kw = dict(
    context_len=cfg.data.context_len,
    horizon=cfg.data.horizon,
    batch_size=cfg.data.eval_batch_size,
    progress=cfg.eval.progress,
  )

  def evaluate(grid, blocks, columns, desc):
    """One `evaluate_plan` call, timed (compilation included) for the summary."""
    start = time.perf_counter()
    out = evaluation.evaluate_plan(
      params, model_cfg, grid, settings, blocks, columns, desc=desc, **kw
    )
    timings.append(
      {
        "call": desc,
        "seconds": round(time.perf_counter() - start, 1),
        "decode_row_steps": len(blocks) * len(columns) * cfg.data.horizon,
        "prefill_tokens": len(blocks) * cfg.data.context_len,
      }
    )
    return out

  budgets, nt = sweep.budgets, sweep.random_trials
  random_cols = [
    evaluation.random_columns(space, b, nt, cfg.eval.random_seed, prefix=f"random b{j}")
    for j, b in enumerate(budgets)
  ]
  columns = (
    evaluation.constant_columns(space)
    + evaluation.fixed_columns(space, budgets, [f"fixed b{j}" for j in range(len(budgets))])
    + [c for cols in random_cols for c in cols]
    + [
      dataclasses.replace(c, name=f"{kind} b{j}")
      for kind in ("emc", "dac")
      for j, c in enumerate(evaluation.heuristic_columns(kind, budgets, space))
    ]
  )
  # Named apart from the grid's columns: a 3L action is also an FL action with the same tag.
  fl_cols = [
    dataclasses.replace(c, name=f"FL {c.name}")
    for c in evaluation.constant_columns(fl_space, fl_spread(fl_space, sweep.fl_actions))
  ]
  main = evaluate(
    fl_space if fold else space,
    test,
    columns + (fl_cols if fold else []),
    f"page {page}: grid + baselines" + (" + FL spread" if fold else ""),
  )
  res = {r.name: r for r in main}
  sel = {
    r.name: r
    for r in evaluate(
      space,
      select,
      [c for cols in random_cols for c in cols],
      f"page {page}: random on {sweep.select_split}",
    )
  }
  grid_rows = [_row(page, "constant-grid", res[space.tags[a]]) for a in range(space.num_actions)]
  rows += grid_rows
  if fl_cols and not fold:
    res.update((r.name, r) for r in evaluate(fl_space, test, fl_cols, f"page {page}: FL spread"))
  rows += [
    _row(page, "constant-FL", dataclasses.replace(res[c.name], name=c.name[3:])) for c in fl_cols
  ]
  per_budget = []
  for j, (b, cols) in enumerate(zip(budgets, random_cols)):
    report, chosen = [res[c.name] for c in cols], [sel[c.name] for c in cols]
    best = evaluation.best_of_n(chosen, report)
    rows += [_row(page, "random", r, b, s.ppl) for r, s in zip(report, chosen)]
    rows.append(_row(page, "random-best", report[best.selected], b, best.selected_select_ppl))
    rows.append(_row(page, "random-oracle", report[best.oracle], b, chosen[best.oracle].ppl))
    entry = {"targets": b, "random": best.row()}
    for method in ("fixed", "emc", "dac"):
      rows.append(_row(page, method, res[f"{method} b{j}"], b))
      entry[method] = rows[-1]
    per_budget.append(entry)
  dense_ppl = res[space.tags[space.dense_index]].ppl
  print_table(page, dense_ppl, budgets, per_budget, grid_rows)
  return {
    "dense_ppl": dense_ppl,
    "budgets": per_budget,
    "grid_pareto_front": [r["schedule"] for r in _pareto_front(grid_rows)],
  }


@cli.main_entry
def main(argv=None):
  cmd = cli.parse(argv, __doc__, KEYS, out="runs/static_pareto", moved=MOVED)
  cfg = cmd.cfg
  sweep = cfg.sweep
  space, fl_space = _space(cfg), load_action_variant(sweep.fl_variant).space
  fold = _fold_fl(sweep, space, fl_space)
  c, t = cfg.data.context_len, cfg.data.horizon
  n_test, n_sel = sweep.blocks, min(sweep.select_blocks, sweep.blocks)
  est = _estimate(sweep, space, fold, n_test, n_sel, c, t)
  print(
    f"static Pareto on {cfg.model.source} ({cfg.name}): C={c}, T={t}, pages {list(sweep.pages)}, "
    f"{n_test} test blocks ({cfg.data.eval}) + {n_sel} selection blocks ({sweep.select_split})\n"
    f"  {est['columns_per_batch']} columns per batch in the main call (FL spread "
    f"{'included' if fold else 'in its own call'}); "
    f"{est['decode_row_steps']:,} decode row-steps + {est['prefill_tokens']:,} prefill tokens "
    f"~ {est['estimated_seconds'] / 60:.1f} min at {DECODE_ROW_STEPS_PER_S:.0f} row-steps/s and "
    f"{PREFILL_TOKENS_PER_S:.0f} tok/s, plus compilation"
  )
  if sweep.estimate_only:
    return {"estimate": est}
  cli.check_data(cfg, cfg.data.eval, sweep.select_split)
  start = time.perf_counter()
  model_cfg, params = load_model(cfg.model.source, dtype=cfg.eval.dtype)
  tokenizer = load_tokenizer(cfg.model.source)
  load = lambda name, n: text_blocks(
    name, tokenizer, cfg.block_len, data_dir=cfg.data.data_dir, max_blocks=n
  )
  test, select = load(cfg.data.eval, n_test), load(sweep.select_split, n_sel)
  for name, want, got in (
    (cfg.data.eval, n_test, len(test)),
    (sweep.select_split, n_sel, len(select)),
  ):
    if got < want:
      print(f"  note: {name} has only {got} blocks of {cfg.block_len} tokens (asked for {want})")
  rows, pages, timings = [], {}, []
  for page in sweep.pages:
    pages[page] = run_page(
      page, cfg, space, fl_space, fold, model_cfg, params, test, select, rows, timings
    )
  seconds = time.perf_counter() - start

  out = pathlib.Path(cmd.out)
  out.mkdir(parents=True, exist_ok=True)
  csv_text = _csv_text(rows)
  (out / "static_pareto.csv").write_text(csv_text)
  title = (
    f"{cfg.model.source}: static schedules, {len(test)} blocks x T={t} after C={c} "
    f"({cfg.data.eval})"
  )
  fig = pareto_figure(rows, title)
  fig.savefig(out / "static_pareto.png", dpi=120)
  summary = {
    "config": config_lib.config_to_dict(cfg),
    "test_blocks": len(test),
    "select_blocks": len(select),
    "select_split": sweep.select_split,
    "pages": pages,
    "random_trials": sweep.random_trials,
    "fl_actions": sweep.fl_actions,
    "estimate": est,
    "seconds": round(seconds, 1),
    "timings": timings,
    "best_of_n_note": "random-best is selected on the selection split and reported on the "
    "test split; random-oracle is selected on the test split itself, as "
    "the reference does (method Q13).",
  }
  (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
  tb_dir = out / "tb" / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
  with Tracker(tb_dir) as tracker:
    tracker.config(cfg)
    tracker.image("static_pareto", fig, 0)
    tracker.text("static_pareto_csv", "```\n" + csv_text + "```", 0)
    for page, info in pages.items():
      scalars = {"dense_ppl": info["dense_ppl"]}
      for j, b in enumerate(info["budgets"]):
        for key in ("selected_ppl", "oracle_ppl", "mean_ppl", "median_ppl"):
          scalars[f"b{j}/random_{key}"] = b["random"][key]
        for method in ("fixed", "emc", "dac"):
          scalars[f"b{j}/{method}_ppl"] = b[method]["ppl"]
          scalars[f"b{j}/{method}_net_keep"] = b[method]["net_keep"]
      tracker.scalars(scalars, 0, prefix=f"static_pareto/page{page}")
  for tm in timings:
    print(
      f"  {tm['call']}: {tm['seconds']} s for {tm['decode_row_steps']:,} row-steps + "
      f"{tm['prefill_tokens']:,} prefill tokens (compilation included)"
    )
  print(
    f"\n{len(rows)} rows in {seconds / 60:.1f} min -> {out}/static_pareto.csv, static_pareto.png, "
    f"summary.json, TensorBoard {tb_dir}"
  )
  return summary


if __name__ == "__main__":
  main()
