"""A model source's `ModelConfig` without loading (or downloading) its weights.

`model_config(source)` answers from a table of the registry models' public
`config.json` values (so planning memory for Llama-3.2-1B needs neither the
gated download nor a network), else from a `.gguf` file's metadata or a local
HF directory's `config.json`, else it fetches only `config.json` from the Hub.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from sol_jax.models import gguf_loader, registry, safetensors_loader
from sol_jax.models.config import ModelConfig

# transformers config.json fields of the registry models (as published on the Hub).
_LLAMA3_ROPE = {
  "rope_type": "llama3",
  "factor": 32.0,
  "low_freq_factor": 1.0,
  "high_freq_factor": 4.0,
  "original_max_position_embeddings": 8192,
}
_LLAMA3_1_ROPE = dict(_LLAMA3_ROPE, factor=8.0)
_LLAMA3_COMMON = {
  "model_type": "llama",
  "vocab_size": 128256,
  "rms_norm_eps": 1e-5,
  "rope_theta": 500000.0,
  "max_position_embeddings": 131072,
}
_LLAMA_8B = dict(
  _LLAMA3_COMMON,
  hidden_size=4096,
  intermediate_size=14336,
  num_hidden_layers=32,
  num_attention_heads=32,
  num_key_value_heads=8,
  head_dim=128,
  tie_word_embeddings=False,
  rope_scaling=_LLAMA3_1_ROPE,
)
KNOWN_CONFIGS: dict[str, Mapping[str, Any]] = {
  "smollm2-135m": {
    "model_type": "llama",
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "rms_norm_eps": 1e-5,
    "rope_theta": 100000.0,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
  },
  "llama-3.2-1b": dict(
    _LLAMA3_COMMON,
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=64,
    tie_word_embeddings=True,
    rope_scaling=_LLAMA3_ROPE,
  ),
  "llama-3.2-3b": dict(
    _LLAMA3_COMMON,
    hidden_size=3072,
    intermediate_size=8192,
    num_hidden_layers=28,
    num_attention_heads=24,
    num_key_value_heads=8,
    head_dim=128,
    tie_word_embeddings=True,
    rope_scaling=_LLAMA3_ROPE,
  ),
  "llama-3.1-8b-instruct": _LLAMA_8B,
  "deepseek-r1-distill-llama-8b": _LLAMA_8B,
}


def _table_entry(source: str):
  """The table's entry for a registry name or the Hub id it stands for."""
  key = source.lower()
  if key in KNOWN_CONFIGS:
    return KNOWN_CONFIGS[key]
  for name, entry in registry.REGISTRY.items():
    if entry.kind == "hub" and entry.target.lower() == key and name in KNOWN_CONFIGS:
      return KNOWN_CONFIGS[name]
  return None


def model_config(source: str, dtype: str = "float32") -> ModelConfig:
  """The ModelConfig of any model source, read without its weights.

  A registry name or its Hub id comes from `KNOWN_CONFIGS` (no file, no
  network); a .gguf from its metadata; a local HF directory from its
  config.json; another Hub id downloads only its config.json.
  """
  known = _table_entry(source)
  if known is not None:
    return ModelConfig.from_hf(known, dtype=dtype)
  resolved = registry.resolve(source)
  if resolved.kind == "gguf":
    return gguf_loader.read_config(resolved.path, dtype)
  if resolved.kind == "hf_dir":
    return safetensors_loader.read_config(resolved.path, dtype)
  return safetensors_loader.read_config(_hub_config_dir(resolved.path), dtype)


def _hub_config_dir(repo_id: str) -> str:
  """A local folder holding only `repo_id`'s config.json (downloaded if needed)."""
  from huggingface_hub import hf_hub_download  # pylint: disable=g-import-not-at-top

  try:
    return os.path.dirname(hf_hub_download(repo_id, "config.json"))
  except Exception as e:  # network, auth (gated models) or missing repo
    raise FileNotFoundError(
      f"could not fetch config.json of {repo_id!r} from the Hugging Face Hub "
      f"({type(e).__name__}: {e}); pass a local checkpoint directory, or check the "
      "network / run `huggingface-cli login` for gated models."
    ) from e
