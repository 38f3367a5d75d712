"""experiments.cli.main_entry: a user error prints `error: ...` and exits 2, no traceback."""

import importlib
import os
import pathlib
import subprocess
import sys

import pytest

from experiments import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Every module of experiments/ with a main, so a new script is covered without listing it.
SCRIPTS = tuple(
  sorted(p.stem for p in (ROOT / "experiments").glob("*.py") if "\ndef main(" in p.read_text())
)


def _user_error(name, argv, capsys):
  """Runs experiments.<name>.main(argv) and returns its stderr, checking exit 2."""
  module = importlib.import_module(f"experiments.{name}")
  with pytest.raises(SystemExit) as exit_:
    module.main(argv)
  err = capsys.readouterr().err
  assert exit_.value.code == 2, err
  assert err.startswith("error: ") and "Traceback" not in err, err
  return err


def test_every_script_is_covered():
  assert {"train", "eval_policy", "dense_eval", "static_pareto", "export_policy"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_unknown_config_key(name, capsys, monkeypatch):
  monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
  assert "unknown key 'nope'" in _user_error(name, ["nope.key=1"], capsys)


@pytest.mark.parametrize(
  "name, argv, says",
  [
    ("train", ["rl.num_rollouts=1"], "rl.num_rollouts=1: must be >= 2"),
    ("train", ["no_such_config"], "config file no_such_config not found"),
    ("eval_policy", ["eval.budgets=[[1.5,0.5,0.5]]"], "kappa and rho must be in (0, 1]"),
    ("eval_policy", ["eval.policy=/nonexistent"], "policy '/nonexistent' not found"),
    ("export_policy", ["train.run_dir=/nonexistent", "--out=x"], "is train.run_dir a run"),
    ("training_curves", ["train.run_dir=/nonexistent"], "no TensorBoard event files"),
    ("static_pareto", ["--random_budgets=1"], "it is the config key sweep.budgets"),
  ],
)
def test_bad_values_files_and_flags(name, argv, says, capsys, monkeypatch):
  monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
  assert says in _user_error(name, argv, capsys)


@pytest.mark.parametrize("name", ["train", "dense_eval", "eval_policy", "static_pareto"])
def test_missing_data_dir_fails_before_the_model_loads(name, capsys, monkeypatch):
  monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
  module = importlib.import_module(f"experiments.{name}")
  # check_data runs first: loading a model here would be a test failure, not a delay.
  monkeypatch.setattr(module, "load_model", lambda *a, **k: pytest.fail("model loaded"))
  err = _user_error(name, ["data.data_dir=/nonexistent"], capsys)
  assert "data dir '/nonexistent'" in err and "data.data_dir" in err


def test_unknown_model_lists_the_registry(capsys, monkeypatch, tmp_path):
  monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
  text = tmp_path / "text.txt"  # a file path: no data dir needed
  text.write_text("hello\n")
  err = _user_error("dense_eval", ["model.source=nope", f"data.eval={text}"], capsys)
  assert "unknown model source 'nope'" in err and "smollm2-135m" in err


def test_debug_flag_and_env_keep_the_exception(capsys, monkeypatch):
  from experiments import train  # pylint: disable=g-import-not-at-top

  monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
  with pytest.raises(ValueError, match="unknown key 'nope'"):
    train.main(["nope.key=1", "--debug"])
  monkeypatch.setenv(cli.DEBUG_ENV, "1")
  with pytest.raises(ValueError, match="unknown key 'nope'"):
    train.main(["nope.key=1"])


def test_bugs_keep_their_traceback_and_interrupt_exits_130():
  def bug(argv):
    return int("not a number")  # a ValueError not raised by our code

  with pytest.raises(ValueError, match="invalid literal"):
    cli.main_entry(bug)([])

  def interrupted(argv):
    raise KeyboardInterrupt

  with pytest.raises(SystemExit) as exit_:
    cli.main_entry(interrupted)([])
  assert exit_.value.code == 130
  assert cli.main_entry(lambda argv: argv)(["a=1", "--debug"]) == ["a=1"]  # --debug dropped


def test_real_exit_codes_in_a_subprocess():
  env = {k: v for k, v in os.environ.items() if k != cli.DEBUG_ENV}
  run = lambda *args: subprocess.run(
    [sys.executable, "-m", "experiments.export_policy", *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  plain = run("nope.key=1")
  assert plain.returncode == 2 and plain.stderr.startswith("error: "), plain.stderr
  assert "Traceback" not in plain.stderr
  debug = run("nope.key=1", "--debug")
  assert debug.returncode == 1 and "Traceback" in debug.stderr, debug.stderr
