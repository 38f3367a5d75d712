"""KV-pollution impulse test (method §12.8, paper Fig. 7): compress c steps, watch the dense tail.

  python -m experiments.pollution [CONFIG] [key=value ...] [--out DIR]
  e.g.  ... eval.policy=smollm2_3L_cpu/seed1 eval.knob=[0.3] pollution.windows=64 --out runs/pollution

pollution.windows random windows (pollution.seed) of P + c + τ + 1 tokens of
data.eval: a dense prefill of P = pollution.prefix_len tokens, then c =
pollution.impulse_steps compressed steps and τ = pollution.tail_steps dense steps,
teacher-forced, beside a fully dense column sharing the prefix. Columns: every
single-axis grid level (axes), the policy's own first c actions at the targets
(eval.policy or train.run_dir; the first of eval.knob / eval.budgets), and Fixed
matched to the policy's realized impulse budgets (at the targets without a policy).

Prints per column direct / tail %Δppl, the worst-10 % tail, p90 / p95 of the peak
tail %Δ, and policy - Fixed tail ΔNLL with a 95 % paired bootstrap over windows.
With --out DIR: pollution.csv, pollution.json (per-window ΔNLL) and pollution.png
(median ΔNLL at each tail offset, p10-p90 band).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from experiments import cli
from sol_jax import config as config_lib
from sol_jax.data import text_blocks
from sol_jax.evaluation import pollution as pol
from sol_jax.evaluation.fixed import FixedAllocator
from sol_jax.evaluation.harness import StaticSchedule, run_controlled
from sol_jax.evaluation.intervals import paired_mean_difference
from sol_jax.evaluation.knob import requested_targets
from sol_jax.models import load_model, load_tokenizer
from sol_jax.policy import PolicyAgent
from sol_jax.rl import make_setup, trained_policy
from sol_jax.rl.policy_compat import evaluation_config

KEYS = (
  "pollution",
  *cli.POLICY_TARGET_KEYS,
  "eval.greedy",
  "eval.dtype",
  "eval.progress",
  "model.source",
  "data.data_dir",
  "data.eval",
  "data.horizon",
)


def load_config(argv, default=None) -> config_lib.ExperimentConfig:
  cfg = config_lib.config_from_argv(argv, default=default)
  return evaluation_config(argv, default=default) if "policy" in cfg.pollution.columns else cfg


def run_calls(params, model_cfg, setup, windows, p, provider, inputs_of, k, batch_size, desc):
  """NLL [N, K, c + τ] and executed actions over every batch of windows."""
  steps = windows.shape[1] - p - 1
  nll, acts = [], []
  for start in tqdm(range(0, len(windows), batch_size), desc=desc, disable=desc is None):
    batch = windows[start : start + batch_size]
    ep = run_controlled(
      params,
      jnp.asarray(batch),
      inputs_of(start, len(batch)),
      cfg=model_cfg,
      space=setup.space,
      settings=setup.settings,
      provider=provider,
      context_len=p,
      horizon=steps,
      schedules=k,
    )
    nll.append(np.asarray(ep.nll, np.float64))
    acts.append(np.asarray(ep.actions))
  return np.concatenate(nll), np.concatenate(acts)


def realized(actions: np.ndarray, space) -> tuple[float, float, float]:
  """Mean (κ, raw ρ, η = bits/16) of impulse actions (every step here is effective)."""
  a = actions.reshape(-1)
  return tuple(float(np.mean(np.asarray(v)[a])) for v in (space.kappa, space.rho, space.eta))


@cli.main_entry
def main(argv=None):
  cmd = cli.parse(argv, __doc__, KEYS, has_out=True, loader=load_config)
  cfg = cmd.cfg
  pc = cfg.pollution
  p, c, tau = pc.prefix_len, pc.impulse_steps, pc.tail_steps
  cli.check_data(cfg, cfg.data.eval)
  model_cfg, params = load_model(cfg.model.source, dtype=cfg.eval.dtype)
  tokenizer = load_tokenizer(cfg.model.source)
  setup = make_setup(cfg, model_cfg)
  space, dense = setup.space, setup.space.dense_index
  stream = text_blocks(cfg.data.eval, tokenizer, 1, data_dir=cfg.data.data_dir).reshape(-1)
  windows = pol.random_windows(stream, p + c + tau + 1, pc.windows, pc.seed)
  print(f"{len(windows)} windows of P={p} + c={c} + tau={tau} + 1 tokens of {cfg.data.eval}")
  run = lambda provider, inputs_of, k, desc: run_calls(
    params,
    model_cfg,
    setup,
    windows,
    p,
    provider,
    inputs_of,
    k,
    pc.batch_size,
    desc if cfg.eval.progress else None,
  )
  targets = requested_targets(cfg.eval, space)[0]
  deltas: dict[str, np.ndarray] = {}
  impulse = {}

  if "policy" in pc.columns:
    policy, step, _ = trained_policy(cfg, model_cfg)
    agent = pol.ImpulseOf(
      PolicyAgent(setup.policy, space, cfg.data.horizon, greedy=cfg.eval.greedy), c, dense
    )
    tgt = jnp.asarray(targets, jnp.float32)
    inputs_of = lambda start, n: {
      "params": policy,
      "targets": jnp.broadcast_to(tgt, (n, 2, 3)),
      "rng": jax.random.PRNGKey(start),
    }
    nll, acts = run(agent, inputs_of, 2, "policy")
    deltas["policy"] = nll[:, 1] - nll[:, 0]
    impulse["policy"] = acts[:, 1, :c]
    targets = realized(impulse["policy"], space)
    print(
      f"policy (step {step}): realized impulse kappa {targets[0]:.3f} rho {targets[1]:.3f} eta {targets[2]:.3f}"
    )

  names, first = ["dense"], [np.full((len(windows), c), dense, np.int32)]
  if "axes" in pc.columns:
    for name, action in pol.single_axis_actions(space).items():
      names.append(name)
      first.append(np.full((len(windows), c), action, np.int32))
  if "fixed" in pc.columns:
    names.append("fixed")
    first.append(FixedAllocator(space, targets).next_batch(len(windows), c).astype(np.int32))
  schedule = pol.impulse_schedule(np.stack(first, axis=1), c + tau, dense)
  inputs_of = lambda start, n: jnp.asarray(schedule[start : start + n])
  nll, acts = run(StaticSchedule(), inputs_of, len(names), "dense, axes, fixed")
  for k, name in enumerate(names[1:], start=1):
    deltas[name] = nll[:, k] - nll[:, 0]
    impulse[name] = acts[:, k, :c]
  order = [n for n in names[1:] if n != "fixed"] + [n for n in ("fixed", "policy") if n in deltas]
  rows = pol.summary_rows(order, deltas, c)
  for r in rows:
    k, rho, eta = realized(impulse[r["column"]], space)
    r.update(kappa=k, rho=rho, eta=eta)
    print(
      f"{r['column']:12s} kappa {k:.3f} rho {rho:.3f} eta {eta:.3f}  direct {r['direct_pct']:+7.2f} %  "
      f"tail {r['tail_pct']:+6.3f} %  worst-10% {r['tail_worst10_pct']:+6.3f} %  "
      f"peak p90 {r['peak_p90_pct']:+6.2f} %  p95 {r['peak_p95_pct']:+6.2f} %"
    )
  diff = None
  if "policy" in deltas and "fixed" in deltas:
    tail = lambda name: deltas[name][:, c:].mean(axis=1)
    diff = paired_mean_difference(tail("policy"), tail("fixed"), resamples=pc.bootstrap_resamples)
    print(
      f"policy - fixed, tail mean dNLL per window: {diff.diff:+.5f} [{diff.lo:+.5f}, {diff.hi:+.5f}] "
      f"(95 %, paired over {len(windows)} windows)"
    )
  if cmd.out is not None:
    write(pathlib.Path(cmd.out), cfg, rows, deltas, diff, c)
    print(f"wrote {cmd.out}")
  return rows


def write(out, cfg, rows, deltas, diff, c) -> None:
  out.mkdir(parents=True, exist_ok=True)
  with open(out / "pollution.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
  data = {
    "pollution": dataclasses.asdict(cfg.pollution),
    "data": cfg.data.eval,
    "rows": rows,
    "policy_minus_fixed_tail_dnll": diff._asdict() if diff is not None else None,
    "delta_nll": {k: v.tolist() for k, v in deltas.items()},
  }
  (out / "pollution.json").write_text(json.dumps(data))
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(7, 4))
  for name, delta in deltas.items():
    m = pol.impulse_metrics(delta, c)
    x = np.arange(1, len(m.curve_median) + 1)
    (line,) = ax.plot(x, m.curve_median, label=name, lw=2 if name in ("policy", "fixed") else 1)
    if name in ("policy", "fixed"):
      ax.fill_between(x, m.curve_p10, m.curve_p90, color=line.get_color(), alpha=0.15)
  ax.axhline(0, color="k", lw=0.5)
  ax.set_xscale("log")
  ax.set_xlabel("dense steps after the impulse")
  ax.set_ylabel("ΔNLL vs dense (median over windows)")
  ax.set_title(f"KV pollution: {c} compressed steps, then dense")
  ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(out / "pollution.png", dpi=120)
  plt.close(fig)


if __name__ == "__main__":
  main()
