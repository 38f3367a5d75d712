#!/usr/bin/env python3
"""Point the code's citations of the (unshipped) reference spec at docs/method.md.

Usage (from the repository root, or pass --root):

  python tools/rewrite_citations.py             # rewrite in place, print counts
  python tools/rewrite_citations.py --dry-run   # show the unified diff, write nothing
  python tools/rewrite_citations.py --check     # exit 1 listing every citation that
                                                # still names the spec, or whose § / Q
                                                # number has no heading in docs/method.md

Scope: *.py, *.ipynb, *.md, *.yaml, *.yml under sol_jax/, experiments/, tests/ and
notebooks/, plus README.md. BUILD_NOTES.md and docs/ are never touched.

Inside .py files only comments and string literals are read or rewritten (found
with `tokenize`), so code such as `def f(spec: str)` is never changed. In .ipynb
files the markdown/raw cells are read whole and the code cells like .py files.
.md and .yaml files are read whole.

Rewrites (each is idempotent: its output never matches any rule again):
  SOL_SPEC.md §15, ../shared/SOL_SPEC.md §5, SOL_SPEC §4.1 -> docs/method.md §15 ...
  spec §4.2.1, Spec §12.5, spec Q10                          -> method §4.2.1, Method §12.5, method Q10
  spec 8.2/8.3, spec 7, 8.1, spec 9.6, Q9                    -> method §8.2/§8.3, method §7, §8.1, ...
  spec section 3                                             -> method §3
  `../shared/SOL_SPEC.md` (no number)                        -> docs/method.md (a link in .md files)
  prose: "the spec's" -> "the reference's", "the spec" -> "the method doc",
         "(spec: x)" -> "(reference: x)", "spec protocol" -> "reference protocol"
Bare "§12.3" and "Q13" are already citations of docs/method.md; --check verifies
that every such number is a heading there (`## §12.3 ...`, `### Q13 ...`).
"""

from __future__ import annotations

import argparse
import difflib
import io
import json
import os
import pathlib
import re
import sys
import tokenize
from typing import Callable, Iterator, NamedTuple

METHOD_DOC = "docs/method.md"
SCAN_DIRS = ("sol_jax", "experiments", "tests", "notebooks")
SCAN_FILES = ("README.md",)
SUFFIXES = (".py", ".ipynb", ".md", ".yaml", ".yml")
NEVER = ("BUILD_NOTES.md", METHOD_DOC)
SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}

NUM = r"\d+(?:\.\d+)*"
# What may follow a spec word for it to be a citation: § or a Q-number.
_CITE_AHEAD = r"(?=[ ,:(]*(?:§|Q\d+\b))"
_SPEC_FILE = r"(?:\.\./shared/)?SOL_SPEC(?:\.md)?"


def _case(word: str, like: str) -> str:
  return word[:1].upper() + word[1:] if like[:1].isupper() else word


def _bare_list(m: re.Match) -> str:
  """'spec 8.2/8.3' -> 'method §8.2/§8.3'; '-' ranges keep one § ('§9.2-9.6')."""
  items = re.split(r"(\s*[/,]\s*|-)", m.group(2))
  out = []
  for i, item in enumerate(items):
    if i % 2 == 0 and re.fullmatch(NUM, item) and (i == 0 or items[i - 1].strip() in "/,"):
      out.append("§" + item)
    else:
      out.append(item)
  return _case("method", m.group(1)) + " " + "".join(out)


class Rule(NamedTuple):
  name: str
  pattern: re.Pattern
  repl: Callable[[re.Match, str], str]  # (match, relative link to the method doc) -> text
  prose: bool = False  # prose rules could touch code; only used where code is excluded


RULES = (
  Rule("SOL_SPEC.md §/Q", re.compile(_SPEC_FILE + _CITE_AHEAD), lambda m, link: METHOD_DOC),
  Rule(
    "spec §/Q",
    re.compile(r"\b([Ss])pec" + _CITE_AHEAD),
    lambda m, link: _case("method", m.group(1)),
  ),
  Rule(
    "spec section N",
    re.compile(r"\b([Ss])pec section (" + NUM + r")\b"),
    lambda m, link: f"{_case('method', m.group(1))} §{m.group(2)}",
  ),
  Rule(
    "spec N[/N, N]",
    re.compile(r"\b([Ss])pec ((?:" + NUM + r")(?:(?:\s*[/,]\s*|-)(?:" + NUM + r"|Q\d+))*)\b"),
    lambda m, link: _bare_list(m),
  ),
  Rule(
    "`SOL_SPEC.md`",
    re.compile(r"`" + _SPEC_FILE + r"`"),
    lambda m, link: f"[`{METHOD_DOC}`]({link})" if link else f"`{METHOD_DOC}`",
  ),
  Rule("SOL_SPEC.md", re.compile(_SPEC_FILE + r"\b"), lambda m, link: METHOD_DOC),
  Rule(
    "spec's",
    re.compile(r"\b([Ss])pec's\b"),
    lambda m, link: _case("reference's", m.group(1)),
    prose=True,
  ),
  Rule(
    "as in the spec",
    re.compile(r"\b([Aa])s in the spec\b"),
    lambda m, link: _case("as in the reference", m.group(1)),
    prose=True,
  ),
  Rule(
    "spec protocol",
    re.compile(r"\b([Ss])pec protocol\b"),
    lambda m, link: _case("reference protocol", m.group(1)),
    prose=True,
  ),
  Rule("(spec: ", re.compile(r"\(spec: "), lambda m, link: "(reference: ", prose=True),
  Rule(
    "the spec",
    re.compile(r"\b([Tt])he spec\b"),
    lambda m, link: _case("the method doc", m.group(1)),
    prose=True,
  ),
)

# --check: what must not remain, and what must resolve.
LEFTOVER = re.compile(
  r"SOL_SPEC"
  r"|\b[Ss]pec(?=[ ,:(]*(?:§|Q\d+\b|\d|section\s+\d))"
  r"|\b(?:[Tt]he|[Aa]|[Pp]er|[Ss]ee|[Ii]n) spec\b|\b[Ss]pec's\b|\(spec[:)]|\b[Ss]pec protocol\b"
)
SECTION_CITE = re.compile(r"§\s?(" + NUM + r")(?:\s*[-–]\s*(" + NUM + r")(?![\d.]))?")
QUIRK_CITE = re.compile(r"\bQ(\d+)\b")
HEADING = re.compile(r"^#{1,6}\s+(§" + NUM + r"|Q\d+)(?=\s|$)", re.M)


# ----------------------------------------------------------------------------- text segments

_TEXT_TOKENS = {tokenize.COMMENT, tokenize.STRING}
if hasattr(tokenize, "FSTRING_MIDDLE"):  # Python >= 3.12 splits f-strings into parts
  _TEXT_TOKENS.add(tokenize.FSTRING_MIDDLE)


def python_spans(source: str) -> list[tuple[int, int]]:
  """(start, end) character offsets of every comment and string literal."""
  starts = [0]
  for line in source.splitlines(keepends=True):
    starts.append(starts[-1] + len(line))
  spans = []
  for tok in tokenize.generate_tokens(io.StringIO(source).readline):
    if tok.type in _TEXT_TOKENS:
      (sr, sc), (er, ec) = tok.start, tok.end
      spans.append((starts[sr - 1] + sc, starts[er - 1] + ec))
  return spans


class Segment(NamedTuple):
  start: int  # offset in the unit's text
  end: int
  prose_ok: bool  # prose rules allowed (no code can be inside)


class Unit(NamedTuple):
  """A piece of a file read as one text: a whole file, or one notebook cell."""

  label: str  # for messages: "path" or "path [cell 3]"
  text: str
  segments: list[Segment]


def _units(path: pathlib.Path, text: str) -> tuple[list[Unit], object]:
  """The readable units of a file, plus what `_assemble` needs to write it back."""
  if path.suffix == ".py":
    return [Unit(str(path), text, _py_segments(path, text))], None
  if path.suffix == ".ipynb":
    nb = json.loads(text)
    units = []
    for i, cell in enumerate(nb.get("cells", [])):
      src = cell.get("source", "")
      src = "".join(src) if isinstance(src, list) else src
      label = f"{path} [cell {i}]"
      if cell.get("cell_type") == "code":
        units.append(Unit(label, src, _py_segments(label, src)))
      else:
        units.append(Unit(label, src, [Segment(0, len(src), True)]))
    return units, nb
  return [Unit(str(path), text, [Segment(0, len(text), True)])], None


def _py_segments(label, source: str) -> list[Segment]:
  try:
    return [Segment(s, e, True) for s, e in python_spans(source)]
  except (tokenize.TokenError, SyntaxError, IndentationError) as e:
    # E.g. a notebook cell with IPython magics: read it whole, but only with the
    # numbered-citation rules (which cannot match Python code).
    print(
      f"note: {label}: not tokenizable ({e.__class__.__name__}); prose rules skipped",
      file=sys.stderr,
    )
    return [Segment(0, len(source), False)]


def _assemble(path: pathlib.Path, original: str, units: list[Unit], nb) -> str:
  if nb is None:
    return units[0].text
  for cell, unit in zip(nb.get("cells", []), units):
    was_list = isinstance(cell.get("source"), list)
    cell["source"] = unit.text.splitlines(keepends=True) if was_list else unit.text
  # Jupyter writes indent 1 and raw UTF-8; keep \u escapes if the file used them.
  out = json.dumps(nb, indent=1, ensure_ascii=original.isascii())
  return out + "\n" if original.endswith("\n") else out


# ----------------------------------------------------------------------------- rewrite


def rewrite_segment(text: str, prose_ok: bool, link: str, counts: dict) -> str:
  for rule in RULES:
    if rule.prose and not prose_ok:
      continue

    def sub(m, rule=rule):
      counts[rule.name] = counts.get(rule.name, 0) + 1
      return rule.repl(m, link)

    text = rule.pattern.sub(sub, text)
  return text


def rewrite_unit(unit: Unit, link: str, counts: dict) -> Unit:
  pieces, pos = [], 0
  for seg in unit.segments:
    pieces.append(unit.text[pos : seg.start])
    pieces.append(rewrite_segment(unit.text[seg.start : seg.end], seg.prose_ok, link, counts))
    pos = seg.end
  pieces.append(unit.text[pos:])
  return unit._replace(text="".join(pieces))


def target_files(root: pathlib.Path) -> Iterator[pathlib.Path]:
  never = {(root / n).resolve() for n in NEVER}
  for name in SCAN_FILES:
    if (root / name).is_file():
      yield root / name
  for d in SCAN_DIRS:
    base = root / d
    if not base.is_dir():
      continue
    for dirpath, dirnames, filenames in os.walk(base):
      dirnames[:] = sorted(x for x in dirnames if x not in SKIP_DIRS and not x.startswith("."))
      for f in sorted(filenames):
        p = pathlib.Path(dirpath) / f
        if p.suffix in SUFFIXES and p.resolve() not in never:
          yield p


def rewrite_file(root: pathlib.Path, path: pathlib.Path) -> tuple[str, str, dict]:
  original = path.read_text(encoding="utf-8")
  units, nb = _units(path.relative_to(root), original)
  link = os.path.relpath(root / METHOD_DOC, path.parent) if path.suffix == ".md" else ""
  counts: dict = {}
  units = [rewrite_unit(u, link, counts) for u in units]
  new = _assemble(path, original, units, nb) if counts else original
  return original, new, counts


# ----------------------------------------------------------------------------- check


def headings(root: pathlib.Path) -> tuple[set, list[str]]:
  doc = root / METHOD_DOC
  if not doc.is_file():
    return set(), [f"{METHOD_DOC}: missing"]
  found, problems = set(), []
  for m in HEADING.finditer(doc.read_text(encoding="utf-8")):
    key = m.group(1).lstrip("§")
    if key in found:
      problems.append(f"{METHOD_DOC}: heading {m.group(1)} appears twice")
    found.add(key)
  return found, problems


def _range_end(start: str, end: str) -> str:
  """'9.2' .. '6' means 9.6; '9.2' .. '9.6' is already whole."""
  a, b = start.split("."), end.split(".")
  return ".".join(a[: len(a) - len(b)] + b) if len(b) < len(a) else end


def check_unit(unit: Unit, known: set) -> tuple[list[str], int]:
  problems, cited = [], 0

  def where(offset: int) -> str:
    return f"{unit.label}:{unit.text.count(chr(10), 0, offset) + 1}"

  def snippet(m: re.Match) -> str:
    line_start = unit.text.rfind("\n", 0, m.start()) + 1
    line_end = unit.text.find("\n", m.end())
    return unit.text[line_start : line_end if line_end >= 0 else None].strip()[:110]

  for seg in unit.segments:
    text = unit.text[: seg.end]
    for m in LEFTOVER.finditer(text, seg.start):
      problems.append(f"{where(m.start())}: still cites the spec ({m.group(0)!r}): {snippet(m)}")
    for m in SECTION_CITE.finditer(text, seg.start):
      nums = [m.group(1)] + ([_range_end(m.group(1), m.group(2))] if m.group(2) else [])
      for n in nums:
        cited += 1
        if n not in known:
          problems.append(f"{where(m.start())}: §{n} has no heading in {METHOD_DOC}: {snippet(m)}")
    for m in QUIRK_CITE.finditer(text, seg.start):
      cited += 1
      if f"Q{m.group(1)}" not in known:
        problems.append(
          f"{where(m.start())}: Q{m.group(1)} has no heading in {METHOD_DOC}: {snippet(m)}"
        )
  return problems, cited


def check(root: pathlib.Path) -> int:
  known, problems = headings(root)
  cited = 0
  for path in target_files(root):
    units, _ = _units(path.relative_to(root), path.read_text(encoding="utf-8"))
    for unit in units:
      p, n = check_unit(unit, known)
      problems += p
      cited += n
  for p in problems:
    print(p)
  if problems:
    print(
      f"FAILED: {len(problems)} problem(s); run tools/rewrite_citations.py, then add the "
      f"missing headings to {METHOD_DOC} or fix the citations.",
      file=sys.stderr,
    )
    return 1
  print(f"OK: {cited} § / Q citations resolve to headings of {METHOD_DOC}; none names the spec.")
  return 0


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument(
    "--root",
    type=pathlib.Path,
    default=pathlib.Path(__file__).resolve().parents[1],
    help="repository root (default: the parent of tools/)",
  )
  mode = p.add_mutually_exclusive_group()
  mode.add_argument("--check", action="store_true", help="only check; exit 1 on any problem")
  mode.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
  args = p.parse_args(argv)
  root = args.root.resolve()
  if args.check:
    return check(root)
  total, files = {}, 0
  for path in target_files(root):
    original, new, counts = rewrite_file(root, path)
    if new == original:
      continue
    files += 1
    rel = path.relative_to(root)
    n = sum(counts.values())
    for k, v in counts.items():
      total[k] = total.get(k, 0) + v
    if args.dry_run:
      sys.stdout.writelines(
        difflib.unified_diff(
          original.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{rel}", f"b/{rel}"
        )
      )
    else:
      path.write_text(new, encoding="utf-8")
      print(f"{rel}: {n} rewritten")
  verb = "would rewrite" if args.dry_run else "rewrote"
  detail = ", ".join(f"{k}: {v}" for k, v in sorted(total.items(), key=lambda kv: -kv[1]))
  print(
    f"{verb} {sum(total.values())} citation(s) in {files} file(s)"
    + (f" ({detail})" if detail else ""),
    file=sys.stderr if args.dry_run else sys.stdout,
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
