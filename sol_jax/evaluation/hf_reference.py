"""The same perplexities from transformers (PyTorch, CPU, fp32): a cross-check.

Loads the checkpoint independently of sol_jax's loaders (transformers does its
own GGUF dequantization), so agreement checks loader and model together.
"""

from __future__ import annotations

import os

import numpy as np
from tqdm.auto import tqdm

from sol_jax.models.registry import resolve


def load_hf_model(source: str):
  import torch  # only needed for the cross-check
  import transformers

  where = resolve(source)
  kw = dict(dtype=torch.float32, attn_implementation="eager")
  if where.kind == "gguf":
    path = str(where.path)
    return transformers.AutoModelForCausalLM.from_pretrained(
      os.path.dirname(path), gguf_file=os.path.basename(path), **kw
    ).eval()
  return transformers.AutoModelForCausalLM.from_pretrained(str(where.path), **kw).eval()


def hf_block_nll(
  model, blocks: np.ndarray, context_len: int, batch_size: int, progress: bool = True
):
  """-> (sol NLL [N, T], full NLL [N, C+T]) from one causal forward per block."""
  import torch

  sol, full = [], []
  for i in tqdm(
    range(0, len(blocks), batch_size), desc="dense eval (transformers)", disable=not progress
  ):
    batch = torch.tensor(blocks[i : i + batch_size], dtype=torch.long)
    with torch.no_grad():
      logits = model(batch[:, :-1]).logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, batch[:, 1:, None])[..., 0].numpy()
    full.append(nll)
    sol.append(nll[:, context_len:])  # predictions of x_{C+1}..x_{C+T}
  return np.concatenate(sol), np.concatenate(full)
