"""Seconds per GRPO data batch, split into prefill / rollout / update.

  python -m experiments.bench_train [CONFIG] [key=value ...]
  e.g.  ... smollm2_3L_cpu bench.steps=4 rl.num_rollouts=16

Defaults to smollm2_3L_cpu (B=8, K=16, T=16, C=512, 3L, Quest page 8, fp32).
Reports compile time, recompiles after the first step (jit cache size), peak
RSS at the configured K and at 2K (fresh processes), and the FLOP rate against
an fp32 matmul peak measured in the same run. FLOPs are analytic: dense prefill
+ dense-equivalent decode of every row-step (the compressed actions save no
FLOPs in this simulation) + the LM head per row-step.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import jax
import numpy as np

from experiments import bench_utils, cli
from sol_jax.efficiency import dense_prefill, flops
from sol_jax.models import load_model
from sol_jax.rl import init_train_state, make_setup, make_train_step, rollout, sample_targets

MODULE = "experiments.bench_train"
KEYS = (
  "bench.steps",
  "model.source",
  "model.dtype",
  "rl.batch_size",
  "rl.num_rollouts",
  "data.context_len",
  "data.horizon",
  "train.seed",
)


def child(cfg, steps: int) -> dict:
  model_cfg, lm_params = load_model(cfg.model.source, dtype=cfg.model.dtype)
  setup = make_setup(cfg, model_cfg)
  b, k, c, t = cfg.rl.batch_size, cfg.rl.num_rollouts, cfg.data.context_len, cfg.data.horizon
  rng = np.random.default_rng(0)
  batches = [
    rng.integers(0, model_cfg.vocab_size, (b, c + t + 1)).astype(np.int32) for _ in range(steps + 1)
  ]
  state = init_train_state(setup, cfg.train.seed)
  step_fn = make_train_step(setup)
  start = time.perf_counter()
  state, metrics, _ = step_fn(state, lm_params, batches[0])
  jax.block_until_ready(metrics)
  first = time.perf_counter() - start
  times, peaks = [], []
  for blocks in batches[1:]:
    # The host's speed drifts within a run, so each step gets its own peak.
    peaks.append(bench_utils.matmul_peak_gflops(repeats=3))
    start = time.perf_counter()
    state, metrics, _ = step_fn(state, lm_params, blocks)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  step_s = statistics.median(times)
  prefill = jax.jit(
    lambda p, x: dense_prefill(
      p, model_cfg, x[:, :c], setup.settings.criteria, setup.settings.page_size
    )
  )
  prefill_s = bench_utils.best_time(prefill, lm_params, batches[0], repeats=2)
  targets = sample_targets(jax.random.PRNGKey(0), cfg.rl, b)
  roll = jax.jit(lambda p, lp, x, key: rollout(setup, p, lp, x, targets, key).nll)
  rollout_s = bench_utils.best_time(
    roll, state.params, lm_params, batches[0], jax.random.PRNGKey(1), repeats=2
  )
  gflop = (
    flops.prefill_flops(model_cfg, c) * b
    + float(sum(flops.dense_decode_flops(model_cfg, c + 1 + i) for i in range(t))) * b * k
  ) / 1e9
  return {
    "B": b,
    "K": k,
    "C": c,
    "T": t,
    "step_s_median": step_s,
    "step_s_all": times,
    "peak_before_step": peaks,
    "first_step_s": first,
    "compile_s": first - step_s,
    "prefill_s": prefill_s,
    "rollout_s": rollout_s - prefill_s,
    "update_s": step_s - rollout_s,
    "jit_cache_entries": step_fn._cache_size(),
    "recompiles_after_first": step_fn._cache_size() - 1,
    "gflop_per_batch": gflop,
    "peak_rss_gb": bench_utils.peak_rss_gb(),
  }


@cli.main_entry
def main(argv=None):
  cmd = cli.parse(argv, __doc__, KEYS, internal=("--child",), moved={"steps": "bench.steps"})
  cfg = cmd.cfg
  if "--child" in cmd.internal:  # the measurement, in its own process
    print(json.dumps(child(cfg, cfg.bench.steps)))
    return
  peak = bench_utils.matmul_peak_gflops()
  k = cfg.rl.num_rollouts
  main_run = bench_utils.run_child(MODULE, list(cmd.config_args))
  double = bench_utils.run_child(
    MODULE, [*cmd.config_args, "bench.steps=1", f"rl.num_rollouts={2 * k}"]
  )
  peak = max(peak, bench_utils.matmul_peak_gflops())
  r = main_run
  rate = r["gflop_per_batch"] / r["step_s_median"]
  peak = max(peak, *r["peak_before_step"])
  per_step = [f"{s:.2f} s @ {p:.0f}" for s, p in zip(r["step_s_all"], r["peak_before_step"])]
  print(f"fp32 matmul peak (same run): {peak:.1f} GFLOP/s")
  print(f"timed steps (peak GFLOP/s measured just before each): {', '.join(per_step)}")
  print(
    f"B={r['B']} K={r['K']} T={r['T']} C={r['C']}: {r['step_s_median']:.2f} s per data batch "
    f"(prefill {r['prefill_s']:.2f} + rollout {r['rollout_s']:.2f} + update {r['update_s']:.2f}); "
    f"first step {r['first_step_s']:.1f} s (compile ~{r['compile_s']:.1f} s); "
    f"recompiles after the first step: {r['recompiles_after_first']}"
  )
  print(
    f"work {r['gflop_per_batch']:.0f} GFLOP per batch -> {rate:.1f} GFLOP/s = {rate / peak:.0%} of peak"
  )
  growth = double["peak_rss_gb"] / r["peak_rss_gb"] - 1
  print(
    f"peak RSS: K={r['K']} {r['peak_rss_gb']:.2f} GB, K={double['K']} {double['peak_rss_gb']:.2f} GB "
    f"({growth:+.1%})"
  )
  print(
    json.dumps(
      {
        "matmul_peak_gflops": peak,
        "k": r,
        "2k": double,
        "frac_peak": rate / peak,
        "rss_growth": growth,
      }
    )
  )


if __name__ == "__main__":
  main(sys.argv[1:])
