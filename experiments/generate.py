"""Generate text with the policy (or a baseline) choosing every token's compute.

  python -m experiments.generate [CONFIG] [key=value ...] [--out DIR]
  e.g.  ... eval.policy=smollm2_3L_cpu/seed1 generate.prompt="Once upon a time" eval.knob=[0.6]
        ... generate.mode=fixed eval.budgets=[[0.5,0.8,8]] generate.max_new_tokens=128
        ... generate.temperature=0.8 generate.top_p=0.95 generate.samples=3 generate.seed=1

The prompt is prefilled densely, then every generated token is decoded under the
action that generate.mode picks from the current hidden state: the trained policy
(eval.policy or train.run_dir's latest checkpoint; greedy actions unless
eval.greedy=false), Fixed at the targets, the grid action nearest them, or the
uncompressed model. The targets are the first of eval.knob (along eval.knob_path)
or else eval.budgets. Every data.horizon tokens the text so far is re-prefilled
densely and a fresh policy episode starts (method §12.6). Tokens are greedy
unless generate.temperature > 0.

Prints each continuation with its tokens coloured by compute level (ANSI colours
on a terminal, `token[level]` with a legend otherwise) and the realized budgets.
With --out DIR: generate.json (tokens, actions, log-probs, budgets) and, with
generate.html, generate.html (token spans coloured by net compute).
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

from experiments import cli
from sol_jax import config as config_lib
from sol_jax.evaluation import generate as gen_lib
from sol_jax.evaluation import generation_view as view
from sol_jax.evaluation.axis_levels import axis_levels, targets_label
from sol_jax.evaluation.fixed import FixedAllocator
from sol_jax.evaluation.harness import StaticSchedule
from sol_jax.evaluation.knob import requested_targets
from sol_jax.models import load_model, load_tokenizer
from sol_jax.policy import PolicyAgent
from sol_jax.rl import make_setup, trained_policy
from sol_jax.rl.policy_compat import evaluation_config

KEYS = (
  "generate",
  *cli.POLICY_TARGET_KEYS,
  "eval.greedy",
  "eval.dtype",
  "model.source",
  "data.horizon",
)


def load_config(argv, default=None) -> config_lib.ExperimentConfig:
  """The command line's config; with generate.mode=policy, the policy's (or run's) saved
  config with the overrides on top (generate.* keys are run-control keys there)."""
  cfg = config_lib.config_from_argv(argv, default=default)
  return cfg if cfg.generate.mode != "policy" else evaluation_config(argv, default=default)


def nearest_action(space, targets) -> int:
  """The grid action whose levels are nearest the targets, axis by axis."""
  pos = [
    int(np.argmin(np.abs(np.asarray(ax.values) - t))) for ax, t in zip(axis_levels(space), targets)
  ]
  return int(space.index_from_levels(*pos))


def provider_for(cfg, model_cfg, setup, targets):
  """(provider, inputs, label) for generate.mode."""
  g, space, t = cfg.generate, setup.space, cfg.data.horizon
  if g.mode == "dense":
    return None, None, "dense"
  if g.mode == "constant":
    action = nearest_action(space, targets)
    return gen_lib.ConstantProvider(action), None, f"constant {space.tags[action]}"
  if g.mode == "fixed":
    inputs = gen_lib.schedule_inputs(lambda: FixedAllocator(space, targets), t)
    return StaticSchedule(), inputs, f"fixed {targets_label(targets)}"
  params, step, _ = trained_policy(cfg, model_cfg)
  agent = PolicyAgent(setup.policy, space, t, greedy=cfg.eval.greedy)
  inputs = gen_lib.policy_inputs(params, targets, seed=g.seed)
  return agent, inputs, f"policy (step {step}) at {targets_label(targets)}"


def rows(generations, space) -> list[dict]:
  out = []
  for g in generations:
    for i, s in enumerate(g.samples):
      tags = [("dense" if a < 0 else space.tags[a]) for a in s.actions.tolist()]
      out.append(
        {
          "prompt": g.prompt,
          "sample": i,
          "text": s.text,
          "stop_reason": s.stop_reason,
          "tokens": s.tokens.tolist(),
          "actions": s.actions.tolist(),
          "action_tags": tags,
          "kappa": s.kappa.tolist(),
          "rho": s.rho.tolist(),
          "bits": s.bits.tolist(),
          "effective": s.effective.tolist(),
          "logprobs": s.logprobs.tolist(),
          "budgets": s.budgets,
        }
      )
  return out


@cli.main_entry
def main(argv=None):
  cmd = cli.parse(argv, __doc__, KEYS, has_out=True, loader=load_config)
  cfg = cmd.cfg
  g = cfg.generate
  model_cfg, params = load_model(cfg.model.source, dtype=cfg.eval.dtype)
  tokenizer = load_tokenizer(cfg.model.source)
  setup = make_setup(cfg, model_cfg)
  targets = requested_targets(cfg.eval, setup.space)[0]
  provider, inputs, label = provider_for(cfg, model_cfg, setup, targets)
  generations = gen_lib.generate(
    params,
    model_cfg,
    tokenizer,
    (g.prompt, *g.prompts),
    space=setup.space,
    settings=setup.settings,
    horizon=cfg.data.horizon,
    max_new_tokens=g.max_new_tokens,
    provider=provider,
    inputs=inputs,
    sampling=gen_lib.Sampling(g.temperature, g.top_k, g.top_p),
    samples=g.samples,
    stop=g.stop,
    seed=g.seed,
    prefix_bucket=g.prefix_bucket,
  )
  print(f"{label}, T = {cfg.data.horizon}, {cfg.model.source}")
  print(view.render_generations(tokenizer, generations, color=sys.stdout.isatty()))
  if cmd.out is not None:
    out = pathlib.Path(cmd.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
      "method": label,
      "targets": list(targets),
      "horizon": cfg.data.horizon,
      "budgets": [gen.budgets for gen in generations],
      "samples": rows(generations, setup.space),
    }
    (out / "generate.json").write_text(json.dumps(summary, indent=2))
    if g.html:
      budgets = "; ".join(view.budget_line(gen.budgets) for gen in generations)
      page = view.html_page(tokenizer, generations, setup.space, f"{label}: {budgets}")
      (out / "generate.html").write_text(page)
    print(f"wrote {out}")


if __name__ == "__main__":
  main()
