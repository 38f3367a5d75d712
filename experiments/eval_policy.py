"""Evaluate a trained policy against budget-matched Fixed at several requested budgets.

  python -m experiments.eval_policy [CONFIG] [key=value ...] --budgets "0.3,0.6,0.5;0.6,0.8,0.6;0.9,1,0.9"

Loads the latest checkpoint of train.run_dir, runs the greedy policy (spec §12.1:
fresh policy state per block, conditioned on the requested targets) on the
evaluation blocks, then Fixed matched to the policy's *realized* averages
(§12.3) on the same blocks. Writes a CSV + JSON next to the checkpoints.
"""
from __future__ import annotations

import argparse
import csv
import json

import jax
import jax.numpy as jnp

from experiments import DEFAULT_CONFIG
from sol_jax import config as config_lib
from sol_jax.data import text_blocks
from sol_jax.evaluation import baselines, schedule_eval
from sol_jax.models.registry import load_model
from sol_jax.models.tokenizer import load_tokenizer
from sol_jax.policy.agent import PolicyAgent
from sol_jax.rl.checkpointing import Checkpoints
from sol_jax.rl.loop import make_setup, run_directory
from sol_jax.rl.train_step import init_train_state


def parse_budgets(text: str):
  return [tuple(float(v) for v in item.split(",")) for item in text.split(";") if item.strip()]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument("--budgets", default="0.3,0.6,0.5;0.6,0.8,0.6;0.9,1.0,0.9",
                 help="requested (kappa*, rho*, eta*) triples separated by ';'")
  p.add_argument("rest", nargs="*")
  args = p.parse_args(argv)
  cfg = config_lib.config_from_argv(args.rest, default=DEFAULT_CONFIG)
  model_cfg, params = load_model(cfg.model.source, dtype=cfg.eval.dtype)
  tokenizer = load_tokenizer(cfg.model.source)
  setup = make_setup(cfg, model_cfg)
  run_dir = run_directory(cfg)
  ckpt = Checkpoints(run_dir)
  step = ckpt.latest_step()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {ckpt.directory}; train first "
                            f"(python -m experiments.train {cfg.name}) or set train.run_dir.")
  state = ckpt.restore(step, init_train_state(setup, cfg.train.seed))
  c, t = cfg.data.context_len, cfg.data.horizon
  blocks = text_blocks(cfg.data.eval, tokenizer, c + t + 1, data_dir=cfg.data.data_dir,
                       max_blocks=cfg.data.eval_batches * cfg.data.eval_batch_size)
  agent = PolicyAgent(setup.policy, setup.space, t, greedy=True)
  budgets = parse_budgets(args.budgets)
  # One column per requested budget: the policy is conditioned on it (§12.1).
  targets = jnp.asarray(budgets, jnp.float32)

  def inputs(_, n):
    return {"params": state.params, "targets": jnp.broadcast_to(targets, (n,) + targets.shape),
            "rng": jax.random.PRNGKey(0)}

  policy = schedule_eval.evaluate_columns(
      params, model_cfg, setup.space, setup.settings, blocks, context_len=c, horizon=t,
      batch_size=cfg.data.eval_batch_size, names=[f"policy {b}" for b in budgets],
      batch_inputs=inputs, provider=agent, desc="policy")
  realized = [(r.avg_keep_effective, r.avg_prune_keep, r.avg_quant_ratio) for r in policy]
  fixed = baselines.evaluate_plan(
      params, model_cfg, setup.space, setup.settings, blocks,
      baselines.fixed_columns(setup.space, realized), context_len=c, horizon=t,
      batch_size=cfg.data.eval_batch_size, desc="fixed")
  rows = []
  for budget, p_res, f_res in zip(budgets, policy, fixed):
    for r in (p_res, f_res):
      rows.append(dict(r.row(), requested=budget, checkpoint_step=step))
      print(f"{r.name:>40}: PPL {r.ppl:.3f}  kappa {r.avg_keep_effective:.3f} rho {r.avg_prune_keep:.3f} "
            f"eta {r.avg_quant_ratio:.3f}  net keep {r.net_keep:.3f}  rel FLOPs {r.relative_flops:.3f}")
  out = run_dir / f"eval_policy_step{step}"
  out.mkdir(parents=True, exist_ok=True)
  with open(out / "results.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  (out / "results.json").write_text(json.dumps(rows, indent=2, default=str))
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
