"""experiments.cli: every script takes `[CONFIG] [key=value ...]`, plus --out/--help only."""

import importlib
import pathlib

import pytest

from experiments import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = tuple(
  sorted(
    p.stem
    for p in (ROOT / "experiments").glob("*.py")
    if p.stem not in ("__init__", "cli", "bench_utils")
  )
)


def test_config_overrides_and_out():
  cmd = cli.parse(
    ["smollm2_2L_cpu", "sweep.pages=[4]", "--out", "x/y", "eval.progress=false"],
    "doc",
    ("sweep",),
    out="runs/default",
  )
  assert cmd.cfg.name == "smollm2_2L_cpu" and cmd.cfg.sweep.pages == (4,)
  assert cmd.cfg.eval.progress is False and cmd.out == "x/y"
  assert cmd.config_args == ("smollm2_2L_cpu", "sweep.pages=[4]", "eval.progress=false")
  default = cli.parse(["--sweep.blocks=8"], "doc", ("sweep",), out="runs/default")
  assert (default.cfg.name, default.cfg.sweep.blocks, default.out) == (
    "smollm2_3L_cpu",
    8,
    "runs/default",
  )
  assert cli.parse([], "doc", ("eval",), has_out=True).out is None


def test_former_flags_name_their_config_key():
  with pytest.raises(
    ValueError, match="--random_budgets is not an option; it is the config key sweep.budgets"
  ):
    cli.parse(
      ["--random_budgets", "0.5,0.7,8"],
      "doc",
      ("sweep",),
      moved={"random_budgets": "sweep.budgets"},
    )
  with pytest.raises(ValueError, match=r"did you mean the config key sweep.random_trials"):
    cli.parse(["--random_trial=3"], "doc", ("sweep",))
  with pytest.raises(ValueError, match="only flags are --help"):
    cli.parse(["--out", "x"], "doc", ("eval",))  # a script without --out
  with pytest.raises(ValueError, match="sweep.blocks=0: must be >= 1"):
    cli.parse(["sweep.blocks=0"], "doc", ("sweep",))


def test_internal_flags_pass_through():
  cmd = cli.parse(["bench.steps=1", "--child=quest"], "doc", ("bench",), internal=("--child",))
  assert cmd.internal == {"--child": "quest"} and cmd.config_args == ("bench.steps=1",)
  with pytest.raises(ValueError, match="--child is not an option"):
    cli.parse(["--child"], "doc", ("bench",))


def test_help_prints_doc_and_keys_with_given_values(capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.parse(
      ["smollm2_2L_cpu", "--help", "sweep.blocks=112"], "The first line.", ("sweep", "data.eval")
    )
  assert exit_.value.code == 0
  text = capsys.readouterr().out
  assert text.startswith("The first line.")
  assert "values from smollm2_2L_cpu sweep.blocks=112" in text
  assert "  sweep.blocks=112    # test blocks of data.eval" in text
  assert '  data.eval="wikitext2-raw-test"' in text and "sweep.budgets=[[0.35" in text


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_has_config_only_help(name, capsys):
  source = (ROOT / "experiments" / f"{name}.py").read_text()
  assert "argparse" not in source, f"{name} parses its own flags; settings belong in the config"
  module = importlib.import_module(f"experiments.{name}")
  with pytest.raises(SystemExit) as exit_:
    module.main(["--help"])
  assert exit_.value.code == 0
  text = capsys.readouterr().out
  assert text.startswith(module.__doc__.strip().splitlines()[0])
  assert "Config keys this script reads" in text


def test_static_pareto_estimate_only_keeps_the_former_defaults(capsys):
  from experiments import static_pareto

  est = static_pareto.main(["sweep.estimate_only=true"])["estimate"]
  # 27 grid actions + 3 budgets x (Fixed, EMC, DAC, 8 random) + 24 FL actions.
  assert est["columns_per_batch"] == 27 + 3 * (3 + 8) + 24
  assert "pages [4, 8], 64 test blocks" in capsys.readouterr().out
  small = static_pareto.main(
    ["sweep.estimate_only=true", "sweep.pages=[4]", "sweep.random_trials=2", "sweep.fl_actions=0"]
  )["estimate"]
  assert small["columns_per_batch"] == 27 + 3 * (3 + 2)


def test_results_dir_keeps_local_folders_and_localizes_buckets(tmp_path, capsys):
  assert cli.results_dir("x/y", tmp_path, "front") == pathlib.Path("x/y")
  assert cli.results_dir(None, tmp_path, "front") == tmp_path / "front"
  got = cli.results_dir(None, "gs://bucket/runs/seed1", "front")
  assert got == pathlib.Path("runs/seed1/front") and "remote" in capsys.readouterr().out
