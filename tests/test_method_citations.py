"""Every "§N" / "QN" citation in the code points at a heading of docs/method.md."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_citations_resolve_in_method_doc():
  result = subprocess.run(
    [sys.executable, str(ROOT / "tools" / "rewrite_citations.py"), "--check"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=False,
  )
  assert result.returncode == 0, result.stdout + result.stderr
