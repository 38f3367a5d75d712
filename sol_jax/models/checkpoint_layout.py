"""Hugging Face Llama tensor names -> sol_jax's stacked Flax parameter tree.

Both checkpoint loaders (safetensors, GGUF) present their tensors under HF
names in HF layout ([out, in] for projections) and let `assemble` check the
shapes, transpose to Flax's [in, out] kernels and stack the layers on a
leading axis for `nn.scan`.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Tuple

import jax.numpy as jnp
import numpy as np

from sol_jax.models.config import ModelConfig

SUPPORTED_DTYPES = ("float32", "bfloat16")

# Per-layer HF suffix -> (Flax sub-tree path, is a Dense kernel to transpose).
_LAYER_TENSORS = {
  "input_layernorm.weight": (("attn_norm", "scale"), False),
  "self_attn.q_proj.weight": (("attn", "q_proj", "kernel"), True),
  "self_attn.k_proj.weight": (("attn", "k_proj", "kernel"), True),
  "self_attn.v_proj.weight": (("attn", "v_proj", "kernel"), True),
  "self_attn.o_proj.weight": (("attn", "o_proj", "kernel"), True),
  "post_attention_layernorm.weight": (("mlp_norm", "scale"), False),
  "mlp.gate_proj.weight": (("mlp", "gate_proj", "kernel"), True),
  "mlp.up_proj.weight": (("mlp", "up_proj", "kernel"), True),
  "mlp.down_proj.weight": (("mlp", "down_proj", "kernel"), True),
}
EMBED = "model.embed_tokens.weight"
FINAL_NORM = "model.norm.weight"
LM_HEAD = "lm_head.weight"

# Reads one tensor by HF name, in HF layout.
Getter = Callable[[str], np.ndarray]
# Says where a tensor lives (a file name) for error messages.
Locator = Callable[[str], str]


def check_dtype(dtype: str) -> np.dtype:
  if str(dtype) not in SUPPORTED_DTYPES:
    raise ValueError(f"unsupported dtype {dtype!r}; use one of {SUPPORTED_DTYPES}.")
  return np.dtype(jnp.dtype(str(dtype)))  # bfloat16 through ml_dtypes


def hf_shapes(cfg: ModelConfig) -> Dict[str, Tuple[int, ...]]:
  """The HF-layout shape of every tensor a checkpoint for `cfg` must hold."""
  d, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
  q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
  per_layer = {
    "input_layernorm.weight": (d,),
    "self_attn.q_proj.weight": (q, d),
    "self_attn.k_proj.weight": (kv, d),
    "self_attn.v_proj.weight": (kv, d),
    "self_attn.o_proj.weight": (d, q),
    "post_attention_layernorm.weight": (d,),
    "mlp.gate_proj.weight": (f, d),
    "mlp.up_proj.weight": (f, d),
    "mlp.down_proj.weight": (d, f),
  }
  shapes = {EMBED: (v, d), FINAL_NORM: (d,)}
  for i in range(cfg.num_layers):
    shapes.update({f"model.layers.{i}.{k}": s for k, s in per_layer.items()})
  if not cfg.tie_word_embeddings:
    shapes[LM_HEAD] = (v, d)
  return shapes


def check_names(
  cfg: ModelConfig,
  available: Iterable[str],
  source: str,
  ignore: Callable[[str], bool] = lambda n: False,
) -> None:
  """Raises one ValueError listing missing and unexpected tensors."""
  expected = set(hf_shapes(cfg))
  available = set(available)
  missing = sorted(expected - available)
  extra = sorted(n for n in available - expected if not ignore(n))
  if missing or extra:
    parts = []
    if missing:
      parts.append(f"missing tensors {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    if extra:
      parts.append(f"unexpected tensors {extra[:8]}{' ...' if len(extra) > 8 else ''}")
    raise ValueError(
      f"{source}: {'; '.join(parts)}. The checkpoint does not match a Llama with "
      f"{cfg.num_layers} layers, tie_word_embeddings={cfg.tie_word_embeddings}; check "
      "that the config belongs to these weights."
    )


def assemble(cfg: ModelConfig, get: Getter, where: Locator, dtype: str = "float32") -> dict:
  """Builds the Flax params tree (numpy arrays of `dtype`), layers stacked on axis 0."""
  np_dtype = check_dtype(dtype)
  shapes = hf_shapes(cfg)

  def fetch(name: str) -> np.ndarray:
    arr = np.asarray(get(name))
    if tuple(arr.shape) != shapes[name]:
      raise ValueError(
        f"tensor {name!r} in {where(name)} has shape {tuple(arr.shape)}, expected "
        f"{shapes[name]} from the model config; the config and weights disagree."
      )
    return arr

  params = {
    "embed": {"embedding": fetch(EMBED).astype(np_dtype)},
    "final_norm": {"scale": fetch(FINAL_NORM).astype(np_dtype)},
  }
  if not cfg.tie_word_embeddings:
    params["lm_head"] = {"kernel": fetch(LM_HEAD).T.astype(np_dtype)}

  layers: dict = {}
  for suffix, (path, transpose) in _LAYER_TENSORS.items():
    shape = shapes[f"model.layers.0.{suffix}"]
    if transpose:
      shape = shape[::-1]
    # Preallocate the stack and fill it layer by layer: peak memory stays at one
    # copy of the weights plus one layer.
    stacked = np.empty((cfg.num_layers,) + shape, np_dtype)
    for i in range(cfg.num_layers):
      w = fetch(f"model.layers.{i}.{suffix}")
      stacked[i] = w.T if transpose else w
    node = layers
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = stacked
  params["layers"] = layers
  return params
