"""The trained policy's Pareto front against every baseline (method §12.2-12.5).

  python -m experiments.front [CONFIG] [key=value ...] [--out DIR]
  e.g.  ... eval.policy=smollm2_3L_cpu/seed1 data.eval_batches=0
        ... eval.policy=smollm2_3L_cpu/seed1 data.eval=gutenberg-heldout-test
              front.select_split=gutenberg-heldout-valid

At each operating point (front.knob positions along eval.knob_path, or
front.requested triples) the greedy policy is run on the report split
(data.eval, data.eval_batches x data.eval_batch_size blocks; 0: all), then
Fixed, front.random_trials random schedules, EMC and DAC matched to the
policy's realized (κ̄, ρ̄, η̄), and dense. Best-of-N random is selected on
front.select_split and reported on data.eval, the oracle beside it. Every
policy-vs-method difference has a 95 % paired-bootstrap interval over blocks;
front.noise_batch_size > 0 also replays the policy's and Fixed's schedules in
another batch layout (the evaluation's own noise floor).

The policy: eval.policy (a shipped policy) or train.run_dir's latest checkpoint.
Writes into --out (default: the policy's results folder + /front_<data.eval>):
front.csv, front.json (rows, adherence, timings), front_blocks.npz (per-block
NLL sums of every column, for pooling seeds), front_net_keep.png,
front_flops.png, adherence.png, actions.png and tb/ (one TensorBoard run per
method; `tensorboard --logdir DIR/tb`).

With front.pool=[DIR1,DIR2] (fronts of several seeds on the same points and
blocks) nothing is evaluated: policy vs each method is pooled over the seeds
(pooled.md / pooled.json in --out, default runs/front_pooled).
"""

from __future__ import annotations

import csv
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import cli
from experiments.bench_utils import matmul_peak_gflops
from sol_jax import config as config_lib
from sol_jax import evaluation
from sol_jax.data import text_blocks
from sol_jax.evaluation import comparison_log, comparison_plots
from sol_jax.models import load_model, load_tokenizer
from sol_jax.policy import PolicyAgent
from sol_jax.rl import make_setup, trained_policy
from sol_jax.rl.policy_compat import evaluation_config

KEYS = (
  "front",
  "eval.policy",
  "eval.knob_path",
  "eval.random_seed",
  "eval.dtype",
  "eval.progress",
  "train.run_dir",
  "model.source",
  "data.data_dir",
  "data.eval",
  "data.eval_batches",
  "data.eval_batch_size",
  "data.context_len",
  "data.horizon",
)
TABLE_METHODS = ("fixed", "fixed_step", "shuffled", "random_best", "random_oracle", "emc", "dac")


def requested_points(cfg, space) -> tuple:
  if cfg.front.requested is not None:
    return cfg.front.requested
  return evaluation.knob_targets(cfg.front.knob, space, cfg.eval.knob_path)


def print_table(rows, dense_ppl) -> str:
  """The front as markdown: per point the policy and each method's PPL, policy vs it [95 %]."""
  by_point = {}
  for r in rows:
    by_point.setdefault(r["point"], {})[r["method"]] = r
  shown = [m for m in TABLE_METHODS if m in by_point[0]]
  head = "| point | requested (κ, ρ, η) | realized (κ, ρ, η) | net keep | policy |"
  head += "".join(f" {m} (policy vs) |" for m in shown)
  head += " gap closure vs Fixed |" if "fixed" in shown else ""
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for i, m in sorted(by_point.items()):
    p = m["policy"]
    req = ", ".join(f"{p[k]:.3g}" for k in ("requested_kappa", "requested_rho", "requested_eta"))
    real = ", ".join(f"{p[k]:.3f}" for k in ("kappa", "rho", "eta"))
    cells = [
      f"{m[x]['ppl']:.2f} ({m[x]['vs']:+.1f} % [{m[x]['vs_lo']:+.1f}, {m[x]['vs_hi']:+.1f}])"
      for x in shown
    ]
    if "fixed" in m:
      f = m["fixed"]
      cells.append(f"{f['gap']:.2f} [{f['gap_lo']:.2f}, {f['gap_hi']:.2f}]")
    lines.append(
      f"| {i} | {req} | {real} | {p['net_keep']:.3f} | {p['ppl']:.2f} | " + " | ".join(cells) + " |"
    )
  lines.append(f"\nDense PPL on the same tokens: {dense_ppl:.3f}.")
  text = "\n".join(lines)
  print(text)
  return text


def block_arrays(front) -> dict:
  arrays = {"tokens": front.dense.block_tokens, "dense": front.dense.block_nll_sum}
  for i, p in enumerate(front.points):
    for method, res in {"policy": p.policy, **p.baselines()}.items():
      if res is not None:
        arrays[f"{i}/{method}"] = res.block_nll_sum
    arrays[f"{i}/policy_actions"] = p.policy.block_actions
  return arrays


def heatmap(front, blocks, tokenizer, space, c, t, n):
  """Per-token actions of the middle operating point over the first n report blocks."""
  mid = front.points[len(front.points) // 2]
  ids = np.asarray(blocks[:n, c : c + t]).reshape(-1)  # step s feeds token C + s
  tokens = [tokenizer.decode([int(x)]) for x in ids]
  fig = comparison_plots.schedule_heatmap(tokens, mid.policy.block_actions[:n], space, per_line=t)
  fig.suptitle(f"policy actions at requested {tuple(round(x, 3) for x in mid.requested)}")
  return fig


def pool(cfg, out) -> list:
  """front.pool: policy vs each method pooled over the seeds' saved per-block NLL."""
  arrays = []
  for folder in cfg.front.pool:
    path = pathlib.Path(folder) / "front_blocks.npz"
    if not path.is_file():
      raise FileNotFoundError(
        f"{path} not found; front.pool takes output folders of experiments.front"
      )
    with np.load(path) as f:
      arrays.append(dict(f))
  rows = evaluation.pool_seeds(
    arrays, resamples=cfg.front.bootstrap_resamples, seed=cfg.eval.random_seed
  )
  lines = [
    "| point | method | seeds | policy PPL | method PPL | policy vs method [95 %] | gap closure |"
  ]
  lines.append("|---|---|---|---|---|---|---|")
  for r in rows:
    lines.append(
      f"| {r['point']} | {r['method']} | {r['seeds']} | {r['policy_ppl']:.2f} | {r['ppl']:.2f} | "
      f"{r['vs']:+.1f} % [{r['vs_lo']:+.1f}, {r['vs_hi']:+.1f}] | {r['gap']:.2f} |"
    )
  text = "\n".join(lines)
  print(text)
  out.mkdir(parents=True, exist_ok=True)
  (out / "pooled.md").write_text(text + "\n")
  (out / "pooled.json").write_text(
    json.dumps({"folders": list(cfg.front.pool), "rows": rows}, indent=2)
  )
  print(f"wrote {out}")
  return rows


@cli.main_entry
def main(argv=None):
  cmd = cli.parse(argv, __doc__, KEYS, has_out=True, loader=evaluation_config)
  cfg = cmd.cfg
  if cfg.front.pool:
    return pool(cfg, pathlib.Path(cmd.out or "runs/front_pooled"))
  random = "random" in cfg.front.methods
  cli.check_data(cfg, cfg.data.eval, *([cfg.front.select_split] if random else []))
  if random and cfg.front.select_split == cfg.data.eval:
    raise ValueError(
      f"front.select_split={cfg.front.select_split} is the report split data.eval; best-of-N "
      "must be selected on other blocks (e.g. wikitext2-valid)"
    )
  start = time.perf_counter()
  model_cfg, params = load_model(cfg.model.source, dtype=cfg.eval.dtype)
  tokenizer = load_tokenizer(cfg.model.source)
  setup = make_setup(cfg, model_cfg)
  policy_params, step, folder = trained_policy(cfg, model_cfg)
  space, c, t = setup.space, cfg.data.context_len, cfg.data.horizon
  load = lambda name, n: text_blocks(
    name, tokenizer, c + t + 1, data_dir=cfg.data.data_dir, max_blocks=n
  )
  report = load(cfg.data.eval, cfg.data.eval_blocks)
  select = load(cfg.front.select_split, cfg.front.select_blocks) if random else report[:0]
  requested = requested_points(cfg, space)
  targets = jnp.asarray(requested, jnp.float32)
  seed = jax.random.PRNGKey(cfg.eval.random_seed)
  print(
    f"front of {cfg.eval.policy or folder} (step {step}): {len(requested)} points, "
    f"{len(report)} blocks of {cfg.data.eval}; baselines {list(cfg.front.methods)}"
    + (
      f", best-of-{cfg.front.random_trials} selected on {len(select)} blocks of "
      f"{cfg.front.select_split}"
      if random
      else ""
    )
  )
  peak_before = matmul_peak_gflops()
  front = evaluation.evaluate_front(
    params,
    model_cfg,
    space,
    setup.settings,
    report,
    select,
    requested,
    policy_provider=PolicyAgent(setup.policy, space, t, greedy=cfg.eval.greedy),
    policy_inputs=lambda i, n: {
      "params": policy_params,
      "targets": jnp.broadcast_to(targets, (n,) + targets.shape),
      "rng": jax.random.fold_in(seed, i),
    },
    trials=cfg.front.random_trials,
    seed=cfg.eval.random_seed,
    context_len=c,
    horizon=t,
    batch_size=cfg.data.eval_batch_size,
    noise_batch_size=cfg.front.noise_batch_size,
    rows_per_call=cfg.front.rows_per_call,
    methods=cfg.front.methods,
    progress=cfg.eval.progress,
  )
  peak_after = matmul_peak_gflops()
  rows = evaluation.front_rows(
    front, resamples=cfg.front.bootstrap_resamples, seed=cfg.eval.random_seed
  )
  adherence = evaluation.adherence(front, space)
  steps_total = sum(x["decode_row_steps"] for x in front.timings)
  seconds_total = sum(x["seconds"] for x in front.timings)
  speed = {
    "decode_row_steps": steps_total,
    "harness_seconds": seconds_total,
    "row_steps_per_s": steps_total / seconds_total,
    "matmul_peak_gflops_before_after": [peak_before, peak_after],
    "wall_seconds": time.perf_counter() - start,
  }

  out = cli.results_dir(cmd.out, folder, f"front_{pathlib.Path(cfg.data.eval).stem}")
  out.mkdir(parents=True, exist_ok=True)
  table = print_table(rows, front.dense.ppl)
  for name, a in adherence.items():
    print(f"adherence {name}: mean |miss| {a['mean_miss']:.3f}, max {a['max_miss']:.3f}")
  noise = [r for r in rows if r["method"] == "policy" and "noise_pct" in r]
  for r in noise:
    print(
      f"noise floor at point {r['point']}: same schedule, other layout: policy "
      f"{r['noise_pct']:+.3f} %"
      + (f", Fixed {r['fixed_noise_pct']:+.3f} %" if "fixed_noise_pct" in r else "")
    )
  print(
    f"{steps_total:,} decode row-steps in {seconds_total:.0f} s = "
    f"{speed['row_steps_per_s']:.0f} row-steps/s (matmul peak {peak_before:.0f} / "
    f"{peak_after:.0f} GFLOP/s before / after); wall {speed['wall_seconds'] / 60:.1f} min"
  )
  with open(out / "front.csv", "w", newline="") as f:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
  summary = {
    "policy": cfg.eval.policy or str(folder),
    "step": step,
    "report_split": cfg.data.eval,
    "report_blocks": len(report),
    "select_split": cfg.front.select_split,
    "select_blocks": len(select),
    "dense_ppl": front.dense.ppl,
    "rows": rows,
    "adherence": adherence,
    "best_of_n": [p.best.row() for p in front.points if p.best],
    "timings": front.timings,
    "speed": speed,
  }
  (out / "front.json").write_text(json.dumps(summary, indent=2, default=float))
  (out / "front.md").write_text(table + "\n")
  # Per-block NLL sums of every column, so fronts of several seeds can be pooled
  # with the same paired bootstrap later (key: "<point>/<method>").
  np.savez_compressed(out / "front_blocks.npz", **block_arrays(front))
  figures = {
    "front_net_keep": comparison_plots.front_figure(rows, "net_keep"),
    "front_flops": comparison_plots.front_figure(rows, "relative_flops"),
    "adherence": comparison_plots.adherence_figure(
      {k: v["requested"] for k, v in adherence.items()},
      {k: v["realized"] for k, v in adherence.items()},
    ),
    "actions": heatmap(front, report, tokenizer, space, c, t, cfg.front.heatmap_blocks),
  }
  for name, fig in figures.items():
    fig.savefig(out / f"{name}.png", dpi=110)
  comparison_log.write_comparison(
    out / "tb",
    rows,
    config=config_lib.config_to_yaml(cfg),
    table_markdown=table,
    images=figures,
  )
  print(f"wrote {out}\n  tensorboard --logdir {out / 'tb'}")
  return summary


if __name__ == "__main__":
  main()
