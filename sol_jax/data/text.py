"""Reading text documents: plain/xz files, named datasets, HF datasets.

A document is one string that is tokenized on its own; documents are then
concatenated without separators (method §3, §10). Lines keep their `\\n`, so the
text is the file as it is, minus blank lines (method §12.1 drops empty rows):
joining the HF wikitext rows gives the same string as our line-per-row file.
"""

from __future__ import annotations

import lzma
import os
import pathlib
import re
from typing import Any

from sol_jax.data import paths

# Bump when reading/detokenizing changes, so cached token arrays are rebuilt.
TEXT_PROCESSING_VERSION = 1

# Tokenized WikiText: ` @-@ `-style escapes and Moses-like spacing. Applied in
# this order to each line (without its leading/trailing space).
_DETOK_RULES: tuple[tuple[re.Pattern[str], Any], ...] = tuple(
  (re.compile(p), r)
  for p, r in (
    (r' @([-,.])@ ', r'\1'),  # 1 @,@ 000 -> 1,000; long @-@ term
    (r'=(?: =)+', lambda m: m.group(0).replace(' ', '')),  # = = h = =
    (r'" ([^"]*?) "', r'"\1"'),  # " quoted " -> "quoted" (left to right)
    (r"n 't\b", "n't"),  # don 't -> don't
    (r" '(s|m|d|re|ve|ll)\b", r"'\1"),  # John 's -> John's
    (r' ([,.;:!?%)\]}])', r'\1'),  # attach to the left
    (r'([(\[{]) ', r'\1'),  # attach to the right
    (r'([$£€]) (?=\d)', r'\1'),  # $ 5 -> $5
  )
)


def detokenize_wikitext(text: str) -> str:
  """Undoes WikiText's tokenized spacing; `<unk>` tokens are kept as is.

  Works line by line, strips each line's surrounding spaces and keeps its
  newline. Single quotes are left alone (quote vs apostrophe is ambiguous).
  """
  out = []
  for line in text.split('\n'):
    line = line.strip(' ')
    for pattern, repl in _DETOK_RULES:
      line = pattern.sub(repl, line)
    out.append(line)
  return '\n'.join(out)


def normalize_newlines(text: str) -> str:
  """CRLF (and lone CR) -> LF."""
  return text.replace('\r\n', '\n').replace('\r', '\n')


def drop_blank_lines(text: str) -> str:
  """Removes whitespace-only lines; other lines keep their newline."""
  lines = text.split('\n')
  last = lines.pop()  # '' when the text ends with a newline
  kept = [line + '\n' for line in lines if line.strip()]
  if last.strip():
    kept.append(last)
  return ''.join(kept)


def read_text_file(path: str | os.PathLike[str], detokenize: bool = False) -> str:
  """Reads UTF-8 text (`.xz` decompressed) with LF endings, no blank lines."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'text file {str(path)!r} does not exist.')
  opener = lzma.open if path.suffix == '.xz' else open
  with opener(path, 'rb') as f:
    raw = f.read()
  try:
    text = raw.decode('utf-8')
  except UnicodeDecodeError as e:
    raise ValueError(f'{str(path)!r} is not valid UTF-8 ({e}); convert it to UTF-8 first.') from e
  text = normalize_newlines(text.removeprefix('\ufeff'))
  if detokenize:
    text = detokenize_wikitext(text)
  return drop_blank_lines(text)


def load_hf_text(
  path: str,
  name: str | None = None,
  split: str = 'validation',
  *,
  text_field: str = 'text',
  max_rows: int | None = None,
) -> list[str]:
  """First `max_rows` rows of a streamed HF dataset, empty rows dropped.

  Each row is one document, as in the reference's loaders (method §10, §12.1).
  """
  try:
    import datasets  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
      'Hugging Face sources need the `datasets` package (pip install '
      'datasets); or point at a local file / named dataset instead.'
    ) from e
  stream = datasets.load_dataset(path, name, split=split, streaming=True)
  docs = []
  for i, row in enumerate(stream):
    if max_rows is not None and i >= max_rows:
      break
    text = row[text_field]
    if text and text.strip():
      docs.append(text)
  return docs


def _parse_hf(spec: str) -> tuple[str, str | None, str]:
  """'hf:path[:name[:split]]' -> (path, name, split)."""
  fields = spec[len('hf:') :].split(':')
  if not fields[0] or len(fields) > 3:
    raise ValueError(
      f'bad HF source {spec!r}; use hf:PATH[:NAME[:SPLIT]], '
      'e.g. hf:wikitext:wikitext-2-raw-v1:validation.'
    )
  fields += [None] * (3 - len(fields))
  return fields[0], fields[1] or None, fields[2] or 'validation'


def source_files(
  name_or_path: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None
) -> list[paths.TextFile]:
  """Files of a dataset name or a path (as given, or under the data dir)."""
  key = os.fspath(name_or_path)
  if key in paths.NAMED_DATASETS:
    return paths.dataset_files(key, data_dir)
  path = pathlib.Path(key).expanduser()
  if path.is_file():
    return [paths.TextFile(path, False)]
  if not path.is_absolute():
    try:
      under_data = paths.resolve_data_dir(data_dir) / path
    except FileNotFoundError:
      under_data = None
    if under_data is not None and under_data.is_file():
      return [paths.TextFile(under_data, False)]
  raise FileNotFoundError(
    f'{key!r} is neither a known dataset {sorted(paths.NAMED_DATASETS)} nor '
    'an existing file (tried as given and under the data dir).'
  )


def load_text(
  name_or_path: str | os.PathLike[str],
  data_dir: str | os.PathLike[str] | None = None,
  detokenize: bool | None = None,
  max_rows: int | None = None,
) -> list[str]:
  """Loads documents: one per file, or one per row for `hf:` sources.

  Args:
    name_or_path: a name in `paths.NAMED_DATASETS`, a text file (`.xz` ok), or
      `hf:PATH[:NAME[:SPLIT]]` (needs the `datasets` package).
    data_dir: see `paths.resolve_data_dir`.
    detokenize: undo WikiText tokenization; None = the dataset's default
      (only the WikiText part of `train-corpus`; False for paths).
    max_rows: only for `hf:` sources: rows read from the stream.
  """
  key = os.fspath(name_or_path)
  if key.startswith('hf:'):
    docs = load_hf_text(*_parse_hf(key), max_rows=max_rows)
    if detokenize:
      docs = [detokenize_wikitext(d) for d in docs]
    return docs
  if max_rows is not None:
    raise ValueError('max_rows only applies to hf: sources; use max_blocks to limit file datasets.')
  return [
    read_text_file(f.path, f.detokenize if detokenize is None else detokenize)
    for f in source_files(key, data_dir)
  ]
