"""experiments.training_curves: merges resumed runs' event files, bins, plots."""

import time

import numpy as np
import pytest
import tensorboardX

from experiments import training_curves as tc

AXES = ("kappa", "rho", "eta")


def _write(tb_dir, steps, offset, keep=lambda s: 0.5, target=lambda s: 0.5):
  with tensorboardX.SummaryWriter(str(tb_dir)) as w:
    for s in steps:
      w.add_scalar("reward", -3.0 + offset + 0.01 * s, s)
      w.add_scalar("nll", 3.0 - offset - 0.01 * s, s)
      w.add_scalar("penalty", 10.0 - 0.1 * s, s)
      w.add_scalar("entropy", 3.0, s)
      for a in AXES:
        w.add_scalar(f"requested/{a}", target(s), s)
        w.add_scalar(f"realized/{a}", keep(s), s)
        w.add_scalar(f"gap/{a}", 0.5, s)
  time.sleep(1.1)  # event file names carry the creation second


def test_resumed_run_keeps_last_value_per_step(tmp_path):
  tb = tmp_path / "run" / "tb"
  _write(tb, range(1, 13), offset=0.0)  # first process: steps 1..12
  _write(tb, range(11, 21), offset=1.0)  # resumed from 10: steps 11..20 logged again
  scalars = tc.read_scalars(tb)
  steps, reward = scalars["reward"]
  np.testing.assert_array_equal(steps, np.arange(1, 21))
  np.testing.assert_allclose(reward[:10], -3.0 + 0.01 * np.arange(1, 11), atol=1e-6)
  np.testing.assert_allclose(reward[10:], -2.0 + 0.01 * np.arange(11, 21), atol=1e-6)
  table = tc.binned_table(scalars, bins=2).splitlines()
  assert table[1].split()[0] == "1-10" and table[2].split()[0] == "11-20"
  assert float(table[1].split()[1]) == pytest.approx(np.mean(reward[:10]), abs=1e-4)
  tc.main([f"train.run_dir={tmp_path / 'run'}", "eval.curve_bins=2"])
  assert (tmp_path / "run" / "training_curves.png").stat().st_size > 10_000
  written = (tmp_path / "run" / "training_curves.txt").read_text().splitlines()
  assert [r.split()[0] for r in written[1:]] == ["1-10", "11-20"]  # eval.curve_bins rows


def test_missing_event_files_is_one_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="experiments.train"):
    tc.read_scalars(tmp_path)


def test_compare_overlays_runs_and_joins_continued_ones(tmp_path):
  _write(tmp_path / "a" / "tb", range(1, 21), offset=0.0)
  _write(tmp_path / "b1" / "tb", range(1, 11), offset=0.0)
  _write(tmp_path / "b2" / "tb", range(11, 21), offset=1.0)  # b1 continued in b2
  joined = tc.read_series(f"{tmp_path / 'b1'}+{tmp_path / 'b2'}")
  steps, reward = joined["reward"]
  np.testing.assert_array_equal(steps, np.arange(1, 21))
  np.testing.assert_allclose(reward[10:], -2.0 + 0.01 * np.arange(11, 21), atol=1e-6)
  tc.main(
    [
      f"train.run_dir={tmp_path / 'a'}",
      "eval.curve_bins=2",
      f"eval.curve_compare=[{tmp_path / 'b1'}+{tmp_path / 'b2'}]",
    ]
  )
  assert (tmp_path / "a" / "training_curves_compare.png").stat().st_size > 10_000
  text = (tmp_path / "a" / "training_curves_compare.txt").read_text().splitlines()
  assert text[0] == str(tmp_path / "a") and text[4] == f"{tmp_path / 'b1'}+{tmp_path / 'b2'}"
  # penalty = 10 - 0.1 s, binned over steps 1-10 and 11-20 in both series.
  penalty = [float(text[i].split()[1]) for i in (2, 3, 6, 7)]
  assert penalty == pytest.approx([9.45, 8.45, 9.45, 8.45])


def test_paired_comparison_of_an_ab_pair(tmp_path):
  """Same targets per batch: per-batch differences, and the NLL gain at equal compute."""
  target = lambda s: 0.3 + 0.05 * (s % 7)
  base_keep = lambda s: 0.5 + 0.01 * (s % 5)
  _write(tmp_path / "a" / "tb", range(1, 21), offset=0.0, keep=base_keep, target=target)
  # b: 0.1 nats lower NLL per batch (offset), net keep +0.02 on odd batches only.
  other_keep = lambda s: base_keep(s) + 0.02 * (s % 2)
  _write(tmp_path / "b" / "tb", range(1, 21), offset=0.1, keep=other_keep, target=target)
  a, b = tc.read_series(str(tmp_path / "a")), tc.read_series(str(tmp_path / "b"))
  rows = tc.paired(a, b, np.array([0, 10, 20]))
  assert rows[0].startswith("20 paired batches: Δnll -0.1000 ± 0.0000, Δnet_keep +0.0100")
  assert rows[0].endswith("ΔNLL at equal net keep -0.1000")
  assert rows[2].split()[:3] == ["1-10", "-0.1000", "+0.0100"]
  # Different targets: not a paired A/B.
  _write(tmp_path / "c" / "tb", range(1, 21), offset=0.1, target=lambda s: 0.9)
  assert tc.paired(a, tc.read_series(str(tmp_path / "c")), np.array([0, 20])) is None
  text = tc.compare({"a": a, "b": b}, tmp_path, bins=2)
  assert "b − a (same data and targets)" in text
  assert (tmp_path / "training_curves_paired.txt").exists()
