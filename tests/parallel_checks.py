"""8-fake-CPU-device checks for sol_jax.parallel, run as a subprocess by test_parallel.py.

The device count is fixed when jax is first imported, so this script sets
XLA_FLAGS itself and prints one JSON object of results for the test to assert.
"""

from __future__ import annotations

import json
import os
import sys

os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
)
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from sol_jax import config as config_lib  # noqa: E402
from sol_jax import parallel  # noqa: E402
from sol_jax.models import llama  # noqa: E402
from sol_jax.models.config import ModelConfig  # noqa: E402


def _error(fn) -> str:
  try:
    fn()
  except ValueError as e:
    return str(e)
  return ""


def _specs(tree) -> dict:
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
    jax.tree_util.keystr(p): [a if a is None or isinstance(a, str) else list(a) for a in s.spec]
    for p, s in flat
  }


def mesh_checks() -> dict:
  cfg = config_lib.ExperimentConfig()
  with_mesh = lambda **kw: config_lib.apply_overrides(cfg, [f"{k}={v}" for k, v in kw.items()])
  out = {
    "devices": jax.device_count(),
    "default": dict(parallel.make_mesh(config_lib.MeshCfg()).shape),
    "data4_model2": dict(parallel.make_mesh(config_lib.MeshCfg(data=4, model=2)).shape),
    "full_cfg": dict(parallel.make_mesh(with_mesh(**{"mesh.model": 2})).shape),
    "subset": dict(parallel.make_mesh(config_lib.MeshCfg(model=2), jax.devices()[:4]).shape),
    "err_product": _error(lambda: parallel.make_mesh(config_lib.MeshCfg(data=3, model=2))),
    "err_model": _error(lambda: parallel.make_mesh(config_lib.MeshCfg(model=3))),
    "err_batch": _error(lambda: parallel.make_mesh(with_mesh(**{"rl.batch_size": 6}))),
    "err_minibatch": _error(
      lambda: parallel.make_mesh(with_mesh(**{"rl.batch_size": 8, "rl.minibatch_decisions": 96}))
    ),
  }
  mesh = parallel.make_mesh(config_lib.MeshCfg(data=4, model=2))
  out["axis_names"] = list(mesh.axis_names)
  out["distinct_devices"] = len({d.id for d in mesh.devices.flat})
  return out


def sharding_checks() -> dict:
  mesh = parallel.make_mesh(config_lib.MeshCfg(data=4, model=2))
  mesh4 = parallel.make_mesh(config_lib.MeshCfg(data=2, model=4))
  # vocab 66 is not divisible by 4; kv_heads 2 is not either (but 2 * 4 = 8 is).
  odd = ModelConfig(
    vocab_size=66,
    hidden_size=16,
    intermediate_size=24,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=4,
  )
  odd_params = jax.eval_shape(lambda: llama.init_params(odd, jax.random.key(0)))
  return {
    "toy_2": _specs(parallel.lm_param_shardings(mesh, odd_params)),
    "toy_4": _specs(parallel.lm_param_shardings(mesh4, odd_params)),
    "toy_4_heads": _specs(parallel.lm_param_shardings(mesh4, odd_params, odd)),
    "batch3": list(parallel.batch_sharding(mesh, 3).spec),
    "logical": list(parallel.logical_sharding(mesh, ("batch", "schedule", "vocab")).spec),
    "logical_odd": list(parallel.logical_sharding(mesh, ("batch", "vocab"), (6, 5)).spec),
    "replicated": list(parallel.replicated(mesh).spec),
  }


def numeric_checks() -> dict:
  mesh = parallel.make_mesh(config_lib.MeshCfg(data=4, model=2))
  out = {}
  # shard_batch on one process: the global array is the local one.
  x = np.arange(8 * 3 * 2, dtype=np.float32).reshape(8, 3, 2)
  xs = parallel.shard_batch({"x": x, "ids": np.arange(8)}, mesh)
  out["shard_batch_equal"] = bool(np.array_equal(np.asarray(xs["x"]), x))
  out["shard_batch_spec"] = list(xs["x"].sharding.spec)
  out["shard_shapes"] = sorted({tuple(s.data.shape) for s in xs["x"].addressable_shards})
  out["shard_batch_err"] = _error(lambda: parallel.shard_batch(np.zeros((6, 2)), mesh))

  # A toy two-layer MLP: weights split over "model", batch over "data".
  rng = np.random.default_rng(0)
  w1, w2 = rng.normal(size=(6, 16)).astype(np.float32), rng.normal(size=(16, 6)).astype(np.float32)
  xb = rng.normal(size=(8, 6)).astype(np.float32)
  f = lambda w1, w2, x: jnp.tanh(x @ w1) @ w2
  w1_s = parallel.logical_sharding(mesh, ("embed", "mlp"), w1.shape)
  w2_s = parallel.logical_sharding(mesh, ("mlp", "embed"), w2.shape)
  x_s = parallel.batch_sharding(mesh, 2)
  sharded = jax.jit(f, in_shardings=(w1_s, w2_s, x_s), out_shardings=x_s)(w1, w2, xb)
  ref = np.tanh(xb.astype(np.float64) @ w1) @ w2
  out["mlp_err"] = float(np.abs(np.asarray(sharded) - ref).max())
  out["mlp_out_spec"] = list(sharded.sharding.spec)

  # The tiny Llama prefill: sharded params and batch vs one device.
  cfg = ModelConfig(
    vocab_size=64,
    hidden_size=16,
    intermediate_size=32,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=4,
  )
  params = llama.init_params(cfg, jax.random.key(1))
  tokens = jax.random.randint(jax.random.key(2), (8, 12), 0, cfg.vocab_size)
  dense_logits = llama.prefill(
    jax.device_put(params, jax.devices()[0]), cfg, jax.device_put(tokens, jax.devices()[0])
  )[0]
  p_sh = parallel.lm_param_shardings(mesh, params, cfg)
  placed = jax.device_put(params, p_sh)
  out["q_shard_shape"] = list(
    placed["layers"]["attn"]["q_proj"]["kernel"].addressable_shards[0].data.shape
  )
  step = jax.jit(
    lambda p, t: llama.prefill(p, cfg, t)[0],
    in_shardings=(p_sh, parallel.batch_sharding(mesh, 2)),
    out_shardings=parallel.batch_sharding(mesh, 3),
  )
  logits = step(placed, parallel.shard_batch(np.asarray(tokens), mesh))
  out["llama_err"] = float(np.abs(np.asarray(logits) - np.asarray(dense_logits)).max())
  out["llama_scale"] = float(np.abs(np.asarray(dense_logits)).max())
  out["llama_out_spec"] = list(logits.sharding.spec)
  return out


if __name__ == "__main__":
  checks = {"mesh": mesh_checks, "sharding": sharding_checks, "numeric": numeric_checks}
  names = sys.argv[1:] or list(checks)
  print(json.dumps({n: checks[n]() for n in names}))
