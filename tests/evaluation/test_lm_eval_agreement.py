"""Dense multiple-choice scores agree with lm-evaluation-harness (issue 11, item 2).

lm-eval's `hf` model (transformers, fp32, the same SmolLM2 GGUF dequantized by
`hf_reference.load_hf_model`) scores the first 50 ARC-Easy test items written as
a local jsonl task (a task YAML in tmp_path, HF_DATASETS_OFFLINE=1); our dense
scores of the same items must give every choice's log-likelihood within 1e-3 and
the same acc and acc_norm per item.

lm-eval is an optional extra (`pip install .[lmeval]`; `make install` installs
requirements-lmeval.txt); without it the test skips.
"""

import importlib.util
import json

import numpy as np
import pytest

from sol_jax.data import mc_tasks
from sol_jax.data.paths import _DEFAULT_DATA_DIR
from sol_jax.evaluation import mc_report
from sol_jax.evaluation import multiple_choice as mc

ITEMS = 50
TASK_YAML = """task: sol_mc_agreement
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
  - metric: acc_norm
"""

pytestmark = [
  pytest.mark.slow,
  pytest.mark.skipif(
    importlib.util.find_spec("lm_eval") is None,
    reason="lm-eval is not installed (optional extra `.[lmeval]`, requirements-lmeval.txt)",
  ),
  pytest.mark.skipif(not (_DEFAULT_DATA_DIR / "arc_easy").is_dir(), reason="no ../shared/data"),
]


def _lm_eval_logliks(task_dir, tokenizer) -> dict[int, list[float]]:
  """{doc index: per-choice log-likelihoods} from lm-eval's sample log."""
  import lm_eval  # pylint: disable=g-import-not-at-top
  from lm_eval.models.huggingface import HFLM  # pylint: disable=g-import-not-at-top
  from lm_eval.tasks import TaskManager  # pylint: disable=g-import-not-at-top

  from sol_jax.evaluation.hf_reference import load_hf_model  # pylint: disable=g-import-not-at-top

  lm = HFLM(pretrained=load_hf_model("smollm2-135m"), tokenizer=tokenizer, batch_size=8)
  out = lm_eval.simple_evaluate(
    model=lm,
    tasks=["sol_mc_agreement"],
    task_manager=TaskManager(include_path=str(task_dir)),
    log_samples=True,
  )
  logliks = {}
  for sample in out["samples"]["sol_mc_agreement"]:
    resps = sample["filtered_resps"]
    logliks[int(sample["doc_id"])] = [float(r[0]) for r in resps]
  return logliks


def test_dense_loglikelihoods_match_lm_eval(tmp_path, monkeypatch, smollm2_tokenizer):
  monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  items = mc_tasks.load_task("arc_easy", limit=ITEMS)
  data = tmp_path / "items.jsonl"
  data.write_text(
    "".join(
      json.dumps({"context": it.context, "choices": list(it.choices), "label": it.label}) + "\n"
      for it in items
    )
  )
  (tmp_path / "sol_mc_agreement.yaml").write_text(TASK_YAML.format(path=data))
  theirs = _lm_eval_logliks(tmp_path, smollm2_tokenizer)

  from sol_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from sol_jax.models import load_model  # pylint: disable=g-import-not-at-top
  from sol_jax.rl import make_setup  # pylint: disable=g-import-not-at-top

  cfg = config_lib.load_config("smollm2_3L_cpu")
  model_cfg, params = load_model("smollm2-135m", dtype="float32")
  setup = make_setup(cfg, model_cfg)
  requests = [mc.encode_item(smollm2_tokenizer, it) for it in mc_tasks.read_jsonl(data)]
  ours = mc.score_requests(
    params,
    model_cfg,
    requests,
    space=setup.space,
    settings=setup.settings,
    horizon=cfg.data.horizon,
    progress=False,
  )
  assert sorted(theirs) == list(range(len(items)))
  for i, s in enumerate(ours):
    np.testing.assert_allclose(s.loglik, theirs[i], atol=1e-3, rtol=0, err_msg=f"item {i}")
  as_scores = [mc.ItemScores(np.asarray(theirs[i]), [], [], []) for i in range(len(items))]
  for a, b in zip(mc_report.correct(items, ours), mc_report.correct(items, as_scores)):
    np.testing.assert_array_equal(a, b)
