"""Tracker round trips: write with tensorboardX, read back with TensorBoard's own reader."""

from __future__ import annotations

import collections
import itertools

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
import yaml
from tensorboard.backend.event_processing import event_accumulator as ea
from tensorboard.plugins.hparams import plugin_data_pb2

from sol_jax import config as config_lib
from sol_jax import tracking
from sol_jax.efficiency.actions import ActionSpace

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)


def _read(logdir):
  size = {kind: 0 for kind in ea.DEFAULT_SIZE_GUIDANCE}  # 0 = keep every event
  return ea.EventAccumulator(str(logdir), size_guidance=size).Reload()


def _hist(acc, tag):
  (event,) = acc.Histograms(tag)
  return event.step, event.histogram_value


def test_scalars_round_trip(tmp_path):
  with tracking.Tracker(tmp_path) as t:
    t.scalar("lr", 1e-4, 0)
    for step in (1, 5, 9):
      t.scalars(
        {"loss": jnp.asarray(0.5 * step), "acc": np.float32(step / 10)}, step, prefix="train"
      )
    t.scalar("lr", jnp.asarray(2e-4), jnp.asarray(7))
  acc = _read(tmp_path)
  assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 0.5), (5, 2.5), (9, 4.5)]
  np.testing.assert_allclose(
    [e.value for e in acc.Scalars("train/acc")], [0.1, 0.5, 0.9], rtol=1e-6
  )
  assert [e.step for e in acc.Scalars("lr")] == [0, 7]
  np.testing.assert_allclose([e.value for e in acc.Scalars("lr")], [1e-4, 2e-4], rtol=1e-6)


def test_histogram_counts(tmp_path):
  # float32, as a JAX array holds it; the reference sums in float64 like the tracker.
  values = np.random.default_rng(0).normal(size=500).astype(np.float32)
  with tracking.Tracker(tmp_path) as t:
    t.histogram("w", jnp.asarray(values), 4, bins=12)
  step, h = _hist(_read(tmp_path), "w")
  values = values.astype(np.float64)
  counts, edges = np.histogram(values, bins=12)
  assert step == 4 and h.num == 500
  np.testing.assert_array_equal(h.bucket, counts)
  np.testing.assert_allclose(h.bucket_limit, edges[1:])
  np.testing.assert_allclose(h.sum, values.sum(), rtol=1e-9)
  np.testing.assert_allclose(h.sum_squares, (values**2).sum(), rtol=1e-9)


def test_action_histograms_match_manual_decoding(tmp_path):
  # Unsorted levels: the histogram must still bucket each value with its level.
  space = ActionSpace((1.0, 0.25, 0.5), (0.4, 1.0), (16, 5, 7))
  actions = np.random.default_rng(1).integers(0, space.num_actions, size=(4, 3, 5))
  with tracking.Tracker(tmp_path) as t:
    tracking.action_histograms(t, jnp.asarray(actions, jnp.int32), space, 11, prefix="act")
  acc = _read(tmp_path)
  # Reference: the κ-major flat layout, decoded by enumerating the grid.
  grid = list(itertools.product(space.keep_fracs, space.prune_fracs, space.quant_bits))
  for axis, levels in enumerate((space.keep_fracs, space.prune_fracs, space.quant_bits)):
    want = collections.Counter(grid[a][axis] for a in actions.reshape(-1))
    step, h = _hist(acc, f"act/{('kappa', 'rho', 'bits')[axis]}")
    assert step == 11 and h.num == actions.size
    np.testing.assert_array_equal(h.bucket, [want[v] for v in sorted(levels)])
    # Each level lies inside its own bucket.
    lefts = [-np.inf] + list(h.bucket_limit[:-1])
    for v, lo, hi in zip(sorted(levels), lefts, h.bucket_limit):
      assert lo < v < hi
  _, h = _hist(acc, "act/joint")
  want = collections.Counter(actions.reshape(-1).tolist())
  np.testing.assert_array_equal(h.bucket, [want[a] for a in range(space.num_actions)])
  np.testing.assert_allclose(h.sum, actions.sum())


def test_action_histograms_rejects_out_of_range(tmp_path):
  space = ActionSpace((0.5, 1.0), (1.0,), (16,))
  with tracking.Tracker(tmp_path) as t:
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
      tracking.action_histograms(t, np.array([0, 2]), space, 0)
    with pytest.raises(ValueError, match="integer"):
      tracking.action_histograms(t, np.array([0.0, 1.0]), space, 0)
    with pytest.raises(ValueError, match="non-empty"):
      t.histogram("empty", np.zeros((0,)), 0)


def test_text_and_config(tmp_path):
  cfg = config_lib.apply_overrides(config_lib.ExperimentConfig(), ["rl.num_rollouts=16"])
  with tracking.Tracker(tmp_path) as t:
    t.text("notes", "a *markdown* note", 5)
    t.config(cfg, metrics=["eval/ppl", "train/loss"])
  acc = _read(tmp_path)
  (note,) = acc.Tensors("notes/text_summary")
  assert note.step == 5 and note.tensor_proto.string_val == [b"a *markdown* note"]
  (text,) = acc.Tensors("config/text_summary")
  body = text.tensor_proto.string_val[0].decode()
  assert body.startswith("```yaml\n") and body.endswith("```")
  reloaded = config_lib.config_from_dict(yaml.safe_load(body[len("```yaml\n") : -3]))
  assert reloaded == cfg

  content = acc.PluginTagToContent("hparams")
  start = plugin_data_pb2.HParamsPluginData.FromString(
    content["_hparams_/session_start_info"]
  ).session_start_info
  assert start.hparams["rl.num_rollouts"].number_value == 16
  assert start.hparams["model.source"].string_value == "smollm2-135m"
  assert start.hparams["rl.adv_whiten_global"].bool_value is True
  assert start.hparams["train.num_steps"].string_value == "None"
  assert set(start.hparams) == set(config_lib.config_to_flat_dict(cfg))
  exp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
  assert [m.name.tag for m in exp.metric_infos] == ["eval/ppl", "train/loss"]


def test_hparams_metric_values_are_logged(tmp_path):
  with tracking.Tracker(tmp_path) as t:
    t.hparams({"lr": np.float32(0.5), "name": "x", "grid": (1, 2)}, {"hp/score": 3.0})
  acc = _read(tmp_path)
  start = plugin_data_pb2.HParamsPluginData.FromString(
    acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
  ).session_start_info
  assert start.hparams["lr"].number_value == 0.5
  assert start.hparams["grid"].string_value == "(1, 2)"
  assert [(e.step, e.value) for e in acc.Scalars("hp/score")] == [(0, 3.0)]


def test_images(tmp_path):
  fig = plt.figure(figsize=(2, 1), dpi=40)
  plt.plot([0, 1], [1, 0])
  with tracking.Tracker(tmp_path) as t:
    t.image("fig", fig, 3)
    t.image("gray", np.linspace(0, 1, 24).reshape(4, 6), 1)
    t.image("rgb", np.zeros((5, 7, 3), np.uint8), 2)
    with pytest.raises(ValueError, match="shape"):
      t.image("bad", np.zeros((2, 3, 5)), 0)
  assert not plt.fignum_exists(fig.number)  # closed after writing
  acc = _read(tmp_path)
  img = acc.Images("fig")[0]
  assert (img.step, img.width, img.height) == (3, 80, 40)
  assert [(i.width, i.height) for i in acc.Images("gray")] == [(6, 4)]
  assert [(i.step, i.width, i.height) for i in acc.Images("rgb")] == [(2, 7, 5)]


def test_only_process_zero_writes(tmp_path, monkeypatch):
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  logdir = tmp_path / "run"
  with tracking.Tracker(logdir) as t:
    assert not t.enabled
    t.scalars({"x": 1.0}, 0)
    t.histogram("h", np.ones(3), 0)
    t.text("t", "x", 0)
    t.config(config_lib.ExperimentConfig())
    tracking.action_histograms(t, np.array([0]), ActionSpace((1.0,), (1.0,), (16,)), 0)
  assert not logdir.exists()
  monkeypatch.setattr(jax, "process_index", lambda: 0)
  with tracking.Tracker(logdir) as t:
    t.scalar("x", 1.0, 0)
  assert [e.value for e in _read(logdir).Scalars("x")] == [1.0]
