"""Per-token allocation by difficulty, by hand, and experiments.allocation on the tiny Llama."""

import json

import numpy as np
import pytest

from experiments import allocation as script
from sol_jax.efficiency.actions import load_action_variant
from sol_jax.evaluation.allocation import action_net_keep, allocation_bins, position_profile
from tests.evaluation.tiny_scripts import patch_tiny


def test_bins_by_hand():
  dense = np.array([[0.1, 3.0, 0.2, 4.0]])  # two easy tokens, two hard ones
  policy = dense + np.array([[0.5, 0.0, 0.5, 0.1]])  # the policy loses on the easy ones
  fixed = dense + np.array([[0.2, 0.2, 0.2, 0.2]])
  pk = np.array([[0.4, 1.0, 0.4, 0.9]])  # and spends on the hard ones
  fk = np.full((1, 4), 0.675)
  rows, corr = allocation_bins(dense, policy, fixed, pk, fk, bins=2)
  assert [r["tokens"] for r in rows] == [2, 2]
  easy, hard = rows
  assert easy["dense_nll"] == pytest.approx(0.15) and hard["dense_nll"] == pytest.approx(3.5)
  assert (easy["policy_keep"], hard["policy_keep"]) == pytest.approx((0.4, 0.95))
  assert easy["policy_excess"] == pytest.approx(0.5) and hard["policy_excess"] == pytest.approx(
    0.05
  )
  assert easy["policy_minus_fixed"] == pytest.approx(0.3)
  assert hard["policy_minus_fixed"] == pytest.approx(-0.15)
  assert hard["fixed_keep"] == pytest.approx(0.675)
  # Pearson of the ranks: keep (1.5, 4, 1.5, 3) vs NLL (1, 3, 2, 4), mean 2.5 each.
  assert corr["difficulty"] == pytest.approx(3.5 / np.sqrt(4.5 * 5.0))
  # Fixed that loses nothing anywhere: no sensitivity ranking to correlate with.
  _, corr_flat = allocation_bins(dense, policy, dense.copy(), pk, fk, bins=2)
  assert np.isnan(corr_flat["sensitivity"])
  fixed_varied = dense + np.array([[0.0, 0.4, 0.1, 0.3]])  # ranks 1, 4, 2, 3
  _, corr = allocation_bins(dense, policy, fixed_varied, pk, fk, bins=2)
  # keep ranks (1.5, 4, 1.5, 3) vs damage ranks (1, 4, 2, 3): Σ dx·dy = 4.5.
  assert corr["sensitivity"] == pytest.approx(4.5 / np.sqrt(4.5 * 5.0))
  with pytest.raises(ValueError, match="bins"):
    allocation_bins(dense, policy, fixed, pk, fk, bins=5)


def test_position_profile_by_hand():
  dense = np.array([[1.0, 2.0, 3.0], [1.0, 0.0, 1.0]])
  policy = dense + np.array([[0.0, 0.2, 0.4], [0.0, 0.0, 0.6]])
  fixed = dense + 0.1
  pk = np.array([[1.0, 0.6, 0.2], [0.8, 0.6, 0.4]])  # front-loaded
  fk = np.full((2, 3), 0.6)
  rows = position_profile(dense, policy, fixed, pk, fk)
  assert [r["step"] for r in rows] == [0, 1, 2]
  assert [r["policy_keep"] for r in rows] == pytest.approx([0.9, 0.6, 0.3])
  assert [r["policy_excess"] for r in rows] == pytest.approx([0.0, 0.1, 0.5])
  assert [r["fixed_excess"] for r in rows] == pytest.approx([0.1, 0.1, 0.1])
  assert rows[2]["fixed_keep"] == pytest.approx(0.6)
  with pytest.raises(ValueError, match="blocks, T"):
    position_profile(dense[0], policy[0], fixed[0], pk[0], fk[0])


def test_action_net_keep():
  space = load_action_variant("3L").space
  keep = action_net_keep(space)
  assert keep[space.dense_index] == pytest.approx(1.0)
  assert keep.min() == pytest.approx((0.1 + 0.4 + 5 / 16) / 3)


@pytest.mark.integration
def test_script_prints_and_writes(monkeypatch, tiny_llama, tmp_path, capsys):
  patch_tiny(monkeypatch, script, tiny_llama)
  texts = {
    "wikitext2-valid": "the cat sat on the mat and the dog sat on the log. " * 4,
    "gutenberg-heldout-valid": "Call me Ishmael. Some years ago, never mind how long. " * 4,
  }
  blocks = lambda name, tok, n, data_dir=None, max_blocks=None: np.asarray(
    tok.encode(texts[name][: 4 * n])
  ).reshape(4, n)[:max_blocks]
  monkeypatch.setattr(script, "text_blocks", blocks)
  out = tmp_path / "out"
  summaries, rows, steps = script.main(
    [
      "policy.d_model=16",
      "policy.num_heads=2",
      "data.context_len=16",
      "data.horizon=4",
      "data.eval_batch_size=2",
      "eval.dtype=float32",
      "allocation.blocks=3",
      "allocation.bins=2",
      "allocation.bootstrap_resamples=100",
      "eval.knob=[0.3]",
      "eval.progress=false",
      f"train.run_dir={tmp_path / 'no_run'}",
      f"--out={out}",
    ]
  )
  printed = capsys.readouterr().out
  assert "gutenberg-heldout-valid: 3 blocks" in printed and "Fixed's NLL excess" in printed
  assert [s["split"] for s in summaries] == list(texts)
  assert all(s["net_keep"] < 1.0 and s["ppl_dense"] > 1.0 for s in summaries)
  assert len(rows) == 4 and sum(r["tokens"] for r in rows[:2]) == 3 * 4
  # Fixed is matched to the policy's realized budgets on each split.
  assert all(abs(r["fixed_keep"] - s["net_keep"]) < 0.2 for r, s in zip(rows[::2], summaries))
  assert "per step t: policy keep" in printed
  assert [q["step"] for q in steps] == [0, 1, 2, 3] * 2
  # Fixed spends the same at every step (up to its round-robin over 3 blocks).
  assert all(abs(q["fixed_keep"] - s["net_keep"]) < 0.25 for q, s in zip(steps[::4], summaries))
  data = json.loads((out / "allocation.json").read_text())
  assert len(data["positions"]) == 8
  assert data["policy_step"] == 7 and len(data["bins"]) == 4
  assert (out / "allocation.png").stat().st_size > 0 and (out / "allocation.csv").exists()
