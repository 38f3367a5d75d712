"""Where the data lives: data-dir resolution and the named text datasets."""

from __future__ import annotations

import dataclasses
import os
import pathlib

DATA_DIR_ENV = 'SOL_DATA_DIR'

# The repo root is the parent of the `sol_jax` package dir; the shared data
# folder conventionally sits beside the checkout.
_PROJECT_ROOT = pathlib.Path(__file__).resolve().parents[2]
_DEFAULT_DATA_DIR = _PROJECT_ROOT.parent / 'shared' / 'data'

_EXPECTED_LAYOUT = """\
expected layout under the data dir:
  wikitext-2-raw/derived-test-only/wiki.test.raw
  wikitext-2/wiki2.test.txt, wikitext-2/wiki2.valid.txt
  train-corpus/wikitext-2/wiki2.train.txt, train-corpus/gutenberg/*.txt.xz"""


@dataclasses.dataclass(frozen=True)
class TextFile:
  """One file of a named dataset and whether it is tokenized WikiText."""

  path: pathlib.Path
  detokenize: bool


@dataclasses.dataclass(frozen=True)
class _Part:
  pattern: str  # relative to the data dir; may be a glob
  detokenize: bool
  exclude: tuple[str, ...] = ()  # file names the glob must skip


# The raw and tokenized WikiText evaluation files keep their spaced format by
# default: wikitext-2-raw-v1 (the paper's eval data) has the same ` @-@ ` and
# spaced punctuation as the tokenized files and differs only by `<unk>`.
# Training text is detokenized towards natural prose (the paper trains on
# Dolma).
#
# Four Gutenberg books are held out of `train-corpus` so every front can be
# checked on prose the policy was neither trained nor tuned on: Tom Sawyer
# (selection/tuning split) and Huckleberry Finn, Grimms' Fairy Tales and
# Ulysses (report split) -- authors with no other book in training.
HELDOUT_VALID_BOOKS = ('pg74.txt.xz',)
HELDOUT_TEST_BOOKS = ('pg76.txt.xz', 'pg2591.txt.xz', 'pg4300.txt.xz')
_GUTENBERG = 'train-corpus/gutenberg/'

NAMED_DATASETS: dict[str, tuple[_Part, ...]] = {
  'wikitext2-raw-test': (_Part('wikitext-2-raw/derived-test-only/wiki.test.raw', False),),
  'wikitext2-test': (_Part('wikitext-2/wiki2.test.txt', False),),
  'wikitext2-valid': (_Part('wikitext-2/wiki2.valid.txt', False),),
  'train-corpus': (
    _Part('train-corpus/wikitext-2/wiki2.train.txt', True),
    _Part(_GUTENBERG + '*.txt.xz', False, HELDOUT_VALID_BOOKS + HELDOUT_TEST_BOOKS),
  ),
  'gutenberg-heldout-valid': tuple(_Part(_GUTENBERG + b, False) for b in HELDOUT_VALID_BOOKS),
  'gutenberg-heldout-test': tuple(_Part(_GUTENBERG + b, False) for b in HELDOUT_TEST_BOOKS),
}


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> pathlib.Path:
  """Returns the data dir: argument, then $SOL_DATA_DIR, then ../shared/data."""
  if data_dir is not None and str(data_dir):
    path = pathlib.Path(data_dir).expanduser()
    if not path.is_dir():
      raise FileNotFoundError(
        f'data dir {str(path)!r} (from the data_dir argument) is not a '
        f'directory. Set data_dir (config key data.data_dir) to the data folder.\n'
        f'{_EXPECTED_LAYOUT}'
      )
    return path
  env = os.environ.get(DATA_DIR_ENV)
  if env:
    path = pathlib.Path(env).expanduser()
    if not path.is_dir():
      raise FileNotFoundError(
        f'data dir {env!r} (from ${DATA_DIR_ENV}) is not a directory. Fix '
        f'${DATA_DIR_ENV} or set data_dir (config key data.data_dir).\n'
        f'{_EXPECTED_LAYOUT}'
      )
    return path
  if _DEFAULT_DATA_DIR.is_dir():
    return _DEFAULT_DATA_DIR
  raise FileNotFoundError(
    'no data dir found: set data_dir (config key data.data_dir) or '
    f'${DATA_DIR_ENV}; the default {str(_DEFAULT_DATA_DIR)!r} does not '
    f'exist.\n{_EXPECTED_LAYOUT}'
  )


def dataset_files(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[TextFile]:
  """Lists the files of a named dataset, in reading order."""
  if name not in NAMED_DATASETS:
    raise ValueError(
      f'unknown dataset {name!r}; known names: {sorted(NAMED_DATASETS)} (or pass a file path).'
    )
  root = resolve_data_dir(data_dir)
  files = []
  for part in NAMED_DATASETS[name]:
    if any(c in part.pattern for c in '*?['):
      matches = sorted(
        p for p in root.glob(part.pattern) if p.is_file() and p.name not in part.exclude
      )
      if not matches:
        raise FileNotFoundError(
          f'dataset {name!r}: no files match {str(root / part.pattern)!r}.\n{_EXPECTED_LAYOUT}'
        )
    else:
      path = root / part.pattern
      if not path.is_file():
        raise FileNotFoundError(
          f'dataset {name!r}: missing file {str(path)!r}.\n{_EXPECTED_LAYOUT}'
        )
      matches = [path]
    files.extend(TextFile(p, part.detokenize) for p in matches)
  return files
