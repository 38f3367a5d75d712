"""Long greedy generations under dense, policy and Fixed control: do they degenerate? (§12.7)

  python -m experiments.generation_quality [CONFIG] [key=value ...] [--out DIR]
  e.g.  ... eval.policy=smollm2_3L_cpu/seed1 eval.knob=[0.3] quality.prompts=8 --out runs/quality

Prompts: the first quality.prompt_len tokens of each of the first quality.prompts
blocks of data.eval. Each is continued greedily for quality.max_new_tokens tokens
(EOS does not stop it) by the dense model, by the policy at the targets (the first
of eval.knob / eval.budgets) and by Fixed at the policy's realized budgets pooled
over all its tokens (at the targets without the policy); windows of T =
data.horizon steps with the dense-replay refresh, as `evaluation.generate` runs.

Prints per method: seq-rep-n (repeats within a continuation), distinct-n (unique
n-grams over all continuations), the mean log-prob of the continuation under the
dense model (teacher-forced), the realized budgets; and policy - Fixed on seq-rep-4
and dense log-prob with 95 % paired-bootstrap intervals over prompts. With --out
DIR: quality.csv and quality.json (per-prompt values and each method's first text).
"""

from __future__ import annotations

import csv
import json
import pathlib

import numpy as np

from experiments import cli
from sol_jax import config as config_lib
from sol_jax.data import text_blocks
from sol_jax.evaluation import degeneration
from sol_jax.evaluation import generate as gen
from sol_jax.evaluation import multiple_choice as mc
from sol_jax.evaluation.fixed import FixedAllocator
from sol_jax.evaluation.harness import StaticSchedule
from sol_jax.evaluation.intervals import paired_mean_difference
from sol_jax.evaluation.knob import requested_targets
from sol_jax.models import load_model, load_tokenizer
from sol_jax.policy import PolicyAgent
from sol_jax.rl import make_setup, trained_policy
from sol_jax.rl.policy_compat import evaluation_config

KEYS = (
  "quality",
  *cli.POLICY_TARGET_KEYS,
  "eval.dtype",
  "eval.progress",
  "model.source",
  "data.data_dir",
  "data.eval",
  "data.horizon",
)


def load_config(argv, default=None) -> config_lib.ExperimentConfig:
  cfg = config_lib.config_from_argv(argv, default=default)
  return evaluation_config(argv, default=default) if "policy" in cfg.quality.methods else cfg


@cli.main_entry
def main(argv=None):
  cmd = cli.parse(argv, __doc__, KEYS, has_out=True, loader=load_config)
  cfg = cmd.cfg
  q = cfg.quality
  t = cfg.data.horizon
  cli.check_data(cfg, cfg.data.eval)
  model_cfg, params = load_model(cfg.model.source, dtype=cfg.eval.dtype)
  tokenizer = load_tokenizer(cfg.model.source)
  setup = make_setup(cfg, model_cfg)
  space = setup.space
  prompts = list(
    text_blocks(
      cfg.data.eval, tokenizer, q.prompt_len, data_dir=cfg.data.data_dir, max_blocks=q.prompts
    )
  )
  print(
    f"{len(prompts)} prompts of {q.prompt_len} tokens from {cfg.data.eval}, {q.max_new_tokens} new tokens each"
  )
  targets = requested_targets(cfg.eval, space)[0]

  def run(provider, inputs):
    out = gen.generate(
      params,
      model_cfg,
      tokenizer,
      prompts,
      space=space,
      settings=setup.settings,
      horizon=t,
      max_new_tokens=q.max_new_tokens,
      provider=provider,
      inputs=inputs,
      stop_at_eos=False,
    )
    return [g.samples[0] for g in out]

  conts = {}
  if "dense" in q.methods:
    conts["dense"] = run(None, None)
  if "policy" in q.methods:
    policy, step, _ = trained_policy(cfg, model_cfg)
    agent = PolicyAgent(setup.policy, space, t, greedy=cfg.eval.greedy)
    conts["policy"] = run(agent, gen.policy_inputs(policy, targets, seed=cfg.eval.random_seed))
    b = gen.pooled_budgets(conts["policy"])
    targets = (b["avg_keep_effective"], b["avg_prune_keep"], b["avg_quant_ratio"])
    print(f"policy: step {step}")
  if "fixed" in q.methods:
    conts["fixed"] = run(
      StaticSchedule(), gen.schedule_inputs(lambda: FixedAllocator(space, targets), t)
    )

  rows, per_prompt = [], {}
  for name, cs in conts.items():
    seqs = [c.tokens[: q.max_new_tokens].tolist() for c in cs]
    scored = mc.score_requests(
      params,
      model_cfg,
      [mc.Request(p, (np.asarray(s, np.int32),)) for p, s in zip(prompts, seqs)],
      space=space,
      settings=setup.settings,
      horizon=t,
      progress=False,
    )
    dense_lp = np.asarray([s.loglik[0] / len(seq) for s, seq in zip(scored, seqs)])
    rep4 = np.asarray([degeneration.seq_rep(s, 4) for s in seqs])
    per_prompt[name] = {"dense_logprob": dense_lp.tolist(), "seq_rep_4": rep4.tolist()}
    row = {"method": name, "dense_logprob": float(dense_lp.mean())}
    row |= degeneration.repetition_table(seqs, q.orders)
    row |= gen.pooled_budgets(cs)
    row["first_text"] = cs[0].text[:300]
    rows.append(row)
    reps = " ".join(f"rep{n} {row[f'seq_rep_{n}']:.3f}" for n in q.orders)
    dist = " ".join(f"dist{n} {row[f'distinct_{n}']:.3f}" for n in q.orders)
    print(
      f"{name:7s} dense log-prob {row['dense_logprob']:+.3f}  {reps}  {dist}  kappa "
      f"{row['avg_keep_effective']:.3f} rho {row['avg_prune_keep']:.3f} eta {row['avg_quant_ratio']:.3f}"
    )
  intervals = {}
  if "policy" in conts and "fixed" in conts:
    for key in ("seq_rep_4", "dense_logprob"):
      d = paired_mean_difference(
        per_prompt["policy"][key], per_prompt["fixed"][key], resamples=q.bootstrap_resamples
      )
      intervals[key] = d._asdict()
      print(
        f"policy - fixed {key}: {d.diff:+.4f} [{d.lo:+.4f}, {d.hi:+.4f}] (95 %, paired over prompts)"
      )
  if cmd.out is not None:
    out = pathlib.Path(cmd.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "quality.csv", "w", newline="") as f:
      w = csv.DictWriter(
        f, fieldnames=[k for k in rows[0] if k != "first_text"], extrasaction="ignore"
      )
      w.writeheader()
      w.writerows(rows)
    data = {"rows": rows, "per_prompt": per_prompt, "intervals": intervals, "data": cfg.data.eval}
    (out / "quality.json").write_text(json.dumps(data, indent=2))
    print(f"wrote {out}")
  return rows


if __name__ == "__main__":
  main()
