"""Multiple-choice readers: small files in the real formats, and the real files when present."""

import json

import pytest

from sol_jax.data import mc_tasks
from sol_jax.data.paths import _DEFAULT_DATA_DIR

ARC_ROW = {
  "id": "Q1",
  "question": {
    "stem": "Which is a gas?",
    "choices": [{"text": "ice", "label": "1"}, {"text": "steam", "label": "2"}],
  },
  "answerKey": "2",
}
MMLU_DEV = 'Q one?,a,b,c,d,B\n"Q, two?",e,f,g,h,D\n'
MMLU_TEST = "  What is 1+1? ,1,2,3,4,B\r\n"


def _write(path, text):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text, newline="")
  return path


def test_arc_and_piqa(tmp_path):
  arc = _write(tmp_path / "arc_easy" / "ARC-Easy-Test.jsonl", json.dumps(ARC_ROW) + "\n")
  (item,) = mc_tasks.read_arc(arc)
  assert item.context == "Question: Which is a gas?\nAnswer:"
  assert item.choices == ("ice", "steam") and item.label == 1
  assert item.continuation(1) == " steam"
  goal = {"goal": "Open a jar", "sol1": "twist the lid", "sol2": "bake it"}
  _write(tmp_path / "piqa" / "valid.jsonl", json.dumps(goal) + "\n" + json.dumps(goal) + "\n")
  _write(tmp_path / "piqa" / "valid-labels.lst", "0\n1\n")
  items = mc_tasks.load_task("piqa", str(tmp_path))
  assert [i.label for i in items] == [0, 1]
  assert items[0].context == "Question: Open a jar\nAnswer:" and items[0].choices[1] == "bake it"
  assert len(mc_tasks.load_task("piqa", str(tmp_path), limit=1)) == 1
  assert mc_tasks.load_task("arc_easy", str(tmp_path))[0] == item


def test_mmlu_prompt(tmp_path):
  for name in ("abstract_algebra", "virology"):
    _write(tmp_path / "mmlu" / "dev" / f"{name}_dev.csv", MMLU_DEV)
    _write(tmp_path / "mmlu" / "test" / f"{name}_test.csv", MMLU_TEST * 3)
  items = mc_tasks.load_task("mmlu", str(tmp_path), shots=2, limit=2)
  assert len(items) == 4 and items[0].subject == "abstract algebra"
  assert items[0].choices == ("A", "B", "C", "D") and items[0].label == 1
  assert items[0].context == (
    "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
    "Q one?\nA. a\nB. b\nC. c\nD. d\nAnswer: B\n\n"
    'Q, two?\nA. e\nB. f\nC. g\nD. h\nAnswer: D\n\n'
    "What is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
  )
  assert items[0].continuation(2) == " C"
  only = mc_tasks.load_task("mmlu", str(tmp_path), shots=0, subjects=["virology"])
  assert len(only) == 3 and only[0].context.endswith(
    "about virology.\n\nWhat is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:"
  )
  with pytest.raises(ValueError, match="unknown MMLU subjects"):
    mc_tasks.load_task("mmlu", str(tmp_path), subjects=["nope"])


def test_generic_jsonl(tmp_path):
  rows = [
    {"context": "2 + 2 =", "choices": ["4", "5"], "label": 0},
    {
      "context": "Sky:",
      "choices": ["blue", "red", "green"],
      "label": 2,
      "subject": "s",
      "delimiter": "",
    },
  ]
  path = _write(tmp_path / "t.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
  a, b = mc_tasks.load_task(str(path))
  assert a.continuation(0) == " 4" and b.continuation(2) == "green" and b.subject == "s"
  _write(path, json.dumps({"context": "x", "choices": ["a"], "label": 0}) + "\n")
  with pytest.raises(ValueError, match=">= 2 choices"):
    mc_tasks.load_task(str(path))
  with pytest.raises(ValueError, match="unknown task"):
    mc_tasks.load_task("hellaswag")


@pytest.mark.skipif(not (_DEFAULT_DATA_DIR / "mmlu").is_dir(), reason="no ../shared/data")
def test_real_files_have_the_readme_counts():
  arc = mc_tasks.load_task("arc_easy")
  assert len(arc) == 2376
  assert sorted(len(i.choices) for i in arc).count(5) == 4
  piqa = mc_tasks.load_task("piqa")
  assert len(piqa) == 1838 and sum(i.label for i in piqa) == 928
  mmlu = mc_tasks.load_task("mmlu")
  assert len(mmlu) == 14042 and len({i.subject for i in mmlu}) == 57
  assert sum(i.subject == "professional law" for i in mmlu) == 1534
