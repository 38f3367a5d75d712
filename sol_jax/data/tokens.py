"""Text -> one token stream -> non-overlapping blocks of C+T+1 tokens.

Method §3, §10, §12.1: no special tokens (no BOS/EOS), each document tokenized
on its own, ids concatenated with no separator, cut greedily into blocks,
remainder dropped. Token streams are cached on disk as int32 `.npy`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
import re
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from sol_jax.data import text as text_lib

DEFAULT_CACHE_DIR = pathlib.Path('~/.cache/sol_jax/tokens')
CACHE_DIR_ENV = 'SOL_TOKEN_CACHE_DIR'

# A chunk may end after a newline that is followed by a non-space, or by one
# space and a non-space: byte-level BPE pre-tokenizers (GPT-2, Llama-3 regex)
# never build a pre-token across such a point. Checked per boundary below.
_SAFE_SPLIT = re.compile(r'\n(?=\S| \S)')
_CHUNK_CHARS = 1 << 16
_BATCH_CHUNKS = 64


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
  """Batch-encodes without special tokens (no BOS anywhere)."""
  if not texts:
    return []
  return tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)[
    'input_ids'
  ]


def split_for_tokenizer(doc: str, chunk_chars: int = _CHUNK_CHARS) -> list[str]:
  """Cuts a document into >= chunk_chars pieces at safe newline boundaries."""
  chunks, start = [], 0
  while len(doc) - start > chunk_chars:
    m = _SAFE_SPLIT.search(doc, start + chunk_chars)
    if m is None:
      break
    chunks.append(doc[start : m.end()])
    start = m.end()
  if start < len(doc):
    chunks.append(doc[start:])
  return chunks


def _boundaries_ok(tokenizer: Any, chunks: list[str]) -> bool:
  """Whether tokenizing across each chunk boundary equals tokenizing apart.

  Compares the last line of each chunk joined with the next chunk's first line
  against the two encoded separately: cheap, and catches tokenizers (e.g.
  SentencePiece with a prefix space) for which the split is not neutral.
  """
  if len(chunks) < 2:
    return True
  lefts = [c[c.rfind('\n', 0, len(c) - 1) + 1 :] for c in chunks[:-1]]
  rights = [c[: c.find('\n') + 1] or c for c in chunks[1:]]
  ids = _encode(tokenizer, lefts + rights + [l + r for l, r in zip(lefts, rights)])
  n = len(lefts)
  return all(ids[i] + ids[n + i] == ids[2 * n + i] for i in range(n))


def tokenize_texts(
  docs: Sequence[str], tokenizer: Any, chunk_chars: int = _CHUNK_CHARS
) -> np.ndarray:
  """Token ids of all documents, concatenated with no separator (int32)."""
  pieces: list[str] = []
  for i, doc in enumerate(docs):
    chunks = split_for_tokenizer(doc, chunk_chars)
    if not _boundaries_ok(tokenizer, chunks):
      logging.warning(
        'document %d: chunked tokenization differs at a line '
        'boundary for this tokenizer; encoding it whole.',
        i,
      )
      chunks = [doc]
    pieces.extend(chunks)
  out: list[np.ndarray] = [np.zeros((0,), np.int32)]
  for b in range(0, len(pieces), _BATCH_CHUNKS):
    out.extend(
      np.asarray(ids, np.int32) for ids in _encode(tokenizer, pieces[b : b + _BATCH_CHUNKS])
    )
  return np.concatenate(out)


def split_into_blocks(
  tokens: np.ndarray, block_len: int, max_blocks: int | None = None
) -> np.ndarray:
  """[N, block_len] non-overlapping blocks in order; remainder dropped."""
  if block_len <= 0:
    raise ValueError(f'block_len must be positive (C+T+1), got {block_len}.')
  n = len(tokens) // block_len
  if max_blocks is not None:
    if max_blocks <= 0:
      raise ValueError(f'max_blocks must be positive or None, got {max_blocks}.')
    n = min(n, max_blocks)
  if n == 0:
    raise ValueError(
      f'only {len(tokens)} tokens: not even one block of '
      f'{block_len}; use more text or a smaller C+T.'
    )
  return np.ascontiguousarray(tokens[: n * block_len].reshape(n, block_len))


def tokenizer_fingerprint(tokenizer: Any) -> str:
  """Short hash of the tokenizer's full definition (vocab, merges, rules)."""
  backend = getattr(tokenizer, 'backend_tokenizer', None)
  if backend is not None:
    payload = backend.to_str()
  else:
    payload = type(tokenizer).__name__ + json.dumps(sorted(tokenizer.get_vocab().items()))
  return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _save_atomic(path: pathlib.Path, array: np.ndarray) -> None:
  """Writes `.npy` via a temp file + os.replace: never a half-written file."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      np.save(f, array)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def cache_dir_path(cache_dir: str | os.PathLike[str] | None) -> pathlib.Path:
  """cache_dir, else $SOL_TOKEN_CACHE_DIR, else ~/.cache/sol_jax/tokens."""
  if cache_dir is None:
    cache_dir = os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR
  return pathlib.Path(cache_dir).expanduser()


def cached_tokens(
  key_parts: Any, name: str, compute: Any, cache_dir: str | os.PathLike[str] | None = None
) -> np.ndarray:
  """Loads tokens cached under hash(key_parts), else computes and saves them."""
  key = hashlib.sha256(
    json.dumps([text_lib.TEXT_PROCESSING_VERSION, key_parts], sort_keys=True).encode()
  ).hexdigest()[:20]
  safe = re.sub(r'[^A-Za-z0-9_.-]+', '_', name)[-60:]
  path = cache_dir_path(cache_dir) / f'{safe}-{key}.npy'
  if path.is_file():
    try:
      return np.load(path)
    except (OSError, ValueError) as e:
      logging.warning('unreadable token cache %s (%s); rebuilding.', path, e)
  tokens = compute()
  _save_atomic(path, tokens)
  return tokens


def tokenize_to_blocks(
  docs: Sequence[str],
  tokenizer: Any,
  block_len: int,
  cache_dir: str | os.PathLike[str] | None = None,
  max_blocks: int | None = None,
) -> np.ndarray:
  """Tokenizes documents into [N, block_len] int32 blocks.

  With `cache_dir`, the token stream is cached under a hash of the text and
  the tokenizer; without it nothing is written.
  """
  compute = lambda: tokenize_texts(docs, tokenizer)
  if cache_dir is None:
    tokens = compute()
  else:
    digest = hashlib.sha256()
    for doc in docs:
      digest.update(hashlib.sha256(doc.encode()).digest())
    tokens = cached_tokens(
      ['texts', digest.hexdigest(), tokenizer_fingerprint(tokenizer)], 'texts', compute, cache_dir
    )
  return split_into_blocks(tokens, block_len, max_blocks)


def text_blocks(
  name_or_path: str | os.PathLike[str],
  tokenizer: Any,
  block_len: int,
  data_dir: str | os.PathLike[str] | None = None,
  max_blocks: int | None = None,
  *,
  detokenize: bool | None = None,
  max_rows: int | None = None,
  cache_dir: str | os.PathLike[str] | None = None,
  use_cache: bool = True,
) -> np.ndarray:
  """Blocks of a named dataset, file or `hf:` source (see `text.load_text`).

  The token stream is cached (default ~/.cache/sol_jax/tokens) under a key of
  the files' paths, sizes and mtimes, the tokenizer and the detokenize flag,
  so a second call skips reading and tokenizing.
  """
  key = os.fspath(name_or_path)
  compute = lambda: tokenize_texts(
    text_lib.load_text(key, data_dir, detokenize, max_rows), tokenizer
  )
  if not use_cache:
    return split_into_blocks(compute(), block_len, max_blocks)
  if key.startswith('hf:'):
    sources: list[Any] = [key, max_rows, detokenize]
  else:
    sources = []
    for f in text_lib.source_files(key, data_dir):
      st = f.path.stat()
      sources.append(
        [
          str(f.path.resolve()),
          st.st_size,
          st.st_mtime_ns,
          f.detokenize if detokenize is None else detokenize,
        ]
      )
  tokens = cached_tokens(
    ['files', sources, tokenizer_fingerprint(tokenizer)], pathlib.Path(key).name, compute, cache_dir
  )
  return split_into_blocks(tokens, block_len, max_blocks)
