"""experiments.generate on the tiny model: config, rendering, --out files, every mode."""

import json

import numpy as np
import pytest

from experiments import cli
from experiments import generate as script
from sol_jax.evaluation import generation_view as view
from sol_jax.evaluation.generate import Continuation, Generation
from tests.evaluation.test_generate import SPACE, CharTokenizer
from tests.evaluation.tiny_scripts import patch_tiny

TINY = ["policy.d_model=16", "policy.num_heads=2", "data.horizon=4", "eval.dtype=float32"]


@pytest.fixture
def tiny_script(monkeypatch, tiny_llama):
  return patch_tiny(monkeypatch, script, tiny_llama)


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["policy", "fixed", "constant", "dense"])
def test_main_writes_json_and_html(tiny_script, mode, tmp_path, capsys):
  out = tmp_path / mode
  tiny_script.main(
    TINY
    + [
      f"generate.mode={mode}",
      "generate.prompt=Hello world",
      "generate.max_new_tokens=6",
      "eval.knob=[0.3]",
      f"train.run_dir={tmp_path / 'no_run'}",  # no saved config: the command line's
      f"--out={out}",
    ]
  )
  text = capsys.readouterr().out
  assert "net compute per token: [0] < 0.50" in text  # plain legend: stdout is not a TTY
  assert "realized kappa" in text and "Hello world" in text
  data = json.loads((out / "generate.json").read_text())
  (row,) = data["samples"]
  assert len(row["tokens"]) == len(row["actions"]) == len(row["logprobs"]) == 6
  assert data["horizon"] == 4 and len(data["targets"]) == 3
  page = (out / "generate.html").read_text()
  assert page.count("<span style=\"background:hsl(") >= 6 and "net keep" in page
  if mode == "dense":
    assert row["budgets"]["net_keep"] == pytest.approx(1.0) and set(row["actions"]) == {-1}
  else:
    assert row["budgets"]["net_keep"] < 1.0  # knob 0.3: well below dense


def test_unknown_key_and_bad_value_exit_2(capsys, monkeypatch):
  monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
  for argv, says in (
    (["nope.key=1"], "unknown key 'nope'"),
    (["generate.mode=fast"], "is not one of"),
    (["generate.top_p=0"], "generate.top_p=0"),
  ):
    with pytest.raises(SystemExit) as exit_:
      script.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and says in err, err


def _sample():
  return Continuation(
    tokens=np.asarray([0, 1, 2, 3]),
    text="abc",  # cut before a stop string at token 3
    logprobs=np.zeros(4, np.float32),
    actions=np.asarray([0, -1, SPACE.dense_index, 5]),
    kappa=np.asarray([0.1, 1.0, 1.0, 0.1]),
    rho=np.asarray([0.4, 1.0, 1.0, 0.4]),
    bits=np.asarray([5, 16, 16, 5]),
    effective=np.asarray([True, False, True, True]),
    stop_reason="stop",
  )


def test_rendering_colours_levels_and_cuts_at_the_text():
  s, tok = _sample(), CharTokenizer()
  assert view.token_pieces(tok, s) == ["a", "b", "c", ""]
  np.testing.assert_array_equal(view.compute_levels(s), [0, 4, 4, 0])
  assert view.render_text(tok, s, color=False) == "a[0]b[4]c[4]"
  ansi = view.render_text(tok, s, color=True)
  assert ansi == "\x1b[48;5;160ma\x1b[0mbc"
  budgets = s.budgets  # effective steps 0, 2, 3 (step 3 is past the text but was decoded)
  assert budgets["avg_keep_effective"] == pytest.approx(1.2 / 3)
  assert budgets["avg_quant_ratio"] == pytest.approx((5 + 16 + 5) / 48)
  page = view.html_page(tok, [Generation("x", np.asarray([1]), [s])], SPACE, "t <1>")
  assert "t &lt;1&gt;" in page and "forced dense" in page and page.count("title=") == 3
