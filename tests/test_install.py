"""A normal (non-editable) install outside the checkout finds configs and scripts."""

import pathlib
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_SKIP = shutil.ignore_patterns(
  ".venv",
  ".git",
  "runs",
  ".pytest_cache",
  "__pycache__",
  "build",
  "*.egg-info",
  "docs",
  "notebooks",
)


def _run(*cmd, cwd):
  result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
  assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
  return result.stdout


@pytest.mark.slow
def test_non_editable_install_runs_train_help_and_loads_a_config(tmp_path):
  source = tmp_path / "src"
  shutil.copytree(ROOT, source, ignore=_SKIP)  # pip builds in-tree: keep the checkout clean
  venv = tmp_path / "venv"
  # Without pip: the deps below bring this venv's pip and setuptools (with bdist_wheel).
  _run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=tmp_path)
  py = venv / "bin" / "python"
  # Dependencies come from this venv (no downloads); sol_jax itself is installed for real.
  site = _run(
    str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path
  ).strip()
  pathlib.Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
  _run(
    str(py),
    "-m",
    "pip",
    "install",
    "-q",
    "--no-deps",
    "--no-build-isolation",
    str(source),
    cwd=tmp_path,
  )
  shutil.rmtree(source)  # nothing may point back at the source tree

  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  where = _run(
    str(py),
    "-c",
    "import sol_jax, experiments; print(sol_jax.__file__, experiments.__file__)",
    cwd=elsewhere,
  )
  assert str(ROOT) not in where and site in where, where
  for cmd in ((str(py), "-m", "experiments.train"), (str(venv / "bin" / "sol-train"),)):
    text = _run(*cmd, "--help", cwd=elsewhere)  # the docstring, then the keys it reads
    assert "experiments.train [CONFIG]" in text and 'model.source="smollm2-135m"' in text, text
  loaded = _run(
    str(py),
    "-c",
    "from sol_jax import config as c; cfg = c.load_config("
    "'smollm2_3L_cpu', ['rl.num_rollouts=8']); print(cfg.name, cfg.rl.num_rollouts, "
    "cfg.actions.num_actions)",
    cwd=elsewhere,
  )
  assert loaded.split() == ["smollm2_3L_cpu", "8", "27"], loaded
