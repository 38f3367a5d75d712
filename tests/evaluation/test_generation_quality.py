"""Repetition / diversity metrics by hand, and experiments.generation_quality on the tiny Llama."""

import json

import numpy as np
import pytest

from experiments import generation_quality as script
from sol_jax.evaluation import degeneration as dg
from tests.evaluation.tiny_scripts import patch_tiny


def test_repetition_metrics_by_hand():
  loop = [1, 2, 3] * 4  # 12 tokens, 10 trigrams of which 3 are unique
  assert dg.seq_rep(loop, 3) == pytest.approx(1 - 3 / 10)
  assert dg.seq_rep(list(range(12)), 3) == 0.0
  assert dg.seq_rep([1], 2) == 0.0
  # distinct pools sequences: the second repeats the first's bigrams
  assert dg.distinct([[1, 2, 3], [1, 2, 3]], 2) == pytest.approx(2 / 4)
  table = dg.repetition_table([loop, list(range(12))], (1, 3))
  assert table["seq_rep_3"] == pytest.approx((0.7 + 0.0) / 2)
  assert table["distinct_1"] == pytest.approx(12 / 24)


@pytest.mark.integration
def test_script_prints_and_writes(monkeypatch, tiny_llama, tmp_path, capsys):
  patch_tiny(monkeypatch, script, tiny_llama)
  blocks = lambda name, tok, n, data_dir=None, max_blocks=None: np.asarray(
    tok.encode("the cat sat on the mat and the dog sat on the log"[: 2 * n])
  ).reshape(2, n)[:max_blocks]
  monkeypatch.setattr(script, "text_blocks", blocks)
  out = tmp_path / "out"
  rows = script.main(
    [
      "policy.d_model=16",
      "policy.num_heads=2",
      "data.horizon=4",
      "eval.dtype=float32",
      "quality.prompts=2",
      "quality.prompt_len=9",
      "quality.max_new_tokens=10",
      "quality.orders=[1,2]",
      "quality.bootstrap_resamples=100",
      "eval.knob=[0.2]",
      "eval.progress=false",
      f"train.run_dir={tmp_path / 'no_run'}",
      f"--out={out}",
    ]
  )
  printed = capsys.readouterr().out
  assert "policy - fixed seq_rep_4" in printed and "paired over prompts" in printed
  assert [r["method"] for r in rows] == ["dense", "policy", "fixed"]
  assert rows[0]["net_keep"] == pytest.approx(1.0) and rows[1]["net_keep"] < 1.0
  assert rows[2]["avg_prune_keep"] == pytest.approx(rows[1]["avg_prune_keep"], abs=0.1)
  assert all(r["dense_logprob"] < 0 for r in rows)
  data = json.loads((out / "quality.json").read_text())
  assert len(data["per_prompt"]["policy"]["seq_rep_4"]) == 2
