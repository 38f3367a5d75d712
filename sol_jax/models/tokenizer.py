"""Tokenizer for any model source, through `transformers.AutoTokenizer`."""

from __future__ import annotations

import os

from sol_jax.models import registry, safetensors_loader


def load_tokenizer(source: str):
  """The tokenizer of a registry name, .gguf file, HF checkpoint dir or Hub id.

  GGUF files carry their own vocabulary and merges, which transformers turns
  into a fast tokenizer. As in the reference, pad falls back to EOS when missing
  (no padding is used, so it only matters to batching utilities).
  """
  from transformers import AutoTokenizer  # heavy import, only when needed

  resolved = registry.resolve(source)
  if resolved.kind == "gguf":
    directory, name = os.path.split(os.path.abspath(resolved.path))
    kwargs = dict(gguf_file=name)
  else:
    directory, kwargs = safetensors_loader.resolve_dir(resolved.path), {}
  try:
    tok = AutoTokenizer.from_pretrained(directory, **kwargs)
  except OSError as e:
    raise FileNotFoundError(f"no usable tokenizer for {source!r} in {directory}: {e}") from e
  if tok.pad_token is None and tok.eos_token is not None:
    tok.pad_token = tok.eos_token
  return tok
