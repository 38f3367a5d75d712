"""Which tokens get the compute, per text source: the policy vs Fixed by token difficulty.

  python -m experiments.allocation [CONFIG] [key=value ...] [--out DIR]
  e.g.  ... eval.policy=smollm2_3L_cpu/seed1 eval.knob=[0.55]
              'allocation.splits=[wikitext2-valid,gutenberg-heldout-valid]'

For each split of allocation.splits (its first allocation.blocks blocks of
C + T + 1 tokens): the greedy policy at the targets (the first of eval.knob /
eval.budgets), Fixed matched to the policy's realized budgets on that split,
and dense. Tokens are binned by dense NLL (allocation.bins quantiles, bin 0 the
easiest); per bin: the compute (net keep) the policy and Fixed give those
tokens and the NLL each loses against dense there. Also per split: PPLs,
policy vs Fixed with its 95 % paired-bootstrap interval over blocks, and the
Spearman correlations of the policy's per-token compute with difficulty and
with sensitivity (Fixed's per-token NLL excess over dense). Per step t of the
episode: each method's compute and NLL excess (Fixed is flat over t; a policy that
front-loads compute gains from KV pollution alone, whatever the text).
Use it to see which tokens a policy treats differently on text it was not
trained on. With --out DIR: allocation.csv, allocation.json, allocation.png.
"""

from __future__ import annotations

import csv
import json
import pathlib

import jax
import jax.numpy as jnp

from experiments import cli
from sol_jax import evaluation
from sol_jax.data import text_blocks
from sol_jax.evaluation.allocation import action_net_keep, allocation_bins, position_profile
from sol_jax.evaluation.knob import requested_targets
from sol_jax.models import load_model, load_tokenizer
from sol_jax.policy import PolicyAgent
from sol_jax.rl import make_setup, trained_policy
from sol_jax.rl.policy_compat import evaluation_config

KEYS = (
  "allocation",
  *cli.POLICY_TARGET_KEYS,
  "eval.greedy",
  "eval.dtype",
  "eval.progress",
  "eval.random_seed",
  "model.source",
  "data.data_dir",
  "data.eval_batch_size",
  "data.context_len",
  "data.horizon",
)


def one_split(cfg, split, params, model_cfg, tokenizer, setup, policy_params, target):
  """The policy, matched Fixed and dense on one split -> (summary, bin rows)."""
  c, t = cfg.data.context_len, cfg.data.horizon
  a = cfg.allocation
  blocks = text_blocks(split, tokenizer, c + t + 1, data_dir=cfg.data.data_dir, max_blocks=a.blocks)
  tgt = jnp.asarray([target], jnp.float32)
  seed = jax.random.PRNGKey(cfg.eval.random_seed)
  front = evaluation.evaluate_front(
    params,
    model_cfg,
    setup.space,
    setup.settings,
    blocks,
    blocks[:0],
    [target],
    policy_provider=PolicyAgent(setup.policy, setup.space, t, greedy=cfg.eval.greedy),
    policy_inputs=lambda i, n: {
      "params": policy_params,
      "targets": jnp.broadcast_to(tgt, (n, 1, 3)),
      "rng": jax.random.fold_in(seed, i),
    },
    trials=1,
    seed=cfg.eval.random_seed,
    context_len=c,
    horizon=t,
    batch_size=cfg.data.eval_batch_size,
    methods=("fixed",),
    progress=cfg.eval.progress,
  )
  (point,) = front.points
  keep = action_net_keep(setup.space)
  per_token = (
    front.dense.block_nll,
    point.policy.block_nll,
    point.fixed.block_nll,
    keep[point.policy.block_actions],
    keep[point.fixed.block_actions],
  )
  bins, corr = allocation_bins(*per_token, a.bins)
  positions = position_profile(*per_token)
  vs = {r["method"]: r for r in evaluation.front_rows(front, resamples=a.bootstrap_resamples)}
  f = vs["fixed"]
  summary = dict(
    split=split,
    blocks=len(blocks),
    kappa=point.policy.avg_keep_effective,
    rho=point.policy.avg_prune_keep,
    eta=point.policy.avg_quant_ratio,
    net_keep=point.policy.net_keep,
    ppl_dense=front.dense.ppl,
    ppl_policy=point.policy.ppl,
    ppl_fixed=point.fixed.ppl,
    vs_fixed=f["vs"],
    vs_fixed_lo=f["vs_lo"],
    vs_fixed_hi=f["vs_hi"],
    spearman_keep_difficulty=corr["difficulty"],
    spearman_keep_sensitivity=corr["sensitivity"],
  )
  return summary, bins, positions


@cli.main_entry
def main(argv=None):
  cmd = cli.parse(argv, __doc__, KEYS, has_out=True, loader=evaluation_config)
  cfg = cmd.cfg
  cli.check_data(cfg, *cfg.allocation.splits)
  model_cfg, params = load_model(cfg.model.source, dtype=cfg.eval.dtype)
  tokenizer = load_tokenizer(cfg.model.source)
  setup = make_setup(cfg, model_cfg)
  policy_params, step, folder = trained_policy(cfg, model_cfg)
  target = requested_targets(cfg.eval, setup.space)[0]
  print(f"policy {cfg.eval.policy or folder} (step {step}) at requested {target}")
  summaries, rows, steps = [], [], []
  for split in cfg.allocation.splits:
    summary, bins, positions = one_split(
      cfg, split, params, model_cfg, tokenizer, setup, policy_params, target
    )
    summaries.append(summary)
    rows += [dict(split=split, **b) for b in bins]
    steps += [dict(split=split, **q) for q in positions]
    print(
      f"\n{split}: {summary['blocks']} blocks, realized (κ, ρ, η) = ({summary['kappa']:.3f}, "
      f"{summary['rho']:.3f}, {summary['eta']:.3f}), net keep {summary['net_keep']:.3f}; PPL "
      f"dense {summary['ppl_dense']:.2f}, policy {summary['ppl_policy']:.2f}, Fixed "
      f"{summary['ppl_fixed']:.2f}: policy vs Fixed {summary['vs_fixed']:+.1f} % "
      f"[{summary['vs_fixed_lo']:+.1f}, {summary['vs_fixed_hi']:+.1f}]; Spearman(policy "
      f"compute, dense NLL) {summary['spearman_keep_difficulty']:+.3f}, (policy compute, "
      f"Fixed's NLL excess) {summary['spearman_keep_sensitivity']:+.3f}"
    )
    print("bin  dense NLL  keep policy/Fixed  excess NLL policy/Fixed  policy-Fixed")
    for b in bins:
      print(
        f"{b['bin']:3d}  {b['dense_nll']:9.3f}  {b['policy_keep']:6.3f} / {b['fixed_keep']:6.3f}  "
        f"{b['policy_excess']:+8.4f} / {b['fixed_excess']:+8.4f}  {b['policy_minus_fixed']:+8.4f}"
      )
    print("per step t: policy keep  " + " ".join(f"{q['policy_keep']:.2f}" for q in positions))
    print("            Fixed keep   " + " ".join(f"{q['fixed_keep']:.2f}" for q in positions))
    print(
      "            excess NLL policy − Fixed  "
      + " ".join(f"{q['policy_excess'] - q['fixed_excess']:+.2f}" for q in positions)
    )
  if cmd.out is not None:
    write(pathlib.Path(cmd.out), summaries, rows, steps, target, step)
    print(f"wrote {cmd.out}")
  return summaries, rows, steps


def write(out, summaries, rows, steps, target, step) -> None:
  out.mkdir(parents=True, exist_ok=True)
  with open(out / "allocation.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
  data = {
    "requested": list(target),
    "policy_step": step,
    "splits": summaries,
    "bins": rows,
    "positions": steps,
  }
  (out / "allocation.json").write_text(json.dumps(data, indent=1))
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, (left, right, by_step) = plt.subplots(1, 3, figsize=(16, 4))
  for i, s in enumerate(summaries):
    mine = [r for r in rows if r["split"] == s["split"]]
    x = [r["bin"] for r in mine]
    left.plot(
      x, [r["policy_keep"] for r in mine], "o-", color=f"C{i}", label=f"{s['split']} policy"
    )
    left.plot(x, [r["fixed_keep"] for r in mine], "x--", color=f"C{i}", label=f"{s['split']} Fixed")
    right.plot(x, [r["policy_minus_fixed"] for r in mine], "o-", color=f"C{i}", label=s["split"])
    per_t = [q for q in steps if q["split"] == s["split"]]
    t = [q["step"] for q in per_t]
    by_step.plot(
      t, [q["policy_keep"] for q in per_t], "o-", color=f"C{i}", label=f"{s['split']} policy"
    )
    by_step.plot(
      t, [q["fixed_keep"] for q in per_t], "x--", color=f"C{i}", label=f"{s['split']} Fixed"
    )
  left.set(
    xlabel="dense-NLL bin (0 = easiest tokens)", ylabel="net keep", title="compute per token"
  )
  right.axhline(0, color="gray", lw=0.8)
  right.set(
    xlabel="dense-NLL bin", ylabel="NLL policy − Fixed", title="where the policy gains (< 0)"
  )
  by_step.set(xlabel="step t of the episode", ylabel="net keep", title="compute per step")
  by_step.legend(fontsize=7)
  left.legend(fontsize=7)
  right.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out / "allocation.png", dpi=110)
  plt.close(fig)


if __name__ == "__main__":
  main()
