"""A run directory remembers its config: config.yaml, resume checks, evaluation loading.

The run directories here hold a real orbax checkpoint of an untrained state
(no train step is compiled): a resume is refused or allowed before any step.
"""

from __future__ import annotations

import json
import logging
import pathlib

import jax
import numpy as np
import pytest

from sol_jax import config as config_lib
from sol_jax.config import script_sections
from sol_jax.config.fields import Section
from sol_jax.data import make_iterator
from sol_jax.models import llama
from sol_jax.rl import checkpointing, loop, run_config
from sol_jax.rl import train_step as train_step_lib
from tests.tiny_models import TINY_LLAMA_1L

MODEL = TINY_LLAMA_1L
C, T, B = 8, 4, 2
OVERRIDES = [
  f"data.context_len={C}",
  f"data.horizon={T}",
  "data.train_fraction=1.0",
  "actions.variant=2L",
  "policy.d_model=32",
  "policy.num_heads=2",
  "policy.max_len=16",
  "rl.num_rollouts=4",
  f"rl.batch_size={B}",
  "rl.minibatch_decisions=16",
  "optim.lr=1e-2",
  "train.num_steps=6",
  "train.checkpoint_every=3",
  "model.source=tiny-test-model",
]
BLOCKS = np.random.default_rng(0).integers(0, MODEL.vocab_size, (B * 8, C + T + 1), dtype=np.int32)
LM = (MODEL, llama.init_params(MODEL, jax.random.PRNGKey(0)))


def _config(run_dir: pathlib.Path, *extra: str) -> config_lib.ExperimentConfig:
  return config_lib.apply_overrides(
    config_lib.ExperimentConfig(), OVERRIDES + [f"train.run_dir={run_dir}", *extra]
  )


def _checkpointed_run(run_dir: pathlib.Path, *, with_config: bool = True) -> None:
  """A run dir as `train` leaves it after 3 batches (the state itself is untrained)."""
  cfg = _config(run_dir)
  state = train_step_lib.init_train_state(loop.make_setup(cfg, MODEL), cfg.train.seed)
  iterator = make_iterator(loop.train_dataset(cfg, None, BLOCKS))
  for _ in range(3):
    next(iterator)
  ckpt = checkpointing.Checkpoints(run_dir)
  ckpt.save(3, state, iterator)
  ckpt.close()
  if with_config:
    run_config.save_run_config(run_dir, cfg)


def test_config_yaml_round_trips(tmp_path):
  for cfg in (
    config_lib.load_config("smollm2_3L_cpu"),
    _config(
      tmp_path,
      "rl.budget_kappa_list=[0.2,0.55]",
      "optim.lr=3e-4",
      "data.data_dir=/some/where",
      "description='a: tricky # string'",
    ),
  ):
    run_config.save_run_config(tmp_path, cfg)
    assert run_config.load_run_config(tmp_path) == cfg
  starts = json.loads((tmp_path / run_config.PROVENANCE_FILE).read_text())["starts"]
  assert len(starts) == 2
  assert starts[-1]["versions"]["jax"] == jax.__version__
  assert {"commit", "dirty"} <= starts[-1]["git"].keys()
  # Written atomically: no temporary file is left beside them.
  assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "provenance.json"]


def test_saved_grid_does_not_depend_on_the_variant_file(tmp_path):
  cfg = _config(tmp_path, "actions.keep_fracs=[0.25,1.0]")  # differs from 2L.yaml's list
  run_config.save_run_config(tmp_path, cfg)
  loaded = run_config.load_run_config(tmp_path)
  assert loaded.actions.keep_fracs == (0.25, 1.0) and loaded.actions.variant == "2L"


def test_resume_with_a_changed_lr_is_refused(tmp_path):
  _checkpointed_run(tmp_path)
  before = (tmp_path / "config.yaml").read_text()
  with pytest.raises(ValueError) as err:
    loop.train(
      _config(tmp_path, "optim.lr=1e-3", "rl.entropy_coef=0.1"),
      LM,
      blocks=BLOCKS,
      progress=False,
      log=False,
    )
  msg = str(err.value)
  assert "optim.lr: 0.01 → 0.001" in msg and "rl.entropy_coef: 0.05 → 0.1" in msg
  assert msg.count(" → ") == 2  # only the two changed keys, in one error
  assert str(tmp_path) in msg and "train.num_steps" in msg  # where, and what may change
  assert (tmp_path / "config.yaml").read_text() == before


def test_resume_with_changed_run_control_keys_is_allowed(tmp_path, caplog):
  _checkpointed_run(tmp_path)
  cfg = _config(tmp_path, "train.num_steps=3", "train.log_every=1", "eval.dtype=float32")
  with caplog.at_level(logging.INFO, logger="sol_jax"):
    state = loop.train(cfg, LM, blocks=BLOCKS, progress=False, log=False)
  assert int(state.step) == 0  # restored (untrained) state; no step left to run
  assert any("resumed from" in r.getMessage() for r in caplog.records)
  assert run_config.load_run_config(tmp_path) == cfg  # the latest start's config
  starts = json.loads((tmp_path / run_config.PROVENANCE_FILE).read_text())["starts"]
  assert [s["resumed_from_step"] for s in starts] == [None, 3]


def test_a_run_from_before_config_yaml_resumes_with_a_warning(tmp_path, caplog):
  _checkpointed_run(tmp_path, with_config=False)
  cfg = _config(tmp_path, "train.num_steps=3")
  with caplog.at_level(logging.WARNING, logger="sol_jax"):
    loop.train(cfg, LM, blocks=BLOCKS, progress=False, log=False)
  assert any("no config.yaml" in r.getMessage() for r in caplog.records)
  assert run_config.load_run_config(tmp_path) == cfg


def test_evaluation_uses_the_saved_config(tmp_path):
  _checkpointed_run(tmp_path)
  saved = run_config.load_run_config(tmp_path)
  # The default config (smollm2_3L_cpu) only names nothing here: the run dir wins.
  cfg = run_config.evaluation_config(
    [f"train.run_dir={tmp_path}", "eval.dtype=float32"], default="smollm2_3L_cpu"
  )
  assert cfg.eval.dtype == "float32"  # eval overrides apply on top
  assert cfg.actions == saved.actions and cfg.policy == saved.policy
  assert cfg.model.source == "tiny-test-model" and cfg.data.context_len == C
  with pytest.raises(ValueError, match=r"policy\.d_model: 32 → 64"):
    run_config.evaluation_config(
      [f"train.run_dir={tmp_path}", "policy.d_model=64"], default="smollm2_3L_cpu"
    )


def test_evaluation_of_a_run_without_config_uses_the_command_line(tmp_path, caplog):
  with caplog.at_level(logging.WARNING, logger="sol_jax"):
    cfg = run_config.evaluation_config(
      [f"train.run_dir={tmp_path}", "policy.d_model=64"], default="smollm2_3L_cpu"
    )
  assert cfg.policy.d_model == 64 and cfg.name == "smollm2_3L_cpu"
  assert any("no config.yaml" in r.getMessage() for r in caplog.records)


def test_run_control_keys():
  assert run_config.is_run_control("train.num_steps")
  assert run_config.is_run_control("eval.dtype")
  assert not run_config.is_run_control("optim.lr")
  assert not run_config.is_run_control("train.seed")
  assert not run_config.is_run_control("data.horizon")
  # Every script's own section may change when a run is evaluated.
  for section in vars(script_sections).values():
    if isinstance(section, type) and issubclass(section, Section) and section is not Section:
      assert run_config.is_run_control(f"{section._name}.anything"), section._name
  # Every allowed key names a real config field or section.
  flat = run_config._flat(config_lib.ExperimentConfig())
  for key in run_config.RUN_CONTROL_KEYS:
    prefix = key[:-1] if key.endswith(".*") else key
    assert any(k == key or k.startswith(prefix) for k in flat), key


def test_eval_policy_builds_from_the_run_config(tmp_path, monkeypatch):
  from experiments import eval_policy  # pylint: disable=g-import-not-at-top

  class Loaded(Exception):
    pass

  def fake_load_model(source, dtype):
    raise Loaded(source, dtype)

  _checkpointed_run(tmp_path)
  monkeypatch.setattr(eval_policy, "load_model", fake_load_model)
  with pytest.raises(Loaded) as got:
    eval_policy.main(["smollm2_3L_cpu", f"train.run_dir={tmp_path}", "eval.dtype=float32"])
  assert got.value.args == ("tiny-test-model", "float32")  # the run's model, the eval override
