"""Multiple-choice accuracy (ARC-Easy, PIQA, MMLU, a jsonl task) with the policy in the loop.

  python -m experiments.mc_eval [CONFIG] [key=value ...] [--out DIR]
  e.g.  ... mc.task=arc_easy mc.limit=100 mc.modes=[dense,policy,fixed] eval.knob=[0.5]
              eval.policy=smollm2_3L_cpu/seed1 --out runs/mc_arc
        ... mc.task=mmlu mc.limit=10 mc.subjects=[anatomy,virology] mc.modes=[dense]
        ... mc.task=my_task.jsonl mc.modes=[dense,constant] eval.budgets=[[0.5,0.8,8]]

Every item's context is prefilled densely; every continuation token is decoded
under the action of mc.mode: the uncompressed model (dense, once), and per
target of eval.knob (along eval.knob_path) or else eval.budgets: the trained
policy conditioned on it (eval.policy or train.run_dir's latest checkpoint;
greedy actions unless eval.greedy=false), Fixed matched to the policy's realized
budgets on the same items (at the target itself without the policy), and the
grid action nearest the target (constant). Continuations longer than T =
data.horizon are scored in windows of T steps with a dense replay of the text
before each (method §12.6), for every method alike.

Prints acc and acc_norm (length-normalised, per character) per method and target,
the realized budgets, and policy - Fixed accuracy with a 95 % paired-bootstrap
interval over items. With --out DIR: mc.csv, mc.json (rows, intervals, per-item
log-likelihoods) and, with mc.tensorboard, tb/ (one run per method).
"""

from __future__ import annotations

import csv
import json
import pathlib
import time

from experiments import cli
from experiments.generate import nearest_action
from sol_jax import config as config_lib
from sol_jax.data import mc_tasks
from sol_jax.evaluation import generate as gen_lib
from sol_jax.evaluation import mc_report
from sol_jax.evaluation import multiple_choice as mc
from sol_jax.evaluation.axis_levels import targets_label
from sol_jax.evaluation.fixed import FixedAllocator
from sol_jax.evaluation.harness import StaticSchedule
from sol_jax.evaluation.knob import requested_targets
from sol_jax.models import load_model, load_tokenizer
from sol_jax.policy import PolicyAgent
from sol_jax.rl import make_setup, trained_policy
from sol_jax.rl.policy_compat import evaluation_config
from sol_jax.tracking import Tracker

KEYS = (
  "mc",
  *cli.POLICY_TARGET_KEYS,
  "eval.greedy",
  "eval.random_seed",
  "eval.dtype",
  "eval.progress",
  "model.source",
  "data.data_dir",
  "data.horizon",
)
CSV_FIELDS = (
  "method",
  "target",
  "items",
  "acc",
  "acc_norm",
  "avg_keep_effective",
  "avg_prune_keep",
  "avg_quant_ratio",
  "net_keep",
  "scored_tokens",
  "seconds",
)


def load_config(argv, default=None) -> config_lib.ExperimentConfig:
  """The command line's config; with the policy among mc.modes, the policy's (or run's)
  saved config with the overrides on top (mc.* keys are run-control keys there)."""
  cfg = config_lib.config_from_argv(argv, default=default)
  return cfg if "policy" not in cfg.mc.modes else evaluation_config(argv, default=default)


def run_method(name, target, items, requests, score, space, progress):
  """Scores every item with one provider -> (result row, per-item scores)."""
  start = time.perf_counter()
  scores = score(desc=f"{name} {target}".strip(), progress=progress)
  seconds = time.perf_counter() - start
  row = {"method": name, "target": target, "seconds": seconds}
  return row | mc_report.summary(items, scores, space), scores


def main_rows(cfg, model_cfg, params, items, requests):
  """Every method's rows, per-item scores and the policy - Fixed intervals."""
  m = cfg.mc
  t = cfg.data.horizon
  setup = make_setup(cfg, model_cfg)
  space = setup.space

  def scorer(provider=None, inputs=None):
    return lambda **kw: mc.score_requests(
      params,
      model_cfg,
      requests,
      space=space,
      settings=setup.settings,
      horizon=t,
      provider=provider,
      inputs=inputs,
      batch_size=m.batch_size,
      prefix_bucket=m.prefix_bucket,
      **kw,
    )

  rows, per_item, intervals = [], {}, []
  run = lambda name, label, score: run_method(
    name, label, items, requests, score, space, cfg.eval.progress
  )

  def record(row, scores):
    rows.append(row)
    per_item[f"{row['method']} {row['target']}".strip()] = scores
    print(line(row))

  if "dense" in m.modes:
    record(*run("dense", "", scorer()))
  policy = None
  if "policy" in m.modes:
    policy, step, _ = trained_policy(cfg, model_cfg)
    print(f"policy: {cfg.eval.policy or cfg.train.run_dir}, step {step}")
  for target in requested_targets(cfg.eval, space):
    label = targets_label(target)
    realized = target
    if policy is not None:
      agent = PolicyAgent(setup.policy, space, t, greedy=cfg.eval.greedy)
      inputs = mc.policy_inputs(policy, target, seed=cfg.eval.random_seed)
      prow, pscores = run("policy", label, scorer(agent, inputs))
      record(prow, pscores)
      realized = (prow["avg_keep_effective"], prow["avg_prune_keep"], prow["avg_quant_ratio"])
    if "fixed" in m.modes:
      inputs = mc.fixed_inputs(FixedAllocator(space, realized))
      frow, fscores = run("fixed", label, scorer(StaticSchedule(), inputs))
      record(frow, fscores)
      if policy is not None:
        intervals.append(paired(items, label, pscores, fscores, m.bootstrap_resamples))
        print(interval_line(intervals[-1]))
    if "constant" in m.modes:
      action = nearest_action(space, target)
      crow, cscores = run("constant", label, scorer(gen_lib.ConstantProvider(action)))
      crow["action"] = space.tags[action]
      record(crow, cscores)
  return rows, per_item, intervals


def paired(items, label, policy_scores, fixed_scores, resamples) -> dict:
  """policy - Fixed accuracy (points) with 95 % paired-bootstrap intervals over items."""
  hp, np_ = mc_report.correct(items, policy_scores)
  hf, nf = mc_report.correct(items, fixed_scores)
  acc = mc_report.paired_accuracy(hp, hf, resamples=resamples)
  norm = mc_report.paired_accuracy(np_, nf, resamples=resamples)
  return {"target": label, "acc": acc._asdict(), "acc_norm": norm._asdict()}


def line(row) -> str:
  extra = f" [{row['action']}]" if "action" in row else ""
  macro = f" (macro {row['acc_macro']:.4f})" if "acc_macro" in row else ""
  return (
    f"{row['method']:8s} {row['target']:22s}{extra} acc {row['acc']:.4f}{macro} "
    f"acc_norm {row['acc_norm']:.4f}  realized kappa {row['avg_keep_effective']:.3f} "
    f"rho {row['avg_prune_keep']:.3f} eta {row['avg_quant_ratio']:.3f} "
    f"net keep {row['net_keep']:.3f}  {row['items']} items in {row['seconds']:.1f} s"
  )


def interval_line(iv) -> str:
  a, n = iv["acc"], iv["acc_norm"]
  return (
    f"policy - fixed at {iv['target']}: acc {a['diff']:+.2f} pts [{a['lo']:+.2f}, {a['hi']:+.2f}], "
    f"acc_norm {n['diff']:+.2f} pts [{n['lo']:+.2f}, {n['hi']:+.2f}] (95 %, paired over items)"
  )


def write(out: pathlib.Path, cfg, items, rows, per_item, intervals) -> None:
  out.mkdir(parents=True, exist_ok=True)
  with open(out / "mc.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
  data = {
    "task": cfg.mc.task,
    "model": cfg.model.source,
    "horizon": cfg.data.horizon,
    "rows": rows,
    "intervals": intervals,
    "labels": [it.label for it in items],
    "loglik": {name: [s.loglik.tolist() for s in scores] for name, scores in per_item.items()},
  }
  (out / "mc.json").write_text(json.dumps(data, indent=2))
  if cfg.mc.tensorboard:
    points = sorted({r["target"] for r in rows if r["target"]})
    for method in sorted({r["method"] for r in rows}):
      with Tracker(out / "tb" / method) as tb:
        for r in (r for r in rows if r["method"] == method):
          steps = [points.index(r["target"])] if r["target"] else range(max(len(points), 1))
          for step in steps:  # dense (no target) is drawn at every point
            tb.scalars({k: r[k] for k in ("acc", "acc_norm", "net_keep")}, step)
            tb.scalars(
              {k: r[f"avg_{k}"] for k in ("keep_effective", "prune_keep", "quant_ratio")},
              step,
              prefix="realized",
            )


@cli.main_entry
def main(argv=None):
  cmd = cli.parse(argv, __doc__, KEYS, has_out=True, loader=load_config)
  cfg = cmd.cfg
  m = cfg.mc
  items = mc_tasks.load_task(
    m.task, cfg.data.data_dir, limit=m.limit, shots=m.mmlu_shots, subjects=m.subjects
  )
  if not items:
    raise ValueError(f"task {m.task} has no items")
  model_cfg, params = load_model(cfg.model.source, dtype=cfg.eval.dtype)
  tokenizer = load_tokenizer(cfg.model.source)
  requests = [mc.encode_item(tokenizer, it) for it in items]
  print(f"{m.task}: {len(items)} items, T = {cfg.data.horizon}, {cfg.model.source}")
  rows, per_item, intervals = main_rows(cfg, model_cfg, params, items, requests)
  if cmd.out is not None:
    write(pathlib.Path(cmd.out), cfg, items, rows, per_item, intervals)
    print(f"wrote {cmd.out}")


if __name__ == "__main__":
  main()
