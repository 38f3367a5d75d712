"""experiments.mc_eval on the tiny model: every mode, Fixed matched to the policy, --out files."""

import csv
import json

import pytest

from experiments import mc_eval as script
from tests.evaluation.tiny_scripts import patch_tiny

TINY = ["policy.d_model=16", "policy.num_heads=2", "data.horizon=4", "eval.dtype=float32"]
ROWS = [
  {"context": "The cat sat on", "choices": ["the mat", "a dog"], "label": 0},
  {"context": "The dog sat on", "choices": ["a log", "the big red mat"], "label": 1},
  {"context": "Where is it?", "choices": ["here", "there", "gone"], "label": 2, "subject": "b"},
]


@pytest.fixture
def tiny_script(monkeypatch, tiny_llama):
  return patch_tiny(monkeypatch, script, tiny_llama)


@pytest.mark.integration
def test_main_writes_csv_json_and_tensorboard(tiny_script, tmp_path, capsys):
  task = tmp_path / "task.jsonl"
  task.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
  out = tmp_path / "out"
  tiny_script.main(
    TINY
    + [
      f"mc.task={task}",
      "mc.modes=[dense,policy,fixed,constant]",
      "mc.bootstrap_resamples=200",
      "eval.knob=[0.3]",
      "eval.progress=false",
      f"train.run_dir={tmp_path / 'no_run'}",
      f"--out={out}",
    ]
  )
  text = capsys.readouterr().out
  assert "policy - fixed at" in text and "paired over items" in text
  with open(out / "mc.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["method"] for r in rows] == ["dense", "policy", "fixed", "constant"]
  assert all(r["items"] == "3" for r in rows)
  assert float(rows[0]["net_keep"]) == pytest.approx(1.0)
  data = json.loads((out / "mc.json").read_text())
  assert data["labels"] == [0, 1, 2] and len(data["intervals"]) == 1
  assert len(data["loglik"]["dense"]) == 3 and len(data["loglik"]["dense"][2]) == 3
  # Fixed ran at the policy's realized budgets on the same tokens.
  pol, fix = data["rows"][1], data["rows"][2]
  assert fix["scored_tokens"] == pol["scored_tokens"]
  assert fix["avg_prune_keep"] == pytest.approx(pol["avg_prune_keep"], abs=0.05)
  assert fix["avg_quant_ratio"] == pytest.approx(pol["avg_quant_ratio"], abs=0.05)
  assert {p.name for p in (out / "tb").iterdir()} == {"dense", "policy", "fixed", "constant"}
