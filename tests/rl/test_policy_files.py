"""Shipped policies: export from a run dir, load without it, refuse what does not fit.

The run dir holds a real orbax checkpoint of an untrained state (no train step
is compiled), as in test_run_config.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.flax import load_file, save_file

from experiments import export_policy as export_cli
from sol_jax import config as config_lib
from sol_jax.data import make_iterator
from sol_jax.policy import PolicyObs, network
from sol_jax.rl import checkpointing, loop, policy_compat, policy_files, run_config
from sol_jax.rl import train_step as train_step_lib
from sol_jax.rl.policy_export import export_policy
from tests.rl.test_run_config import BLOCKS, MODEL, _checkpointed_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("run")
  _checkpointed_run(path)
  return path


@pytest.fixture
def shipped_dir(run_dir, tmp_path, monkeypatch):
  monkeypatch.setenv("SOL_POLICY_DIR", str(tmp_path / "policies"))
  return export_policy(run_dir, tmp_path / "policies" / "tiny" / "seed1", MODEL)


def _checkpointed_params(run_dir):
  cfg = run_config.load_run_config(run_dir)
  ckpt = checkpointing.Checkpoints(run_dir)
  template = train_step_lib.init_train_state(loop.make_setup(cfg, MODEL), cfg.train.seed)
  params = ckpt.restore(3, template).params
  ckpt.close()
  return params


def _obs(cfg: network.PolicyConfig, t: int = 5) -> PolicyObs:
  k = jax.random.split(jax.random.PRNGKey(7), 4)
  return PolicyObs(
    hidden=jax.random.normal(k[0], (2, t, cfg.obs_hidden_dim)),
    token_embed=jax.random.normal(k[1], (2, t, cfg.embed_dim)),
    scalars=jax.random.uniform(k[2], (2, t, cfg.scalar_dim)),
    prev_action=jax.random.randint(k[3], (2, t), 0, cfg.num_actions),
    targets=jnp.asarray([[0.3, 0.6, 0.5], [0.9, 1.0, 0.9]], jnp.float32),
  )


def test_round_trip_is_bit_identical_and_acts_the_same(run_dir, shipped_dir):
  shipped = policy_files.load_policy("tiny/seed1")  # a name under $SOL_POLICY_DIR
  want = _checkpointed_params(run_dir)
  same = jax.tree.map(
    lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), want, shipped.params
  )
  assert jax.tree_util.tree_structure(want) == jax.tree_util.tree_structure(shipped.params)
  assert all(jax.tree_util.tree_leaves(same))
  setup = loop.make_setup(shipped.config, MODEL)
  assert shipped.policy == setup.policy and shipped.config == run_config.load_run_config(run_dir)
  obs = _obs(setup.policy)
  a = network.sequence_logits(setup.policy, want, obs)
  b = network.sequence_logits(shipped.policy, shipped.params, obs)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a.argmax(-1), b.argmax(-1))  # the greedy actions
  prov = shipped.provenance
  assert prov["step"] == prov["data_batches"] == 3 and prov["weights"]["dtype"] == "float32"
  assert {"commit", "dirty"} <= prov["git"].keys() and len(prov["train_starts"]) == 1
  assert prov["source_run_dir"] == str(run_dir.resolve())


def test_bfloat16_export_halves_the_file(run_dir, shipped_dir, tmp_path):
  half = export_policy(run_dir, tmp_path / "bf16", MODEL, dtype="bfloat16")
  size = lambda d: (d / policy_files.WEIGHTS_FILE).stat().st_size
  assert size(half) < 0.6 * size(shipped_dir)
  loaded = policy_files.load_policy(half).params
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(loaded))


def _rewrite(where, change):
  """Rewrites the weights through `change(flat)` and re-signs them (only the shape check fails)."""
  path = where / policy_files.WEIGHTS_FILE
  flat = dict(load_file(str(path)))
  change(flat)
  save_file(flat, str(path))
  prov = json.loads((where / "provenance.json").read_text())
  prov["weights"]["sha256"] = policy_files.sha256(path)
  (where / "provenance.json").write_text(json.dumps(prov))


def test_damaged_files_are_one_clear_error(shipped_dir):
  name = sorted(load_file(str(shipped_dir / policy_files.WEIGHTS_FILE)))[0]
  weights = shipped_dir / policy_files.WEIGHTS_FILE
  data = bytearray(weights.read_bytes())
  data[-1] ^= 1
  weights.write_bytes(bytes(data))
  with pytest.raises(ValueError, match="does not match the sha256"):
    policy_files.load_policy(shipped_dir)
  _rewrite(shipped_dir, lambda f: f.update({name: jnp.zeros((3, 1))}))
  with pytest.raises(ValueError, match=rf"{name} has shape \(3, 1\), expected"):
    policy_files.load_policy(shipped_dir)
  _rewrite(shipped_dir, lambda f: f.pop(name))
  with pytest.raises(ValueError, match=f"missing {name}"):
    policy_files.load_policy(shipped_dir)
  _rewrite(shipped_dir, lambda f: f.update({"extra/kernel": jnp.zeros(2)}))
  with pytest.raises(ValueError, match="missing .*unexpected extra/kernel"):
    policy_files.load_policy(shipped_dir)


def test_unknown_name_lists_the_shipped_ones(shipped_dir):
  with pytest.raises(FileNotFoundError, match="Shipped: tiny/seed1"):
    policy_files.load_policy("tiny/seed9")


def test_grid_width_and_policy_key_mismatches_name_both_sides(shipped_dir):
  shipped = policy_files.load_policy("tiny/seed1")
  policy_compat.check_compatible(shipped, shipped.config, MODEL)  # fits
  other = config_lib.apply_overrides(shipped.config, ["actions.variant=3L"])
  with pytest.raises(ValueError) as err:
    policy_compat.check_compatible(shipped, other, MODEL)
  msg = str(err.value)
  assert "tiny/seed1" in msg and "2L grid (" in msg and "3L grid (27 actions" in msg
  assert "actions.variant=2L" in msg
  wide = dataclasses.replace(MODEL, hidden_size=48)
  with pytest.raises(ValueError, match="LM of width 32 .* has 48"):
    policy_compat.check_compatible(shipped, shipped.config, wide)
  bigger = config_lib.apply_overrides(shipped.config, ["policy.d_model=64"])
  with pytest.raises(ValueError, match="policy.d_model is 64, trained with 32"):
    policy_compat.check_compatible(shipped, bigger, MODEL)


def test_eval_config_comes_from_the_policy_with_overrides(shipped_dir, run_dir):
  argv = ["smollm2_3L_cpu", "eval.policy=tiny/seed1", "data.eval_batches=2"]
  cfg = policy_compat.evaluation_config(argv, default="smollm2_3L_cpu")
  saved = run_config.load_run_config(shipped_dir)
  assert cfg.actions == saved.actions and cfg.policy == saved.policy  # not 3L's
  assert cfg.data.eval_batches == 2 and cfg.eval.policy == "tiny/seed1"
  # Without eval.policy: the run dir's config, as before.
  cfg = policy_compat.evaluation_config([f"train.run_dir={run_dir}"], default="smollm2_3L_cpu")
  assert cfg.eval.policy is None and cfg.actions.variant == "2L"


def test_export_cli(run_dir, tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(export_cli, "model_config", lambda source: MODEL)
  out = tmp_path / "cli" / "seed2"
  export_cli.main([f"train.run_dir={run_dir}", "--out", str(out)])
  assert policy_files.load_policy(out).provenance["step"] == 3
  with pytest.raises(SystemExit):  # a user error: one line on stderr (experiments.cli)
    export_cli.main([f"train.run_dir={run_dir}"])
  assert "error: --out is required" in capsys.readouterr().err


def test_export_cli_takes_a_chosen_checkpoint(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(export_cli, "model_config", lambda source: MODEL)
  run = tmp_path / "two_steps"
  _checkpointed_run(run)
  cfg = run_config.load_run_config(run)
  state = train_step_lib.init_train_state(loop.make_setup(cfg, MODEL), cfg.train.seed)
  later = state._replace(params=jax.tree.map(lambda x: x + 1.0, state.params))
  iterator = make_iterator(loop.train_dataset(cfg, None, BLOCKS))
  ckpt = checkpointing.Checkpoints(run)
  ckpt.save(6, later, iterator)
  ckpt.close()
  leaf = lambda out: jax.tree_util.tree_leaves(policy_files.load_policy(out).params)[0]
  export_cli.main([f"train.run_dir={run}", "--out", str(tmp_path / "latest")])
  export_cli.main([f"train.run_dir={run}", "eval.checkpoint_step=3", "--out", str(tmp_path / "s3")])
  assert policy_files.load_policy(tmp_path / "latest").provenance["step"] == 6
  assert policy_files.load_policy(tmp_path / "s3").provenance["step"] == 3
  want = jax.tree_util.tree_leaves(state.params)[0]
  np.testing.assert_array_equal(leaf(tmp_path / "s3"), want)
  np.testing.assert_array_equal(leaf(tmp_path / "latest"), np.asarray(want) + 1.0)
  with pytest.raises(SystemExit):
    export_cli.main(
      [f"train.run_dir={run}", "eval.checkpoint_step=5", "--out", str(tmp_path / "x")]
    )
  assert "error: checkpoint step 5 is not in" in capsys.readouterr().err
  assert not (tmp_path / "x").exists()  # nothing half-written


def test_warm_start_takes_params_and_data_position_with_a_fresh_optimizer(shipped_dir, tmp_path):
  from tests.rl.test_run_config import BLOCKS  # pylint: disable=g-import-not-at-top

  shipped = policy_files.load_policy("tiny/seed1")
  cfg = config_lib.apply_overrides(
    shipped.config, [f"train.run_dir={tmp_path / 'next'}", "train.init_from=tiny/seed1"]
  )
  setup = loop.make_setup(cfg, MODEL)
  fresh = train_step_lib.init_train_state(setup, cfg.train.seed + 1)
  iterator = make_iterator(loop.train_dataset(cfg, None, BLOCKS))
  state, start = loop._warm_start(cfg, MODEL, fresh, iterator)
  assert start == int(state.step) == shipped.provenance["step"] == 3
  same = jax.tree.map(lambda a, b: np.array_equal(a, b), shipped.params, state.params)
  assert all(jax.tree_util.tree_leaves(same))
  assert state.opt_state is fresh.opt_state  # Adam moments are not shipped
  # The iterator continues after the batches the shipped policy was trained on.
  reference = make_iterator(loop.train_dataset(cfg, None, BLOCKS))
  for _ in range(3):
    next(reference)
  np.testing.assert_array_equal(next(iterator), next(reference))
  wrong = config_lib.apply_overrides(cfg, ["actions.variant=3L"])
  with pytest.raises(ValueError, match="does not fit"):
    loop._warm_start(wrong, MODEL, fresh, make_iterator(loop.train_dataset(cfg, None, BLOCKS)))


def test_eval_checkpoint_step_picks_an_earlier_checkpoint(tmp_path):
  _checkpointed_run(tmp_path)  # step 3
  cfg = run_config.load_run_config(tmp_path)
  setup = loop.make_setup(cfg, MODEL)
  later = train_step_lib.init_train_state(setup, cfg.train.seed + 1)  # other params
  ckpt = checkpointing.Checkpoints(tmp_path)
  iterator = make_iterator(loop.train_dataset(cfg, None, BLOCKS))
  ckpt.save(5, later, iterator)
  ckpt.close()
  with_step = lambda step: dataclasses.replace(
    cfg, eval=dataclasses.replace(cfg.eval, checkpoint_step=step)
  )
  latest, step, _ = policy_compat.trained_policy(cfg, MODEL)
  chosen, step3, _ = policy_compat.trained_policy(with_step(3), MODEL)
  assert (step, step3) == (5, 3)
  leaves = lambda tree: jax.tree.leaves(tree)
  assert not all(np.array_equal(a, b) for a, b in zip(leaves(latest), leaves(chosen)))
  assert all(
    np.array_equal(a, b) for a, b in zip(leaves(chosen), leaves(_checkpointed_params(tmp_path)))
  )
  with pytest.raises(FileNotFoundError, match=r"holds steps \[3, 5\]"):
    policy_compat.trained_policy(with_step(4), MODEL)
  shipped = dataclasses.replace(cfg.eval, policy="tiny/seed1", checkpoint_step=3)
  with pytest.raises(ValueError, match="drop one"):
    policy_compat.trained_policy(dataclasses.replace(cfg, eval=shipped), MODEL)
