"""Real SmolLM2 on WikiText-2 raw test: PPL rises as any one axis is compressed harder.

One batched controlled run (C = 512, T = 16, Quest page 8 as in smollm2_3L_cpu)
evaluates the dense action and, per axis, two lower 3L levels with the other
axes dense; per axis PPL(dense) < PPL(mid) < PPL(low) must hold.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from sol_jax import config as config_lib
from sol_jax.data import text_blocks
from sol_jax.efficiency.actions import ActionSpace
from sol_jax.efficiency.controls import ControlSettings
from sol_jax.evaluation.harness import StaticSchedule, run_controlled
from sol_jax.models.registry import load_model

pytestmark = pytest.mark.integration  # the real 135M model, C = 512

N_BLOCKS = 4
# (axis name, mid action, low action) on the 3L grid; the other axes stay dense.
LADDERS = (
  ("kappa", (0.6, 1.0, 16), (0.1, 1.0, 16)),
  ("rho", (1.0, 0.8, 16), (1.0, 0.4, 16)),
  ("bits", (1.0, 1.0, 7), (1.0, 1.0, 5)),
)


@pytest.fixture(scope="module")
def setup(request):
  cfg = config_lib.load_config("smollm2_3L_cpu")
  assert cfg.model.source == "smollm2-135m"  # the session's smollm2_tokenizer
  try:
    model_cfg, params = load_model(cfg.model.source, dtype=cfg.eval.dtype)
    tokenizer = request.getfixturevalue("smollm2_tokenizer")
    blocks = text_blocks(
      cfg.data.eval, tokenizer, cfg.block_len, data_dir=cfg.data.data_dir, max_blocks=N_BLOCKS
    )
  except FileNotFoundError as err:
    pytest.skip(f"SmolLM2 or WikiText-2 not available: {err}")
  return cfg, model_cfg, params, blocks


def test_ppl_rises_as_each_axis_is_compressed(setup):
  cfg, model_cfg, params, blocks = setup
  a = cfg.actions
  space = ActionSpace.from_config(a.keep_fracs, a.struct_prune_choices, a.quant_choices)
  settings = ControlSettings.from_config(a)
  dense = space.lookup(1.0, 1.0, 16)
  columns = [dense] + [space.lookup(*act) for _, mid, low in LADDERS for act in (mid, low)]
  c, t = cfg.data.context_len, cfg.data.horizon
  schedule = jnp.broadcast_to(
    jnp.asarray(columns, jnp.int32)[None, :, None], (len(blocks), len(columns), t)
  )
  out = run_controlled(
    params,
    jnp.asarray(blocks),
    schedule,
    cfg=model_cfg,
    space=space,
    settings=settings,
    provider=StaticSchedule(),
    context_len=c,
    horizon=t,
    schedules=len(columns),
  )
  executed = np.asarray(out.actions)
  np.testing.assert_array_equal(executed, np.asarray(schedule))  # C = 512: every step effective
  ppl = np.exp(np.asarray(out.nll, np.float64).mean(axis=(0, 2)))
  report = {space.tags[col]: round(float(p), 3) for col, p in zip(columns, ppl)}
  print(f"SmolLM2 static PPL over {len(blocks)} blocks x {t} tokens: {report}")
  assert np.all(np.isfinite(ppl))
  for i, (axis, _, _) in enumerate(LADDERS):
    mid, low = ppl[1 + 2 * i], ppl[2 + 2 * i]
    assert ppl[0] < mid < low, f"{axis}: dense {ppl[0]:.3f}, mid {mid:.3f}, low {low:.3f}"
