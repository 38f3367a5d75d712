"""Text data: data-dir resolution, reading, tokenization into blocks, grain."""

from sol_jax.data.paths import NAMED_DATASETS, dataset_files, resolve_data_dir
from sol_jax.data.pipeline import (
  make_block_dataset,
  make_eval_dataset,
  make_iterator,
  restore_iterator_state,
  save_iterator_state,
)
from sol_jax.data.text import detokenize_wikitext, load_hf_text, load_text, read_text_file
from sol_jax.data.tokens import split_into_blocks, text_blocks, tokenize_texts, tokenize_to_blocks

__all__ = [
  "NAMED_DATASETS",
  "dataset_files",
  "resolve_data_dir",
  "detokenize_wikitext",
  "load_hf_text",
  "load_text",
  "read_text_file",
  "split_into_blocks",
  "text_blocks",
  "tokenize_texts",
  "tokenize_to_blocks",
  "make_block_dataset",
  "make_eval_dataset",
  "make_iterator",
  "restore_iterator_state",
  "save_iterator_state",
]
