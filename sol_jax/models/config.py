"""The frozen Llama's architecture, read from a Hugging Face or GGUF config."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rms_norm_eps: float = 1e-5
  rope_theta: float = 10000.0
  # Llama-3 style scaling: dict with factor, low_freq_factor, high_freq_factor,
  # original_max_position_embeddings (rope_type "llama3"), or None.
  rope_scaling: Optional[tuple] = None
  tie_word_embeddings: bool = False
  max_position_embeddings: int = 2048
  dtype: str = "float32"  # compute dtype of the LM: float32 or bfloat16

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def rope_scaling_dict(self) -> Optional[dict]:
    return dict(self.rope_scaling) if self.rope_scaling else None

  def replace(self, **kw) -> "ModelConfig":
    return dataclasses.replace(self, **kw)

  @classmethod
  def from_hf(cls, hf: Mapping[str, Any], dtype: str = "float32") -> "ModelConfig":
    """Builds the config from a transformers `config.json` dict (or LlamaConfig)."""
    if not isinstance(hf, Mapping):
      hf = hf.to_dict()
    arch = hf.get("model_type", "llama")
    if arch != "llama":
      raise ValueError(
        f"unsupported architecture model_type={arch!r}: sol_jax implements the "
        "Llama family only (model_type 'llama')."
      )
    for flag in ("attention_bias", "mlp_bias"):
      if hf.get(flag):
        raise ValueError(f"unsupported Llama option {flag}=True: sol_jax's Llama has no biases.")
    if hf.get("hidden_act", "silu") != "silu":
      raise ValueError(f"unsupported hidden_act={hf.get('hidden_act')!r}; Llama uses 'silu'.")
    heads = hf["num_attention_heads"]
    head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
    scaling = hf.get("rope_scaling")
    if scaling is None and isinstance(hf.get("rope_parameters"), Mapping):
      # transformers >= 5 stores theta and scaling together under rope_parameters.
      params = dict(hf["rope_parameters"])
      if params.get("rope_type", "default") != "default":
        scaling = params
    theta = hf.get("rope_theta")
    if theta is None:
      theta = (hf.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    if scaling is not None:
      kind = scaling.get("rope_type", scaling.get("type"))
      if kind not in ("llama3", "default"):
        raise ValueError(f"unsupported rope_scaling type {kind!r}; supported: 'llama3'.")
      if kind == "default":
        scaling = None
      else:
        keep = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
        scaling = tuple((k, float(scaling[k])) for k in keep)
    return cls(
      vocab_size=hf["vocab_size"],
      hidden_size=hf["hidden_size"],
      intermediate_size=hf["intermediate_size"],
      num_layers=hf["num_hidden_layers"],
      num_heads=heads,
      num_kv_heads=hf.get("num_key_value_heads") or heads,
      head_dim=head_dim,
      rms_norm_eps=float(hf.get("rms_norm_eps", 1e-5)),
      rope_theta=float(theta),
      rope_scaling=scaling,
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
      max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
      dtype=dtype,
    )
