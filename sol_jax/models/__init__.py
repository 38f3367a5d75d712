"""The frozen Llama (Flax Linen) and its loaders: HF safetensors, GGUF, the Hub.

- `load_model(source)` -> (ModelConfig, params) from a registry name, a .gguf
  file, a local HF directory or a Hub id; `load_tokenizer(source)` likewise.
- `prefill` / `decode_step`: the two modes of `Llama`, over an explicit
  `PrefixCache` (shared prefix) and `SuffixCache` (each schedule's own steps).
"""

from sol_jax.models.cache import PrefixCache, SuffixCache, init_schedule_suffix, init_suffix
from sol_jax.models.config import ModelConfig
from sol_jax.models.llama import Llama, decode_step, embed_tokens, init_params, prefill
from sol_jax.models.registry import REGISTRY, load_model, resolve
from sol_jax.models.tokenizer import load_tokenizer

__all__ = [
  "REGISTRY",
  "load_model",
  "load_tokenizer",
  "resolve",
  "Llama",
  "ModelConfig",
  "decode_step",
  "embed_tokens",
  "init_params",
  "prefill",
  "PrefixCache",
  "SuffixCache",
  "init_schedule_suffix",
  "init_suffix",
]
