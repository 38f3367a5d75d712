"""The GRPO train step sharded over a (data, model) mesh equals the one-device step.

8 fake CPU devices must be configured before jax is first imported, so the
steps run once in a subprocess (tests/rl/sharded_step_check.py) that prints
JSON: two train steps of B = 8 inputs x K = 4 rollouts (2L actions, tiny Llama)
unsharded on one device, then placed and jitted exactly as `loop.train` does on
a data=4 x model=2 mesh and on data=8 x model=1.

Tolerances. Sharding may only change the order of fp32 reductions: sums over
the batch split across "data" (loss and advantage means, gradient all-reduce)
and the LM's partial sums across "model" (o_proj, down_proj, lm_head). That is
~1e-7 relative per value, measured 2.5e-7 on the params. We allow
- metrics: rtol 1e-5 (atol 1e-6 for the ~0 ones, e.g. pg_loss = -mean(A));
- the AdamW first moment (a running mean of clipped gradients): 1e-5 of its
  largest entry;
- params: atol 1e-5, 1 % of one AdamW step at lr 1e-3. A real sharding bug (a
  shard's rows dropped, a mean over the local batch only, a missing
  all-reduce) changes updates by O(lr) and the metrics by O(1).
Sampled actions are discrete and must match exactly (same PRNG key splits;
logits differ by ~1e-7, far from the Gumbel argmax ties).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from sol_jax import config as config_lib

ROOT = pathlib.Path(__file__).resolve().parents[2]
MESHES = ("data4_model2", "data8_model1")


@pytest.fixture(scope="module")
def result():
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  env.pop("XLA_FLAGS", None)
  proc = subprocess.run(
    [sys.executable, str(ROOT / "tests" / "rl" / "sharded_step_check.py")],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.integration
def test_reference_step_trains(result):
  assert result["devices"] == 8
  assert result["ref_gradient_step"] == 2 and result["ref_mini_step"] == 0  # 2 AdamW steps
  assert result["param_change"] > 1e-3  # what the 1e-5 tolerance must resolve


@pytest.mark.integration
@pytest.mark.parametrize("mesh", MESHES)
def test_mesh_is_really_used(result, mesh):
  r = result[mesh]
  data, model = (int(x) for x in mesh.replace("data", "").split("_model"))
  assert r["mesh"] == {"data": data, "model": model}
  # q_proj [L, D, H*dh] is split over "model"; actions come back split over "data".
  assert r["q_proj_shard"] == [2, 32, 32 // model]
  assert r["actions_spec"] == ["data", None, None]


@pytest.mark.integration
@pytest.mark.parametrize("mesh", MESHES)
def test_same_actions_and_metrics(result, mesh):
  r = result[mesh]
  assert r["actions_equal"]
  assert len(r["metrics"]) == len(result["ref_metrics"]) == 2
  for got, want in zip(r["metrics"], result["ref_metrics"]):
    assert got.keys() == want.keys()
    for key in want:
      assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key


@pytest.mark.integration
@pytest.mark.parametrize("mesh", MESHES)
def test_same_gradients_and_params(result, mesh):
  r = result[mesh]
  assert r["mu_err"] <= 1e-5 * r["mu_scale"]
  assert r["opt_err"] <= 1e-5 * r["mu_scale"]  # every optimizer-state leaf
  assert r["params_err"] <= 1e-5
  assert r["step_equal"] and r["rng_equal"]


@pytest.mark.parametrize(
  "data, model, batch, match",
  [
    (-1, 1, 6, r"rl\.batch_size=6 must be divisible by the data axis \(8\)"),
    (4, 2, 6, r"rl\.batch_size=6 must be divisible by the data axis \(4\)"),
    (4, 2, 10, r"rl\.batch_size=10 must be divisible by the data axis \(4\)"),
  ],
)
def test_validate_mesh_rejects_an_unsplittable_batch(data, model, batch, match):
  cfg = config_lib.apply_overrides(
    config_lib.ExperimentConfig(),
    [f"mesh.data={data}", f"mesh.model={model}", f"rl.batch_size={batch}"],
  )
  with pytest.raises(ValueError, match=match) as err:
    config_lib.validate_mesh(cfg, 8)
  assert "change rl.batch_size or mesh.data" in str(err.value)


def test_validate_mesh_accepts_the_tested_meshes():
  for data, model in ((4, 2), (8, 1), (-1, 1)):
    cfg = config_lib.apply_overrides(
      config_lib.ExperimentConfig(),
      [
        f"mesh.data={data}",
        f"mesh.model={model}",
        "rl.batch_size=8",
        "data.horizon=4",
        "rl.minibatch_decisions=64",
      ],
    )
    assert config_lib.validate_mesh(cfg, 8) == ((8 if data == -1 else data), model)
