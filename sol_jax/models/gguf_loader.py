"""Loads a llama.cpp GGUF Llama into sol_jax: metadata -> ModelConfig, tensors -> params.

Quantized tensors are dequantized to float32 with `gguf.quants.dequantize`.
llama.cpp's converter permutes the rows of q/k projections from HF's
rotate-half rope order into interleaved (GPT-J) order; we invert that here so
the weights match HF's convention, which sol_jax's Llama uses.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Dict, Optional, Tuple

import gguf
import numpy as np

from sol_jax.models import checkpoint_layout
from sol_jax.models.config import ModelConfig

_REQUIRED = object()
ROPE_FREQS = "rope_freqs.weight"
# Llama 3 convention; llama.cpp's converter assumes it too when building rope_freqs.
_DEFAULT_ORIGINAL_CONTEXT = 8192

_GLOBAL_NAMES = {
  "token_embd.weight": checkpoint_layout.EMBED,
  "output_norm.weight": checkpoint_layout.FINAL_NORM,
  "output.weight": checkpoint_layout.LM_HEAD,
}
_LAYER_NAMES = {
  "attn_norm": "input_layernorm",
  "attn_q": "self_attn.q_proj",
  "attn_k": "self_attn.k_proj",
  "attn_v": "self_attn.v_proj",
  "attn_output": "self_attn.o_proj",
  "ffn_norm": "post_attention_layernorm",
  "ffn_gate": "mlp.gate_proj",
  "ffn_up": "mlp.up_proj",
  "ffn_down": "mlp.down_proj",
}
_BLOCK = re.compile(r"^blk\.(\d+)\.(\w+)\.weight$")


def hf_name(gguf_name: str) -> str:
  """The HF name for a GGUF tensor name (unknown names come back unchanged)."""
  if gguf_name in _GLOBAL_NAMES:
    return _GLOBAL_NAMES[gguf_name]
  m = _BLOCK.match(gguf_name)
  if m and m.group(2) in _LAYER_NAMES:
    return f"model.layers.{m.group(1)}.{_LAYER_NAMES[m.group(2)]}.weight"
  return gguf_name


def unpermute_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
  """Inverts llama.cpp's q/k permutation: per head, interleaved rows -> rotate-half rows.

  llama.cpp views each head's dh rows as [2, dh/2] and transposes to [dh/2, 2];
  viewing them as [dh/2, 2] and transposing back restores HF's order.
  """
  rows = w.shape[0]
  dh = rows // n_heads
  return w.reshape(n_heads, dh // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field(reader: gguf.GGUFReader, key: str, path: str, default: Any = _REQUIRED) -> Any:
  field = reader.fields.get(key)
  if field is None:
    if default is _REQUIRED:
      raise ValueError(
        f"{path}: GGUF metadata key {key!r} is missing; the file is not "
        "a complete llama.cpp Llama conversion."
      )
    return default
  return field.contents()


def _int_field(reader, key, path, default=_REQUIRED) -> Optional[int]:
  value = _field(reader, key, path, default)
  if isinstance(value, list):
    raise ValueError(
      f"{path}: {key} varies per layer ({value[:4]}...); sol_jax supports "
      "Llama models whose layers all share one shape."
    )
  return None if value is None else int(value)


def llama3_factors(
  inv_freq: np.ndarray, factor: float, low: float, high: float, original_ctx: float
) -> np.ndarray:
  """The per-frequency divisors Llama 3 rope scaling applies (what rope_freqs stores)."""
  wavelen = 2 * math.pi / inv_freq
  smooth = (original_ctx / wavelen - low) / (high - low)
  mid = 1.0 / ((1 - smooth) / factor + smooth)
  return np.where(
    wavelen < original_ctx / high, 1.0, np.where(wavelen > original_ctx / low, factor, mid)
  )


def recover_llama3_scaling(
  rope_freqs: np.ndarray, theta: float, head_dim: int, original_ctx: float, path: str
) -> Dict[str, Any]:
  """Recovers HF's llama3 rope_scaling dict from llama.cpp's rope_freqs tensor.

  The divisors depend on (low, high, original_ctx) only through the line
  smooth(1/wavelen) in the transition band, so fixing original_ctx and fitting
  that line reproduces the same frequencies exactly; we verify it does.
  """
  rf = np.asarray(rope_freqs, np.float64).reshape(-1)
  inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
  if rf.shape != inv_freq.shape:
    raise ValueError(
      f"{path}: {ROPE_FREQS} has {rf.size} entries, expected head_dim/2 = {inv_freq.size}."
    )
  factor = float(rf.max())
  if np.allclose(rf, 1.0):
    return {}
  band = (rf > 1 + 1e-6) & (rf < factor * (1 - 1e-6))
  error = ValueError(
    f"{path}: cannot express its {ROPE_FREQS} rope scaling as Llama 3 ('llama3') "
    "scaling, the only kind sol_jax supports; use the HF safetensors checkpoint."
  )
  if band.sum() < 2:
    raise error
  smooth = (1.0 / rf[band] - 1.0 / factor) / (1.0 - 1.0 / factor)
  slope, intercept = np.polyfit(inv_freq[band] / (2 * math.pi), smooth, 1)
  width = original_ctx / slope  # high - low
  low = -intercept * width
  scaling = dict(
    rope_type="llama3",
    factor=factor,
    low_freq_factor=float(low),
    high_freq_factor=float(low + width),
    original_max_position_embeddings=float(original_ctx),
  )
  if (
    low <= 0
    or width <= 0
    or not np.allclose(
      llama3_factors(inv_freq, factor, low, low + width, original_ctx), rf, rtol=1e-4
    )
  ):
    raise error
  return scaling


def _config(reader: gguf.GGUFReader, path: str, by_name: dict, dtype: str) -> ModelConfig:
  arch = _field(reader, "general.architecture", path)
  if arch != "llama":
    raise ValueError(
      f"{path}: general.architecture={arch!r}; sol_jax loads Llama GGUF "
      "files only (general.architecture 'llama')."
    )
  if (_int_field(reader, "split.count", path, 0) or 0) > 1:
    raise ValueError(
      f"{path} is one shard of a split GGUF; merge it first with `llama-gguf-split --merge`."
    )
  if (_int_field(reader, "llama.expert_count", path, 0) or 0) > 0:
    raise ValueError(f"{path}: mixture-of-experts Llama GGUFs are not supported.")
  d = _int_field(reader, "llama.embedding_length", path)
  heads = _int_field(reader, "llama.attention.head_count", path)
  kv_heads = _int_field(reader, "llama.attention.head_count_kv", path, heads)
  head_dim = _int_field(reader, "llama.attention.key_length", path, d // heads)
  value_dim = _int_field(reader, "llama.attention.value_length", path, head_dim)
  rope_dim = _int_field(reader, "llama.rope.dimension_count", path, head_dim)
  if value_dim != head_dim or rope_dim != head_dim:
    raise ValueError(
      f"{path}: key_length={head_dim}, value_length={value_dim}, "
      f"rope.dimension_count={rope_dim}; sol_jax needs all three equal."
    )
  theta = float(_field(reader, "llama.rope.freq_base", path, 10000.0))
  vocab = _int_field(reader, "llama.vocab_size", path, None)
  if vocab is None and "token_embd.weight" in by_name:
    vocab = int(by_name["token_embd.weight"].shape[-1])  # ggml order: [D, V]
  if vocab is None:
    raise ValueError(f"{path}: no llama.vocab_size metadata and no token_embd.weight.")
  context = _int_field(reader, "llama.context_length", path, 2048)

  scaling_type = _field(reader, "llama.rope.scaling.type", path, None)
  if scaling_type not in (None, "none", "llama3"):
    raise ValueError(
      f"{path}: rope scaling type {scaling_type!r} is not supported; "
      "sol_jax supports Llama 3 ('llama3') scaling only."
    )
  if scaling_type == "llama3" and ROPE_FREQS not in by_name:
    raise ValueError(
      f"{path}: rope scaling type 'llama3' without a {ROPE_FREQS} tensor; "
      "cannot recover the scaling parameters."
    )
  scaling = None
  if ROPE_FREQS in by_name:
    original = _field(
      reader, "llama.rope.scaling.original_context_length", path, _DEFAULT_ORIGINAL_CONTEXT
    )
    scaling = (
      recover_llama3_scaling(
        _dequantize(by_name[ROPE_FREQS], path), theta, head_dim, float(original), path
      )
      or None
    )
  hf = dict(
    model_type="llama",
    vocab_size=vocab,
    hidden_size=d,
    num_attention_heads=heads,
    num_key_value_heads=kv_heads,
    head_dim=head_dim,
    intermediate_size=_int_field(reader, "llama.feed_forward_length", path),
    num_hidden_layers=_int_field(reader, "llama.block_count", path),
    rms_norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon", path)),
    rope_theta=theta,
    rope_scaling=scaling,
    max_position_embeddings=context,
    tie_word_embeddings="output.weight" not in by_name,
  )
  return ModelConfig.from_hf(hf, dtype=dtype)


def _dequantize(tensor, path: str) -> np.ndarray:
  try:
    arr = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
  except NotImplementedError as e:
    raise ValueError(
      f"{path}: tensor {tensor.name!r} has GGML type "
      f"{tensor.tensor_type.name}, which gguf cannot dequantize ({e})."
    ) from e
  # The reader lists shapes in ggml order (fastest axis first): reverse for numpy.
  return np.asarray(arr, np.float32).reshape(tuple(int(n) for n in reversed(tensor.shape)))


def open_gguf(path: str) -> gguf.GGUFReader:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"GGUF file {path} does not exist; check the path.")
  try:
    return gguf.GGUFReader(path)
  except Exception as e:  # wrong magic, truncated file, ...
    raise ValueError(f"{path} is not a readable GGUF file ({type(e).__name__}: {e}).") from e


def read_config(path: str, dtype: str = "float32") -> ModelConfig:
  """The ModelConfig described by a GGUF file's metadata."""
  reader = open_gguf(path)
  return _config(reader, path, {t.name: t for t in reader.tensors}, dtype)


def load_gguf(path: str, dtype: str = "float32") -> Tuple[ModelConfig, dict]:
  """Loads a llama.cpp Llama GGUF -> (ModelConfig, numpy params tree of `dtype`)."""
  checkpoint_layout.check_dtype(dtype)
  reader = open_gguf(path)
  by_name = {t.name: t for t in reader.tensors}
  cfg = _config(reader, path, by_name, dtype)
  hf_to_gguf = {hf_name(n): n for n in by_name if n != ROPE_FREQS}
  checkpoint_layout.check_names(cfg, hf_to_gguf, path)
  shapes = checkpoint_layout.hf_shapes(cfg)

  def get(name: str) -> np.ndarray:
    w = _dequantize(by_name[hf_to_gguf[name]], path)
    if w.shape != shapes[name]:
      return w  # assemble reports the mismatch
    if name.endswith("self_attn.q_proj.weight"):
      w = unpermute_rows(w, cfg.num_heads)
    elif name.endswith("self_attn.k_proj.weight"):
      w = unpermute_rows(w, cfg.num_kv_heads)
    return w

  params = checkpoint_layout.assemble(
    cfg, get=get, where=lambda n: f"{path} (GGUF tensor {hf_to_gguf[n]!r})", dtype=dtype
  )
  return cfg, params
