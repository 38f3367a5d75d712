"""Prefill and decode throughput of the frozen LM, dense and controlled.

  python -m experiments.bench_decode [CONFIG] [key=value ...]
  e.g.  ... smollm2_3L_cpu rl.batch_size=8 rl.num_rollouts=16 data.context_len=512
            actions.page_size=8 'bench.decode_modes=[dense,controlled]'

The model is model.source (in model.dtype), B = rl.batch_size, K = rl.num_rollouts,
C = data.context_len, T = data.horizon, the grid and Quest page are the `actions`
section's. Modes: prefill, then each of bench.decode_modes (dense; quest = Quest
attention sparsity only; controlled = random actions of the grid on all three
mechanisms; policy = the policy network choosing every action inside the
evaluation harness, timed against the same harness replaying static actions,
which gives the policy's share of a decode step); controlled also runs at each K of bench.memory_rollouts for the
peak-RSS check. Each configuration runs in a fresh process so its peak RSS is its own. Every
rate is also given as a fraction of an fp32 matmul peak measured in the same
run (before and after; the max is used). FLOPs are analytic
(sol_jax.efficiency.flops): XLA's cost analysis counts a scan body only once.
"""

from __future__ import annotations

import functools
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from experiments import bench_utils, cli
from sol_jax.efficiency import decode, flops, make_controls
from sol_jax.evaluation import StaticSchedule, run_controlled
from sol_jax.models import load_model
from sol_jax.policy import PolicyAgent, network
from sol_jax.rl import action_space, make_setup

MODULE = "experiments.bench_decode"
KEYS = (
  "bench.decode_modes",
  "bench.memory_rollouts",
  "model.source",
  "model.dtype",
  "rl.batch_size",
  "rl.num_rollouts",
  "data.context_len",
  "data.horizon",
  "actions.page_size",
  "actions.keep_fracs",
  "actions.struct_prune_choices",
  "actions.quant_choices",
)
MOVED = {
  "model": "model.source",
  "batch": "rl.batch_size",
  "schedules": "rl.num_rollouts",
  "context": "data.context_len",
  "horizon": "data.horizon",
  "page_size": "actions.page_size",
  "variant": "actions.variant",
  "modes": "bench.decode_modes",
  "memory_schedules": "bench.memory_rollouts",
}


def _controlled_decode_fn(cfg, c, t, mode, page_size):
  def run(params, blocks, kappa, rho, bits):
    b, k = kappa.shape
    criteria = "quest" if mode in ("quest", "controlled") else "none"
    _, _, prefix, aux = decode.dense_prefill(params, cfg, blocks[:, :c], criteria, page_size)
    suffix = decode.new_suffix(cfg, b, k, t)

    def step(suffix, i):
      tok = blocks[:, c + i]
      if mode == "dense":
        logits, _, suffix = decode.dense_schedule_step(params, cfg, tok, prefix, suffix)
      else:
        ctl = make_controls(kappa, rho, bits, page_size=page_size)
        logits, _, suffix = decode.schedule_step(params, cfg, tok, prefix, aux, suffix, ctl)
      return suffix, decode.token_logprob(logits, blocks[:, c + i + 1][:, None])

    return jax.lax.scan(step, suffix, jnp.arange(t))[1]

  return jax.jit(run)


def policy_share(exp, cfg, params, blocks, out) -> None:
  """Harness decode with the policy choosing vs replaying its actions (same B, K, C, T)."""
  setup = make_setup(exp, cfg)
  b, k, c, t = blocks.shape[0], exp.rl.num_rollouts, exp.data.context_len, exp.data.horizon
  run = functools.partial(
    run_controlled,
    cfg=cfg,
    space=setup.space,
    settings=setup.settings,
    context_len=c,
    horizon=t,
    schedules=k,
  )
  policy_params = network.init_params(setup.policy, jax.random.PRNGKey(0))
  agent = PolicyAgent(setup.policy, setup.space, t, greedy=True)
  inputs = {
    "params": policy_params,
    "targets": jnp.full((b, k, 3), 0.6, jnp.float32),
    "rng": jax.random.PRNGKey(1),
  }
  # Replay exactly the actions the policy chose: the LM work is then identical
  # (Quest and top-k costs depend on the action), only the policy's part differs.
  actions = run(params, blocks, inputs, provider=agent).actions
  with_policy = bench_utils.best_time(
    lambda x: run(params, x, inputs, provider=agent), blocks, repeats=2
  )
  static = bench_utils.best_time(
    lambda x: run(params, x, actions, provider=StaticSchedule()), blocks, repeats=2
  )
  decode_s = with_policy - out["prefill_s"]
  n_policy = sum(x.size for x in jax.tree_util.tree_leaves(policy_params))
  lm_flops = float(flops.dense_decode_flops(cfg, c + t // 2))
  kv = c + 1 + np.arange(t)
  out.update(
    decode_gflop=float(sum(flops.dense_decode_flops(cfg, int(n)) for n in kv)) * b * k / 1e9,
    harness_policy_s=with_policy,
    harness_static_s=static,
    decode_s=decode_s,
    row_steps_per_s=b * k * t / decode_s,
    policy_share_of_decode=(with_policy - static) / decode_s,
    policy_params=n_policy,
    policy_flop_share=2.0 * n_policy / (2.0 * n_policy + lm_flops),
  )


def child(exp, mode: str) -> dict:
  cfg, params = load_model(exp.model.source, dtype=exp.model.dtype)
  b, k, c, t = exp.rl.batch_size, exp.rl.num_rollouts, exp.data.context_len, exp.data.horizon
  page_size = exp.actions.page_size
  rng = np.random.default_rng(0)
  blocks = jnp.asarray(rng.integers(0, cfg.vocab_size, (b, c + t + 1)), jnp.int32)
  out = {"mode": mode, "B": b, "K": k, "C": c, "T": t}
  prefill = jax.jit(lambda p, x: decode.dense_prefill(p, cfg, x[:, :c], "quest", page_size))
  out["prefill_s"] = bench_utils.best_time(prefill, params, blocks)
  out["prefill_tokens_per_s"] = b * c / out["prefill_s"]
  out["prefill_gflop"] = flops.prefill_flops(cfg, c) * b / 1e9
  if mode == "policy":
    policy_share(exp, cfg, params, blocks, out)
  elif mode != "prefill":
    space = action_space(exp)
    if mode == "quest":  # attention sparsity only
      kappa = rng.choice(np.unique(space.kappa), (b, k))
      rho, bits = np.ones((b, k)), np.full((b, k), 16)
    else:  # all three mechanisms, random actions of the grid
      a = rng.integers(0, space.num_actions, (b, k))
      kappa, rho, bits = space.kappa[a], space.rho[a], space.bits[a]
    fn = _controlled_decode_fn(cfg, c, t, mode, page_size)
    total = bench_utils.best_time(
      fn,
      params,
      blocks,
      jnp.asarray(kappa, jnp.float32),
      jnp.asarray(rho, jnp.float32),
      jnp.asarray(bits, jnp.int32),
    )
    out["decode_s"] = total - out["prefill_s"]
    out["row_steps_per_s"] = b * k * t / out["decode_s"]
    kv = c + 1 + np.arange(t)
    out["decode_gflop"] = (
      float(sum(flops.dense_decode_flops(cfg, int(n)) for n in kv)) * b * k / 1e9
    )
  out["peak_rss_gb"] = bench_utils.peak_rss_gb()
  return out


@cli.main_entry
def main(argv=None):
  cmd = cli.parse(argv, __doc__, KEYS, internal=("--child",), moved=MOVED)
  cfg = cmd.cfg
  if "--child" in cmd.internal:  # one configuration, in its own process
    print(json.dumps(child(cfg, cmd.internal["--child"])))
    return
  run = lambda mode, k: bench_utils.run_child(
    MODULE, [*cmd.config_args, f"rl.num_rollouts={k}"], mode
  )
  schedules = cfg.rl.num_rollouts
  peak = bench_utils.matmul_peak_gflops()
  rows = [run("prefill", schedules)]
  for mode in cfg.bench.decode_modes:
    for k in sorted({schedules, *cfg.bench.memory_rollouts}):
      if k == schedules or mode == "controlled":
        rows.append(run(mode, k))
  peak = max(peak, bench_utils.matmul_peak_gflops())
  print(f"fp32 matmul peak (same run): {peak:.1f} GFLOP/s")
  dense = next((r for r in rows if r["mode"] == "dense"), None)
  for r in rows:
    r["prefill_frac_peak"] = r["prefill_gflop"] / r["prefill_s"] / peak
    line = (
      f"{r['mode']:>10} B={r['B']} K={r['K']:>2} C={r['C']}: prefill {r['prefill_tokens_per_s']:.0f} tok/s "
      f"({r['prefill_frac_peak']:.0%} of peak)"
    )
    if "decode_s" in r:
      r["decode_frac_peak"] = r["decode_gflop"] / r["decode_s"] / peak
      line += (
        f" | decode {r['row_steps_per_s']:.0f} row-steps/s over {r['B'] * r['K']} rows "
        f"({r['decode_frac_peak']:.0%} of peak)"
      )
      if dense and r is not dense and r["K"] == dense["K"]:
        r["overhead_vs_dense"] = dense["row_steps_per_s"] / r["row_steps_per_s"] - 1
        line += f", overhead vs dense {r['overhead_vs_dense']:+.0%}"
    if "policy_share_of_decode" in r:
      line += (
        f"; policy {r['policy_share_of_decode']:.1%} of the decode time "
        f"({r['policy_params']:,} params, {r['policy_flop_share']:.1%} of the FLOPs)"
      )
    line += f" | peak RSS {r['peak_rss_gb']:.2f} GB"
    print(line)
  print(json.dumps({"matmul_peak_gflops": peak, "rows": rows}))


if __name__ == "__main__":
  main(sys.argv[1:])
