"""Evaluate a trained policy against budget-matched Fixed at several requested budgets.

  python -m experiments.eval_policy [CONFIG] [key=value ...]
  e.g.  ... smollm2_3L_cpu 'eval.budgets=[[0.3,0.6,0.5],[0.6,0.8,10]]' data.eval_batches=0

Loads the latest checkpoint of train.run_dir, runs the greedy policy (method §12.1:
fresh policy state per block, conditioned on each of eval.budgets, η = bits/16 or
bits; or on the one-number knob: eval.knob=[0.3,0.6,0.9] along eval.knob_path) on data.eval_batches x data.eval_batch_size blocks (0 batches: all), then
Fixed matched to the policy's *realized* averages (§12.3) on the same blocks.
Writes a CSV + JSON next to the checkpoints. The run's saved config.yaml is
used, with the key=value overrides on top (eval.*, data paths...).
With eval.policy=NAME (e.g. smollm2_3L_cpu/seed1 under policies/) or a folder,
the shipped policy is evaluated instead, with its saved config plus the overrides
(no run dir or training); results go to runs/shipped/<name>.
"""

from __future__ import annotations

import csv
import json

import jax
import jax.numpy as jnp

from experiments import cli
from sol_jax import evaluation
from sol_jax.data import text_blocks
from sol_jax.models import load_model, load_tokenizer
from sol_jax.policy import PolicyAgent
from sol_jax.rl import make_setup, trained_policy
from sol_jax.rl.policy_compat import evaluation_config

KEYS = (
  *cli.POLICY_TARGET_KEYS,
  "eval.greedy",
  "eval.random_seed",
  "eval.dtype",
  "eval.progress",
  "train.seed",
  "model.source",
  "data.data_dir",
  "data.eval",
  "data.eval_batches",
  "data.eval_batch_size",
  "data.context_len",
  "data.horizon",
)


@cli.main_entry
def main(argv=None):
  cfg = cli.parse(
    argv, __doc__, KEYS, moved={"budgets": "eval.budgets"}, loader=evaluation_config
  ).cfg
  cli.check_data(cfg, cfg.data.eval)
  model_cfg, params = load_model(cfg.model.source, dtype=cfg.eval.dtype)
  tokenizer = load_tokenizer(cfg.model.source)
  setup = make_setup(cfg, model_cfg)
  policy_params, step, run_dir = trained_policy(cfg, model_cfg)
  c, t = cfg.data.context_len, cfg.data.horizon
  blocks = text_blocks(
    cfg.data.eval, tokenizer, c + t + 1, data_dir=cfg.data.data_dir, max_blocks=cfg.data.eval_blocks
  )
  agent = PolicyAgent(setup.policy, setup.space, t, greedy=cfg.eval.greedy)
  budgets = evaluation.requested_targets(cfg.eval, setup.space)
  # One column per requested budget: the policy is conditioned on it (§12.1).
  targets = jnp.asarray(budgets, jnp.float32)
  seed = jax.random.PRNGKey(cfg.eval.random_seed)  # used only by a sampling policy

  def inputs(batch, n):
    return {
      "params": policy_params,
      "targets": jnp.broadcast_to(targets, (n,) + targets.shape),
      "rng": jax.random.fold_in(seed, batch),
    }

  policy = evaluation.evaluate_columns(
    params,
    model_cfg,
    setup.space,
    setup.settings,
    blocks,
    context_len=c,
    horizon=t,
    batch_size=cfg.data.eval_batch_size,
    names=[f"policy {b}" for b in budgets],
    batch_inputs=inputs,
    provider=agent,
    progress=cfg.eval.progress,
    desc="policy",
  )
  realized = [(r.avg_keep_effective, r.avg_prune_keep, r.avg_quant_ratio) for r in policy]
  fixed = evaluation.fixed_matched(
    params,
    model_cfg,
    setup.space,
    setup.settings,
    blocks,
    realized,
    context_len=c,
    horizon=t,
    batch_size=cfg.data.eval_batch_size,
    progress=cfg.eval.progress,
    desc="fixed",
  )
  rows = []
  for budget, p_res, f_res in zip(budgets, policy, fixed):
    # Policy vs Fixed on the same blocks: 95 % paired bootstrap over blocks (issue 10).
    d = evaluation.paired_bootstrap(
      p_res.block_nll_sum, f_res.block_nll_sum, p_res.block_tokens, seed=cfg.eval.random_seed
    )
    diff = {"diff_pct": d.diff_pct, "diff_pct_lo": d.diff_pct_lo, "diff_pct_hi": d.diff_pct_hi}
    for r, extra in ((p_res, diff), (f_res, dict.fromkeys(diff))):  # on the policy row
      rows.append(dict(r.row(), **extra, requested=budget, checkpoint_step=step))
      print(
        f"{r.name:>40}: PPL {r.ppl:.3f}  kappa {r.avg_keep_effective:.3f} rho {r.avg_prune_keep:.3f} "
        f"eta {r.avg_quant_ratio:.3f}  net keep {r.net_keep:.3f}  rel FLOPs {r.relative_flops:.3f}"
      )
    print(
      f"{'policy vs Fixed':>40}: PPL {d.diff_pct:+.2f} % "
      f"[{d.diff_pct_lo:+.2f}, {d.diff_pct_hi:+.2f}] (95 %, {len(blocks)} blocks paired)"
    )
  out = cli.results_dir(None, run_dir, f"eval_policy_step{step}")
  out.mkdir(parents=True, exist_ok=True)
  with open(out / "results.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  (out / "results.json").write_text(json.dumps(rows, indent=2, default=str))
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
