"""The lm-eval model `sol_jax` (experiments/lm_eval_model.py) on the tiny Llama, offline.

Dense log-likelihoods, is_greedy, rolling log-likelihoods and greedy generations
equal slow full-forward references; policy / fixed / constant modes run under
control with realized budgets; `lm_eval.simple_evaluate(model="sol_jax")` and the
`sol-lm-eval` command line score a local task YAML over a small jsonl and agree
with our multiple-choice scorer.
"""

import importlib.util
import json

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
  importlib.util.find_spec("lm_eval") is None, reason="lm-eval (extra .[lmeval]) not installed"
)

TINY = {
  "policy.d_model": 16,
  "policy.num_heads": 2,
  "data.horizon": 4,
  "eval.dtype": "float32",
  "eval.progress": "false",
}
ROWS = [
  {"context": "The cat sat on", "choices": ["the mat", "a dog"], "label": 0},
  {"context": "The dog sat on", "choices": ["a log", "the big red mat"], "label": 1},
  {"context": "Where is it?", "choices": ["here", "there", "gone"], "label": 2},
]
MC_YAML = """task: sol_tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {path}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
metric_list:
  - metric: acc
"""
EOS = 63  # the character tokenizer's last id stands in for <eos>


@pytest.fixture
def module(monkeypatch, tiny_llama, tmp_path):
  from experiments import lm_eval_model  # pylint: disable=g-import-not-at-top
  from tests.evaluation import tiny_scripts  # pylint: disable=g-import-not-at-top
  from tests.evaluation.test_generate import CharTokenizer  # pylint: disable=g-import-not-at-top

  tiny_scripts.patch_tiny(monkeypatch, lm_eval_model, tiny_llama)
  monkeypatch.setattr(lm_eval_model, "load_tokenizer", lambda source: CharTokenizer(eos=EOS))
  monkeypatch.chdir(tmp_path)  # evaluation_config looks for runs/<name> without a run dir
  return lm_eval_model


def make(module, **args):
  return module.SolJaxLM(**(TINY | {"train.run_dir": "no_run"} | args))


def instances(kind, args):
  from lm_eval.api.instance import Instance  # pylint: disable=g-import-not-at-top

  return [Instance(kind, {}, a, i) for i, a in enumerate(args)]


def test_model_args_become_config_overrides():
  from experiments.lm_eval_model import overrides_from_model_args  # pylint: disable=g-import-not-at-top

  config, out = overrides_from_model_args(
    {
      "config": "smollm2_2L_cpu",
      "mode": "policy",
      "knob": 0.5,
      "targets": "0.5/0.8/8",
      "batch_size": "auto",
      "device": "cpu",
      "data.horizon": 8,
      "policy": "a/b",
    }
  )
  assert config == "smollm2_2L_cpu"
  assert out == [
    "lmeval.mode=policy",
    "eval.knob=[0.5]",
    "eval.budgets=[[0.5,0.8,8]]",
    "data.horizon=8",
    "eval.policy=a/b",
  ]
  assert overrides_from_model_args({"batch_size": 4})[1] == ["lmeval.batch_size=4"]
  with pytest.raises(ValueError, match="unknown sol_jax model_arg 'pretrained'"):
    overrides_from_model_args({"pretrained": "gpt2"})


@pytest.mark.integration
def test_dense_requests_equal_full_forward_references(module, tiny_llama):
  from tests.evaluation.test_generate import reference_greedy  # pylint: disable=g-import-not-at-top
  from tests.evaluation.test_multiple_choice import _all_logits  # pylint: disable=g-import-not-at-top

  cfg, params = tiny_llama
  lm = make(module, mode="dense")
  tok = lm.tokenizer

  def logprobs(ids):
    logits = np.asarray(_all_logits(params, cfg, np.asarray([ids], np.int32)), np.float64)
    m = logits.max(-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))

  def reference(ctx_ids, cont_ids):
    ids = ctx_ids + cont_ids
    lp = logprobs(ids)
    rows = range(len(ctx_ids) - 1, len(ids) - 1)
    return sum(lp[i, ids[i + 1]] for i in rows), all(np.argmax(lp[i]) == ids[i + 1] for i in rows)

  pairs = [
    ("The cat sat on", " the mat"),
    ("The cat sat on", " a dog"),
    ("Hi ", "there"),
    ("", "abc"),
  ]
  got = lm.loglikelihood(instances("loglikelihood", pairs))
  for (ctx, cont), (ll, greedy) in zip(pairs, got):
    c_ids, n_ids = (
      ([EOS], tok.encode(cont))
      if ctx == ""
      else (tok.encode(ctx.rstrip()), tok.encode(" " * (len(ctx) - len(ctx.rstrip())) + cont))
    )
    want_ll, want_greedy = reference(c_ids, n_ids)
    assert ll == pytest.approx(want_ll, abs=1e-4)
    assert greedy == want_greedy

  # Rolling: one window when the text fits, disjoint windows of max_length otherwise.
  text = "the quick brown fox jumps over the lazy dog"
  ids = tok.encode(text)
  (whole,) = lm.loglikelihood_rolling(instances("loglikelihood_rolling", [(text,)]))
  lp = logprobs([EOS] + ids)
  assert whole == pytest.approx(sum(lp[i, ids[i]] for i in range(len(ids))), abs=1e-3)
  short = make(module, mode="dense", max_length=16)
  (windowed,) = short.loglikelihood_rolling(instances("loglikelihood_rolling", [(text,)]))
  want, done = 0.0, 0
  while done < len(ids):  # lm-eval's disjoint windows: context + new tokens fill 16 inputs
    n = min(16, len(ids) - done)
    ctx = [EOS] if done == 0 else ids[done - (16 - n + 1) : done]
    lp = logprobs(ctx + ids[done : done + n])
    want += sum(lp[len(ctx) - 1 + j, ids[done + j]] for j in range(n))
    done += n
  assert windowed == pytest.approx(want, abs=1e-3)
  assert windowed != pytest.approx(whole, abs=1e-3)  # the windows do cut the context

  # Greedy generation stops at the first `until` string, as full forwards decode it.
  prompt = "The cat"
  ref, _ = reference_greedy(params, tok.encode(prompt), 12)
  ref_text = tok.decode(ref.tolist())
  (free,) = lm.generate_until(instances("generate_until", [(prompt, {"max_gen_toks": 12})]))
  assert free == ref_text
  stop = ref_text[5:7]
  (cut,) = lm.generate_until(
    instances("generate_until", [(prompt, {"until": [stop], "max_gen_toks": 12})])
  )
  assert cut == ref_text[: ref_text.index(stop)]


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["policy", "fixed", "constant"])
def test_controlled_modes_record_realized_budgets(module, mode):
  lm = make(module, mode=mode, targets="0.5/0.8/8")
  pairs = [("The cat sat on the mat and", " then the dog came"), ("Where is it now", " here")]
  got = lm.loglikelihood(instances("loglikelihood", pairs))
  assert len(got) == 2 and all(np.isfinite(ll) and ll < 0 for ll, _ in got)
  lm.generate_until(instances("generate_until", [("The cat sat on the", {"max_gen_toks": 8})]))
  b = lm.realized_budgets()
  assert b["effective_steps"] > 0 and b["net_keep"] < 1.0
  if mode == "fixed":  # one allocator over the run tracks its targets
    assert b["avg_prune_keep"] == pytest.approx(0.8, abs=0.15)


@pytest.mark.integration
def test_simple_evaluate_and_cli_score_a_local_task(module, tmp_path, monkeypatch, tiny_llama):
  import lm_eval  # pylint: disable=g-import-not-at-top
  from lm_eval.tasks import TaskManager  # pylint: disable=g-import-not-at-top

  from sol_jax.data import mc_tasks  # pylint: disable=g-import-not-at-top
  from sol_jax.evaluation import mc_report  # pylint: disable=g-import-not-at-top
  from sol_jax.evaluation import multiple_choice as mc  # pylint: disable=g-import-not-at-top

  monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  data = tmp_path / "items.jsonl"
  data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
  (tmp_path / "sol_tiny_mc.yaml").write_text(MC_YAML.format(path=data))
  args = ",".join(f"{k}={v}" for k, v in (TINY | {"train.run_dir": "no_run"}).items())
  out = lm_eval.simple_evaluate(
    model="sol_jax",
    model_args=args + ",mode=dense",
    tasks=["sol_tiny_mc"],
    task_manager=TaskManager(include_path=str(tmp_path)),
  )
  acc = out["results"]["sol_tiny_mc"]["acc,none"]

  cfg, params = tiny_llama
  lm = make(module, mode="dense")
  items = mc_tasks.read_jsonl(data)
  scores = mc.score_requests(
    params,
    cfg,
    [mc.encode_item(lm.tokenizer, it) for it in items],
    space=lm.space,
    settings=lm.setup.settings,
    horizon=4,
    progress=False,
  )
  assert acc == pytest.approx(float(np.mean(mc_report.correct(items, scores)[0])))

  # The command line: lm-eval's own flags, the model registered.
  results = tmp_path / "results"
  module.main(
    [
      "--model",
      "sol_jax",
      "--model_args",
      args + ",mode=constant,knob=0.3",
      "--tasks",
      "sol_tiny_mc",
      "--include_path",
      str(tmp_path),
      "--output_path",
      str(results),
    ]
  )
  written = list(results.rglob("results_*.json"))
  assert len(written) == 1
  saved = json.loads(written[0].read_text())
  assert "sol_tiny_mc" in saved["results"] and saved["config"]["model"] == "sol_jax"


def test_command_line_errors_are_one_line(module, capsys):
  with pytest.raises(SystemExit) as exit_:
    module.main(["data.horizon=0", "--tasks", "x"])
  assert exit_.value.code == 2
  assert capsys.readouterr().err.startswith("error: config data.horizon=0: must be >= 1")
  with pytest.raises(SystemExit) as exit_:
    module.main(["--model_args", "pretrained=gpt2", "--tasks", "x"])
  assert exit_.value.code == 2
  assert "unknown sol_jax model_arg 'pretrained'" in capsys.readouterr().err
