"""Paths of run directories, local or in a bucket (`train.run_dir=gs://bucket/run`).

`pathlib.Path("gs://b/run")` collapses the scheme's slashes to "gs:/b/run", a
local folder of that name, so run directories go through `etils.epath.Path`
(orbax's own path type), which keeps the URI and reads and writes it through
fsspec (gcsfs for gs://) or TensorFlow's gfile, and local paths as pathlib does.
Never `.absolute()` or `.resolve()` a URI: both treat it as a relative local path.
"""

from __future__ import annotations

import os
from typing import Union

from etils import epath

PathLike = Union[str, os.PathLike]


def run_path(path: PathLike) -> epath.Path:
  """`path` as an epath.Path, a `scheme://` URI kept as it is."""
  return epath.Path(path)


def is_uri(path: PathLike) -> bool:
  """Whether `path` names a remote object store (gs://, s3://, ...), not a local file."""
  return "://" in os.fspath(path)


def absolute(path: PathLike) -> epath.Path:
  """A local path made absolute; a URI unchanged (it is absolute already)."""
  path = run_path(path)
  return path if is_uri(path) else path.absolute()
