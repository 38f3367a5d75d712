"""One GRPO train step, unsharded vs sharded on 8 fake CPU devices (run by test_sharded_step.py).

The device count is fixed when jax first starts, so this script sets XLA_FLAGS
itself and prints one JSON object for the test to assert. The sharded steps are
placed and jitted exactly as `sol_jax.rl.loop.train` does.

`--xla_backend_optimization_level=0` only makes XLA's CPU compiles about twice
as fast (three train steps are compiled here); every variant uses the same flag.
"""

from __future__ import annotations

import json
import os

os.environ["XLA_FLAGS"] = (
  os.environ.get("XLA_FLAGS", "")
  + " --xla_force_host_platform_device_count=8"
  + " --xla_backend_optimization_level=0"
)
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

from sol_jax import config as config_lib  # noqa: E402
from sol_jax import parallel  # noqa: E402
from sol_jax.rl.loop import make_setup  # noqa: E402
from sol_jax.rl.train_step import init_train_state, make_train_step  # noqa: E402
from tests.tiny_models import TINY_LLAMA as MODEL  # noqa: E402
from tests.tiny_models import tiny_llama_params  # noqa: E402

C, T, B, K = 8, 4, 8, 4
STEPS = 2  # the second step's rollout already runs on once-updated params
# 2 minibatches of 16 rollouts per data batch (16 splits over data=8) and
# grad_accum 2: every step accumulates once and then takes one AdamW step.
OVERRIDES = [
  f"data.context_len={C}",
  f"data.horizon={T}",
  "actions.variant=2L",
  "policy.d_model=32",
  "policy.num_heads=2",
  "policy.max_len=16",
  f"rl.num_rollouts={K}",
  f"rl.batch_size={B}",
  "rl.grad_accum=2",
  "rl.minibatch_decisions=64",
  "optim.lr=1e-3",
]
MESHES = {"data4_model2": (4, 2), "data8_model1": (8, 1)}


def _config(data: int, model: int) -> config_lib.ExperimentConfig:
  return config_lib.apply_overrides(
    config_lib.ExperimentConfig(), OVERRIDES + [f"mesh.data={data}", f"mesh.model={model}"]
  )


def _host(tree):
  return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


def _run(step_fn, state, lm_params, batches, put_batch):
  metrics, actions = [], []
  for batch in batches:
    state, m, a = step_fn(state, lm_params, put_batch(batch))
    metrics.append({k: float(v) for k, v in m.items()})
    actions.append(np.asarray(a))
  return state, metrics, np.stack(actions), a


def _max_abs(a, b) -> float:
  diffs = jax.tree.leaves(
    jax.tree.map(lambda x, y: float(np.max(np.abs(x - y), initial=0.0)), a, b)
  )
  return max(diffs)


def main() -> dict:
  lm_params = tiny_llama_params()  # seed 0
  rng = np.random.default_rng(0)
  batches = [
    rng.integers(0, MODEL.vocab_size, (B, C + T + 1)).astype(np.int32) for _ in range(STEPS)
  ]
  cfg = _config(-1, 1)
  setup = make_setup(cfg, MODEL)
  init = _host(init_train_state(setup, cfg.train.seed))

  # Reference: the plain jitted step, everything on one device.
  dev = jax.devices()[0]
  ref_state, ref_metrics, ref_actions, _ = _run(
    make_train_step(setup),
    jax.device_put(init_train_state(setup, cfg.train.seed), dev),
    jax.device_put(lm_params, dev),
    batches,
    lambda x: jax.device_put(x, dev),
  )
  ref = _host(ref_state._asdict())
  out = {
    "devices": jax.device_count(),
    "ref_metrics": ref_metrics,
    # How far one run moves the params: the comparison must resolve this.
    "param_change": _max_abs(ref["params"], init.params),
    "ref_mini_step": int(ref["opt_state"].mini_step),
    "ref_gradient_step": int(ref["opt_state"].gradient_step),
  }

  for name, (data, model) in MESHES.items():
    cfg = _config(data, model)
    assert make_setup(cfg, MODEL) == setup  # the mesh is not part of the step
    # Placement exactly as sol_jax.rl.loop.train.
    mesh = parallel.make_mesh(cfg)
    replicated = parallel.replicated(mesh)
    lm_shardings = parallel.lm_param_shardings(mesh, lm_params, MODEL)
    placed = jax.device_put(lm_params, lm_shardings)
    state = jax.device_put(init_train_state(setup, cfg.train.seed), replicated)
    step_fn = make_train_step(
      setup,
      in_shardings=(replicated, lm_shardings, parallel.batch_sharding(mesh, 2)),
      out_shardings=(replicated, replicated, parallel.batch_sharding(mesh, 3)),
    )
    state, metrics, actions, last = _run(
      step_fn, state, placed, batches, lambda x: parallel.shard_batch(x, mesh)
    )
    got = _host(state._asdict())
    ref_opt, got_opt = ref["opt_state"], got["opt_state"]
    out[name] = {
      "mesh": dict(mesh.shape),
      "q_proj_shard": list(
        placed["layers"]["attn"]["q_proj"]["kernel"].addressable_shards[0].data.shape
      ),
      "actions_spec": [
        a if a is None or isinstance(a, str) else list(a) for a in last.sharding.spec
      ],
      "actions_equal": bool(np.array_equal(actions, ref_actions)),
      "metrics": metrics,
      "params_err": _max_abs(got["params"], ref["params"]),
      # AdamW's first moment is a running mean of the clipped gradients.
      "mu_err": _max_abs(got_opt.inner_opt_state[1][0].mu, ref_opt.inner_opt_state[1][0].mu),
      "mu_scale": _max_abs(
        ref_opt.inner_opt_state[1][0].mu,
        jax.tree.map(np.zeros_like, ref_opt.inner_opt_state[1][0].mu),
      ),
      "opt_err": _max_abs(got_opt, ref_opt),
      "step_equal": bool(got["step"] == ref["step"]),
      "rng_equal": bool(np.array_equal(got["rng"], ref["rng"])),
    }
  return out


if __name__ == "__main__":
  print(json.dumps(main()))
