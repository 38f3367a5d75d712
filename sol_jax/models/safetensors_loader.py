"""Loads a Hugging Face Llama checkpoint (config.json + safetensors) into sol_jax."""

from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Dict, Tuple

from safetensors import safe_open

from sol_jax.models import checkpoint_layout
from sol_jax.models.config import ModelConfig

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# What a Hub download fetches: config, weights and the tokenizer files.
HUB_PATTERNS = ("*.json", "*.safetensors", "tokenizer.model", "*.txt")
_HUB_ID = re.compile(r"^[\w.\-]+/[\w.\-]+$")


def is_hub_id(source: str) -> bool:
  """True for strings shaped like `owner/name` that are not an existing local path."""
  return bool(_HUB_ID.match(source)) and not os.path.exists(source)


def download(repo_id: str) -> str:
  """Fetches config, safetensors and tokenizer of a Hub model; returns the local dir."""
  from huggingface_hub import snapshot_download  # only needed off the local path

  try:
    return snapshot_download(repo_id, allow_patterns=list(HUB_PATTERNS))
  except Exception as e:  # network, auth (gated models) or missing repo
    raise FileNotFoundError(
      f"{repo_id!r} is not a local path and downloading it from the Hugging Face Hub "
      f"failed ({type(e).__name__}: {e}). Pass a local checkpoint directory, or check "
      "the network / run `huggingface-cli login` for gated models."
    ) from e


def resolve_dir(source: str) -> str:
  """A local checkpoint directory for `source` (a local dir or a Hub id)."""
  if os.path.isdir(source):
    return source
  if is_hub_id(source):
    return download(source)
  raise FileNotFoundError(
    f"checkpoint directory {source!r} does not exist (and is not a Hub id like "
    "'owner/name'); pass a directory with config.json and model*.safetensors."
  )


def read_config(ckpt_dir: str, dtype: str = "float32") -> ModelConfig:
  path = os.path.join(ckpt_dir, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(
      f"{path} not found: a Hugging Face checkpoint directory needs config.json "
      "next to its safetensors files."
    )
  with open(path) as f:
    return ModelConfig.from_hf(json.load(f), dtype=dtype)


def weight_map(ckpt_dir: str) -> Dict[str, str]:
  """Tensor name -> safetensors file name, for single-file or sharded checkpoints."""
  index = os.path.join(ckpt_dir, INDEX_FILE)
  if os.path.isfile(index):
    with open(index) as f:
      mapping = json.load(f).get("weight_map")
    if not isinstance(mapping, dict):
      raise ValueError(f"{index} has no 'weight_map' dict; the shard index is malformed.")
    return mapping
  single = os.path.join(ckpt_dir, SINGLE_FILE)
  if os.path.isfile(single):
    with safe_open(single, framework="np") as f:
      return {name: SINGLE_FILE for name in f.keys()}
  raise FileNotFoundError(
    f"no {SINGLE_FILE} or {INDEX_FILE} in {ckpt_dir}; save the model with "
    "save_pretrained(..., safe_serialization=True)."
  )


def _ignored(cfg: ModelConfig):
  def ignore(name: str) -> bool:
    # Tied checkpoints sometimes still carry lm_head; old ones carry rope buffers.
    if name == checkpoint_layout.LM_HEAD and cfg.tie_word_embeddings:
      return True
    return name.endswith("rotary_emb.inv_freq")

  return ignore


def load_safetensors(source: str, dtype: str = "float32") -> Tuple[ModelConfig, dict]:
  """Loads a local HF Llama directory (or Hub id) -> (ModelConfig, numpy params tree)."""
  checkpoint_layout.check_dtype(dtype)
  ckpt_dir = resolve_dir(source)
  cfg = read_config(ckpt_dir, dtype)
  files = weight_map(ckpt_dir)
  checkpoint_layout.check_names(cfg, files, ckpt_dir, _ignored(cfg))
  with contextlib.ExitStack() as stack:
    handles = {}
    for fname in sorted(set(files.values())):
      path = os.path.join(ckpt_dir, fname)
      if not os.path.isfile(path):
        raise FileNotFoundError(
          f"shard {path} listed in {INDEX_FILE} is missing; re-download the checkpoint."
        )
      handles[fname] = stack.enter_context(safe_open(path, framework="np"))
    params = checkpoint_layout.assemble(
      cfg,
      get=lambda n: handles[files[n]].get_tensor(n),
      where=lambda n: os.path.join(ckpt_dir, files[n]),
      dtype=dtype,
    )
  return cfg, params
