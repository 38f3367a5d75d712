"""Prefill and decode throughput of the frozen LM, dense and controlled.

  python -m experiments.bench_decode [--batch 8] [--schedules 16] [--context 512]

Each configuration runs in a fresh process so its peak RSS is its own. Every
rate is also given as a fraction of an fp32 matmul peak measured in the same
run (before and after; the max is used). FLOPs are analytic
(sol_jax.efficiency.flops): XLA's cost analysis counts a scan body only once.
"""
from __future__ import annotations

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from experiments import bench_utils
from sol_jax.efficiency import decode, flops
from sol_jax.efficiency.actions import load_action_variant
from sol_jax.efficiency.controls import make_controls
from sol_jax.models.registry import load_model

MODULE = "experiments.bench_decode"


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


def child(args) -> dict:
  cfg, params = load_model(args.model)
  b, k, c, t = args.batch, args.schedules, args.context, args.horizon
  rng = np.random.default_rng(0)
  blocks = jnp.asarray(rng.integers(0, cfg.vocab_size, (b, c + t + 1)), jnp.int32)
  out = {"mode": args.mode, "B": b, "K": k, "C": c, "T": t}
  prefill = jax.jit(lambda p, x: decode.dense_prefill(p, cfg, x[:, :c], "quest", args.page_size))
  out["prefill_s"] = bench_utils.best_time(prefill, params, blocks)
  out["prefill_tokens_per_s"] = b * c / out["prefill_s"]
  out["prefill_gflop"] = flops.prefill_flops(cfg, c) * b / 1e9
  if args.mode != "prefill":
    space = load_action_variant(args.variant).space
    if args.mode == "quest":  # attention sparsity only
      kappa = rng.choice(np.unique(space.kappa), (b, k))
      rho, bits = np.ones((b, k)), np.full((b, k), 16)
    else:  # all three mechanisms, random actions of the grid
      a = rng.integers(0, space.num_actions, (b, k))
      kappa, rho, bits = space.kappa[a], space.rho[a], space.bits[a]
    fn = _controlled_decode_fn(cfg, c, t, args.mode, args.page_size)
    total = bench_utils.best_time(fn, params, blocks, jnp.asarray(kappa, jnp.float32),
                                  jnp.asarray(rho, jnp.float32), jnp.asarray(bits, jnp.int32))
    out["decode_s"] = total - out["prefill_s"]
    out["row_steps_per_s"] = b * k * t / out["decode_s"]
    kv = c + 1 + np.arange(t)
    out["decode_gflop"] = float(sum(flops.dense_decode_flops(cfg, int(n)) for n in kv)) * b * k / 1e9
  out["peak_rss_gb"] = bench_utils.peak_rss_gb()
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--model", default="smollm2-135m")
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--schedules", type=int, default=16)
  p.add_argument("--context", type=int, default=512)
  p.add_argument("--horizon", type=int, default=16)
  p.add_argument("--page_size", type=int, default=8)
  p.add_argument("--variant", default="3L")
  p.add_argument("--modes", default="dense,quest,controlled")
  p.add_argument("--mode", default="dense")
  p.add_argument("--memory_schedules", default="16,32", help="K values for the memory check")
  p.add_argument("--child", action="store_true")
  args = p.parse_args(argv)
  if args.child:
    print(json.dumps(child(args)))
    return
  common = [f"--{n}={getattr(args, n)}" for n in
            ("model", "batch", "context", "horizon", "page_size", "variant")]
  peak = bench_utils.matmul_peak_gflops()
  rows = [bench_utils.run_child(MODULE, common + ["--mode=prefill", f"--schedules={args.schedules}"])]
  for mode in args.modes.split(","):
    for k in sorted({args.schedules, *map(int, args.memory_schedules.split(","))}):
      if k == args.schedules or mode == "controlled":
        rows.append(bench_utils.run_child(MODULE, common + [f"--mode={mode}", f"--schedules={k}"]))
  peak = max(peak, bench_utils.matmul_peak_gflops())
  print(f"fp32 matmul peak (same run): {peak:.1f} GFLOP/s")
  dense = next((r for r in rows if r["mode"] == "dense"), None)
  for r in rows:
    r["prefill_frac_peak"] = r["prefill_gflop"] / r["prefill_s"] / peak
    line = (f"{r['mode']:>10} B={r['B']} K={r['K']:>2} C={r['C']}: prefill {r['prefill_tokens_per_s']:.0f} tok/s "
            f"({r['prefill_frac_peak']:.0%} of peak)")
    if "decode_s" in r:
      r["decode_frac_peak"] = r["decode_gflop"] / r["decode_s"] / peak
      line += (f" | decode {r['row_steps_per_s']:.0f} row-steps/s over {r['B'] * r['K']} rows "
               f"({r['decode_frac_peak']:.0%} of peak)")
      if dense and r is not dense and r["K"] == dense["K"]:
        r["overhead_vs_dense"] = dense["row_steps_per_s"] / r["row_steps_per_s"] - 1
        line += f", overhead vs dense {r['overhead_vs_dense']:+.0%}"
    line += f" | peak RSS {r['peak_rss_gb']:.2f} GB"
    print(line)
  print(json.dumps({"matmul_peak_gflops": peak, "rows": rows}))


if __name__ == "__main__":
  main(sys.argv[1:])
