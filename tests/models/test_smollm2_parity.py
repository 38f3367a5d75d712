"""The real default model: our GGUF load + Flax forward vs transformers on the same GGUF."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sol_jax.data import text_blocks
from sol_jax.evaluation.hf_reference import load_hf_model
from sol_jax.models import llama
from sol_jax.models.registry import load_model

pytestmark = pytest.mark.integration  # the real 135M model in JAX and in torch


@pytest.fixture(scope="module")
def tokens(request):
  try:
    tok = request.getfixturevalue("smollm2_tokenizer")  # load_tokenizer("smollm2-135m")
    block = text_blocks("wikitext2-raw-test", tok, 256, max_blocks=2)
  except FileNotFoundError as err:
    pytest.skip(f"WikiText-2 data not available: {err}")
  return block[1:2]  # a block from inside the text, not the article start


def test_smollm2_logits_match_transformers(tokens):
  cfg, params = load_model("smollm2-135m")
  ours, _, _ = llama.prefill(params, cfg, jnp.asarray(tokens))
  ours = np.asarray(ours)
  model = load_hf_model("smollm2-135m")
  with torch.no_grad():
    ref = model(torch.tensor(tokens, dtype=torch.long)).logits.numpy()
  diff = np.abs(ours - ref).max()
  agree = (ours.argmax(-1) == ref.argmax(-1)).mean()
  print(f"SmolLM2 256-token parity: max |logit diff| {diff:.2e}, argmax agreement {agree:.2%}")
  assert diff <= 1e-3
  assert agree == 1.0
