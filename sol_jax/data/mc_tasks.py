"""Multiple-choice tasks: items of (context, choices, label) and their prompt formats.

An item's context is scored with each continuation `delimiter + choice`
(`MCItem.continuation`); the label is the index of the right choice. The formats
follow lm-evaluation-harness's default tasks:

- ARC-Easy (`arc_easy`, test split, zero-shot; `arc_easy/ARC-Easy-Test.jsonl`):
    context  "Question: {question.stem}\\nAnswer:"
    choices  " {choice.text}" for every entry of question.choices
    label    the index of the choice whose label equals answerKey
- PIQA (`piqa`, validation split, zero-shot; `piqa/valid.jsonl` + `valid-labels.lst`):
    context  "Question: {goal}\\nAnswer:"
    choices  " {sol1}", " {sol2}"; label from the labels file (0 or 1)
- MMLU (`mmlu`, scored on `test`, k-shot prompts from `dev`, default k = 5; one CSV
  per subject, no header: question, A, B, C, D, answer):
    context  "The following are multiple choice questions (with answers) about {subject}."
             + "\\n\\n" + the first k dev rows of the same subject, each
             "{question.strip()}\\nA. {A}\\nB. {B}\\nC. {C}\\nD. {D}\\nAnswer: {answer}",
             joined by "\\n\\n", + "\\n\\n" + the test row formatted the same up to "Answer:"
    choices  " A", " B", " C", " D"; subject = the file's subject with "_" as spaces
- Generic jsonl (any other `.jsonl` path): one item per line, {"context": str,
  "choices": [str, ...], "label": int} and optionally "subject" (grouping) and
  "delimiter" (put before every choice; default " ").

`limit` keeps the first N items of a task; for MMLU it applies to each subject, as
lm-eval's --limit applies to each subtask.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import pathlib
from typing import Optional, Sequence

from sol_jax.data.paths import resolve_data_dir

MMLU_LETTERS = ("A", "B", "C", "D")
BUILTIN_TASKS = ("arc_easy", "piqa", "mmlu")


@dataclasses.dataclass(frozen=True)
class MCItem:
  context: str
  choices: tuple[str, ...]
  label: int
  subject: str = ""
  delimiter: str = " "

  def __post_init__(self):
    if len(self.choices) < 2 or not 0 <= self.label < len(self.choices):
      raise ValueError(
        f"an item needs >= 2 choices and a label among them: {len(self.choices)} choices, "
        f"label {self.label} (context {self.context[:60]!r})"
      )

  def continuation(self, k: int) -> str:
    return self.delimiter + self.choices[k]


def _jsonl(path: pathlib.Path) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _qa(question: str) -> str:
  return f"Question: {question}\nAnswer:"


def read_arc(path: os.PathLike) -> list[MCItem]:
  items = []
  for row in _jsonl(pathlib.Path(path)):
    q = row["question"]
    labels = [c["label"] for c in q["choices"]]
    if row["answerKey"] not in labels:
      raise ValueError(
        f"{path}: item {row.get('id')} answerKey {row['answerKey']!r} not in {labels}"
      )
    texts = tuple(c["text"] for c in q["choices"])
    items.append(MCItem(_qa(q["stem"]), texts, labels.index(row["answerKey"])))
  return items


def read_piqa(path: os.PathLike, labels_path: os.PathLike) -> list[MCItem]:
  rows = _jsonl(pathlib.Path(path))
  labels = [int(x) for x in pathlib.Path(labels_path).read_text().split()]
  if len(labels) != len(rows):
    raise ValueError(f"{path} has {len(rows)} items but {labels_path} has {len(labels)} labels")
  return [MCItem(_qa(r["goal"]), (r["sol1"], r["sol2"]), y) for r, y in zip(rows, labels)]


def _mmlu_rows(path: pathlib.Path) -> list[list[str]]:
  with open(path, encoding="utf-8", newline="") as f:
    rows = list(csv.reader(f))
  for row in rows:
    if len(row) != 6 or row[5] not in MMLU_LETTERS:
      raise ValueError(f"{path}: an MMLU row needs 6 fields and an answer in A-D, got {row}")
  return rows


def mmlu_question(row: Sequence[str]) -> str:
  options = "".join(f"\n{letter}. {text}" for letter, text in zip(MMLU_LETTERS, row[1:5]))
  return f"{row[0].strip()}{options}\nAnswer:"


def read_mmlu(
  root: os.PathLike,
  shots: int = 5,
  subjects: Optional[Sequence[str]] = None,
  limit: Optional[int] = None,
) -> list[MCItem]:
  """Every test row of every subject (or of `subjects`), with `shots` dev exemplars."""
  root = pathlib.Path(root)
  found = sorted(p.name[: -len("_test.csv")] for p in (root / "test").glob("*_test.csv"))
  if not found:
    raise FileNotFoundError(f"no MMLU test files (*_test.csv) under {root / 'test'}")
  unknown = sorted(set(subjects or ()) - set(found))
  if unknown:
    raise ValueError(f"unknown MMLU subjects {unknown}; known: {found}")
  items = []
  for subject in subjects or found:
    dev = _mmlu_rows(root / "dev" / f"{subject}_dev.csv")
    if len(dev) < shots:
      raise ValueError(f"MMLU {subject}: {shots} shots asked, dev has {len(dev)} rows")
    name = subject.replace("_", " ")
    parts = [f"The following are multiple choice questions (with answers) about {name}."]
    parts += [f"{mmlu_question(r)} {r[5]}" for r in dev[:shots]]
    header = "\n\n".join(parts) + "\n\n"
    test = _mmlu_rows(root / "test" / f"{subject}_test.csv")[:limit]
    items += [
      MCItem(header + mmlu_question(r), MMLU_LETTERS, MMLU_LETTERS.index(r[5]), name) for r in test
    ]
  return items


def read_jsonl(path: os.PathLike) -> list[MCItem]:
  items = []
  for i, row in enumerate(_jsonl(pathlib.Path(path))):
    missing = {"context", "choices", "label"} - set(row)
    if missing:
      raise ValueError(f"{path}: line {i + 1} lacks {sorted(missing)}")
    items.append(
      MCItem(
        str(row["context"]),
        tuple(str(c) for c in row["choices"]),
        int(row["label"]),
        str(row.get("subject", "")),
        str(row.get("delimiter", " ")),
      )
    )
  return items


def load_task(
  task: str,
  data_dir: Optional[str] = None,
  *,
  limit: Optional[int] = None,
  shots: int = 5,
  subjects: Optional[Sequence[str]] = None,
) -> list[MCItem]:
  """A built-in task by name (data under the data dir) or a generic `.jsonl` file."""
  if task not in BUILTIN_TASKS:
    if not task.endswith(".jsonl"):
      raise ValueError(f"unknown task {task!r}: use one of {BUILTIN_TASKS} or a .jsonl file")
    if not pathlib.Path(task).is_file():
      raise FileNotFoundError(f"task file {task!r} not found")
    return read_jsonl(task)[:limit]
  if subjects and task != "mmlu":
    raise ValueError(f"subjects are MMLU's; task {task!r} has none")
  root = resolve_data_dir(data_dir)
  if task == "mmlu":
    return read_mmlu(root / "mmlu", shots, subjects, limit)
  paths = {
    "arc_easy": (root / "arc_easy" / "ARC-Easy-Test.jsonl",),
    "piqa": (root / "piqa" / "valid.jsonl", root / "piqa" / "valid-labels.lst"),
  }[task]
  for p in paths:
    if not p.is_file():
      raise FileNotFoundError(f"task {task}: missing file {str(p)!r}")
  items = read_arc(*paths) if task == "arc_easy" else read_piqa(*paths)
  return items[:limit]
