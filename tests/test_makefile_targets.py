"""Every Makefile target is exercised cheaply, so a renamed script cannot break one silently.

Each target's recipe comes from `make -n TARGET` (a dry run: nothing executes)
and every command in it is checked by kind:

- `$(PY) -m experiments.X ...`: `python -m experiments.X --help` exits 0;
- `$(PY) -m pytest ...`: the same arguments with `--collect-only` on one small
  file exit 0 (or 5, nothing selected), so a bad `-m` expression fails;
- `ruff ...`: the venv's ruff runs (`--version`);
- the install steps (venv, pip, touch), `rm -rf` and `echo`: recognised, not run.

A command of any other kind fails the test: teach it here how to check that.
"""

from __future__ import annotations

import functools
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
from typing import Optional

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAKEFILE = ROOT / "Makefile"
PY = ".venv/bin/python"  # what $(PY) expands to
RUFF = ".venv/bin/ruff"
SMALL_TEST_FILE = "tests/test_makefile_targets.py"  # what the pytest targets collect
# Commands that only set up or tear down the environment: recognised, never run.
NOT_RUN = (
  re.compile(r"^\S*python3?(\.\d+)? -m venv "),
  re.compile(rf"^{re.escape(PY)} -m pip install "),
  re.compile(r"^touch \.venv/"),
  re.compile(r"^rm -rf "),
  re.compile(r"^echo "),  # messages
)

_MAKE_ENV = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "ARGS", "PYTHON")

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def makefile_targets() -> list[str]:
  """Rule targets of the Makefile (not variables, not $(VAR) or dot targets)."""
  targets = []
  for line in MAKEFILE.read_text().splitlines():
    match = re.match(r"^([A-Za-z][\w-]*)\s*:(?!=)", line)
    if match:
      targets.append(match.group(1))
  return targets


def phony_targets() -> set[str]:
  line = next(x for x in MAKEFILE.read_text().splitlines() if x.startswith(".PHONY:"))
  return set(line.split(":", 1)[1].split())


@functools.lru_cache(maxsize=None)
def recipe(target: str) -> tuple[tuple[str, ...], ...]:
  """The commands `make -n -B target` would run, each split into words (comments dropped).

  -B lists the install steps even when the venv is up to date; the environment
  of an enclosing `make test ARGS=...` (MAKEFLAGS, ARGS) is not passed on.
  """
  env = {k: v for k, v in os.environ.items() if k not in _MAKE_ENV}
  out = subprocess.run(
    ["make", "--no-print-directory", "-n", "-B", target],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert out.returncode == 0, f"make -n {target} failed:\n{out.stderr}"
  lines = [x.strip() for x in out.stdout.splitlines()]
  return tuple(tuple(shlex.split(x)) for x in lines if x and not x.startswith("#"))


def _kind(words: tuple[str, ...]) -> str:
  line = shlex.join(words)
  if any(p.search(line) for p in NOT_RUN):
    return "setup"
  if words[:2] == (PY, "-m") and words[2].startswith("experiments."):
    return "script"
  if words[:3] == (PY, "-m", "pytest"):
    return "pytest"
  if words[0] == RUFF:
    return "ruff"
  return "unknown"


def _check_command(words: tuple[str, ...]) -> Optional[list[str]]:
  """The argv that checks one recipe command cheaply (None: nothing to run)."""
  kind = _kind(words)
  if kind == "script":
    return [sys.executable, "-m", words[2], "--help"]
  if kind == "pytest":
    # The conftest (jax start-up, compilation cache) is not needed to read the markers.
    extra = ["--collect-only", "-q", "-p", "no:cacheprovider", "--noconftest", SMALL_TEST_FILE]
    return [sys.executable, "-m", "pytest", *words[3:], *extra]
  if kind == "ruff":
    return [str(ROOT / RUFF), "--version"]
  return None


def test_makefile_lists_its_targets():
  targets = makefile_targets()
  assert set(targets) == phony_targets(), "every rule is .PHONY and every .PHONY has a rule"
  # The entry points README, BUILD_NOTES and CI name.
  expected = {"install", "demo", "check-dense", "test", "test-unit", "test-slow", "lint"}
  assert expected | {"format", "bench", "clean"} <= set(targets)


def test_every_recipe_command_is_a_kind_this_test_checks():
  for target in makefile_targets():
    commands = recipe(target)
    assert commands, f"make -n {target} prints no command"
    for words in commands:
      assert _kind(words) != "unknown", (
        f"make {target} runs {shlex.join(words)!r}, which tests/test_makefile_targets.py "
        "does not know how to check; add it there"
      )


def test_bench_runs_the_decode_train_and_dense_benchmarks():
  scripts = [w[2] for w in recipe("bench") if _kind(w) == "script"]
  assert scripts == [
    "experiments.bench_decode",
    "experiments.bench_train",
    "experiments.bench_dense",
  ]


def test_check_dense_runs_the_dense_cross_check():
  assert [w[2] for w in recipe("check-dense") if _kind(w) == "script"] == ["experiments.dense_eval"]


def test_every_target_command_runs_in_its_cheap_mode():
  """--help for scripts, collect-only for pytest, --version for ruff; all at once."""
  checks = {}
  for target in makefile_targets():
    for words in recipe(target):
      argv = _check_command(words)
      if argv is not None:
        checks.setdefault(tuple(argv), []).append(target)
  assert any(a[2:3] == ("pytest",) for a in checks), "no pytest target found"
  procs = {
    argv: subprocess.Popen(
      list(argv), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for argv in checks
  }
  failures = []
  for argv, proc in procs.items():
    out, _ = proc.communicate(timeout=300)
    ok = (0, 5) if "pytest" in argv else (0,)  # 5: pytest selected no test in the file
    if proc.returncode not in ok:
      failures.append(
        f"make {'/'.join(checks[argv])}: {shlex.join(argv)} exited {proc.returncode}:\n"
        + out[-2000:]
      )
  assert not failures, "\n\n".join(failures)


def test_a_missing_script_fails_its_check():
  argv = _check_command((PY, "-m", "experiments.no_such_script"))
  out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode != 0 and "No module named experiments.no_such_script" in out.stderr
  bad = _check_command((PY, "-m", "pytest", "-m", "not slow and"))
  out = subprocess.run(bad, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert out.returncode not in (0, 5), out.stdout + out.stderr


def test_every_script_override_in_the_makefile_is_a_valid_config_value():
  """`make demo` & co. pass key=value overrides: each must parse into the typed config
  (a renamed key or a misspelt choice such as front.methods=[fixd] fails here, not at run time)."""
  from sol_jax import config as config_lib  # pylint: disable=g-import-not-at-top

  checked = 0
  for target in makefile_targets():
    for words in recipe(target):
      if _kind(words) != "script":
        continue
      args = [w for w in words[3:] if "=" in w and not w.startswith("-")]
      names = [w for w in words[3:] if "=" not in w and not w.startswith("-")]
      outs = {words[i + 1] for i, w in enumerate(words[3:-1], 3) if w == "--out"}
      names = [n for n in names if n not in outs]
      try:
        config_lib.config_from_argv(names[:1] + args, default="smollm2_3L_cpu")
      except (ValueError, KeyError, TypeError, FileNotFoundError) as err:
        raise AssertionError(f"make {target}: {shlex.join(words)!r}: {err}") from err
      checked += 1
  assert checked >= 8  # demo, results' commands, check-dense, bench


def test_a_bad_override_fails_the_config_check():
  from sol_jax import config as config_lib  # pylint: disable=g-import-not-at-top

  with pytest.raises(ValueError):
    config_lib.config_from_argv(["front.methods=[fixd]"], default="smollm2_3L_cpu")
