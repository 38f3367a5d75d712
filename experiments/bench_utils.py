"""Shared benchmark plumbing: matmul peak, timing, peak RSS in fresh processes."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
  """Best fp32 GFLOP/s of an XLA [size,size]@[size,size] matmul on this machine now."""
  a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best / 1e9


def best_time(fn, *args, repeats: int = 3) -> float:
  """Min wall seconds of fn(*args) over `repeats` runs (after one warm-up call)."""
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best


def peak_rss_gb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run_child(module: str, args: list[str], mode: str = "") -> dict:
  """Runs `python -m module args --child[=mode]` and parses its last stdout line as JSON."""
  child = f"--child={mode}" if mode else "--child"
  out = subprocess.run(
    [sys.executable, "-m", module, *args, child], check=True, capture_output=True, text=True
  )
  return json.loads(out.stdout.strip().splitlines()[-1])
