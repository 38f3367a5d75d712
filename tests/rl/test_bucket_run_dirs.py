"""Run directories in a bucket (`train.run_dir=gs://bucket/run`), against a local fake.

pathlib turns "gs://b/run" into the local folder "gs:/b/run"; these tests
check that the URI reaches the filesystem layer unchanged. No network: epath's
fsspec backend gets a fake "gcs" filesystem that maps gs://bucket/key to a
local folder, tensorboardX a fake "gs" writer factory, and orbax's bucket
query (google-cloud-storage) a stub.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest
from etils.epath import backend as epath_backend
from fsspec.implementations.local import LocalFileSystem
from orbax.checkpoint._src.path import gcs_utils
from tensorboardX import record_writer

from sol_jax import config as config_lib
from sol_jax import run_paths, tracking
from sol_jax.rl import Checkpoints, load_run_config, run_config, run_directory

RUN = "gs://bucket/sol/run1"
# fsspec's table of protocol -> filesystem class (`fsspec.registry` is its read-only view).
FSSPEC_REGISTRY = importlib.import_module("fsspec.registry")._registry


class FakeGCS(LocalFileSystem):
  """gs://bucket/key <-> <bucket_root>/bucket/key on local disk."""

  protocol = ("gcs", "gs")
  cachable = False
  bucket_root = ""  # set by the fixture

  @classmethod
  def _strip_protocol(cls, path):
    path = os.fspath(path)
    for scheme in ("gs://", "gcs://"):
      if path.startswith(scheme):
        return os.path.join(cls.bucket_root, path[len(scheme) :])
    return super()._strip_protocol(path)


class FakeGCSWriterFactory:
  """tensorboardX's writer for gs:// paths, writing into the same local folder."""

  def directory_check(self, path):
    assert path.startswith("gs://"), path

  def open(self, path):
    local = FakeGCS._strip_protocol(path)
    os.makedirs(os.path.dirname(local), exist_ok=True)
    return open(local, "wb")


@pytest.fixture
def fake_gcs(tmp_path, monkeypatch):
  """The local folder standing for gs://; the test runs in an empty cwd."""
  root = tmp_path / "gcs"
  root.mkdir()
  monkeypatch.setattr(FakeGCS, "bucket_root", str(root))
  monkeypatch.setenv("EPATH_USE_TF", "false")  # epath's fsspec backend, not tf.io.gfile
  for name in ("gcs", "gs"):
    monkeypatch.setitem(FSSPEC_REGISTRY, name, FakeGCS)
  monkeypatch.setitem(record_writer.REGISTERED_FACTORIES, "gs", FakeGCSWriterFactory())
  # Orbax asks the bucket (google-cloud-storage) whether it has folders; the fake has none.
  monkeypatch.setattr(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False)
  epath_backend.fsspec_backend._get_filesystem.cache_clear()
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)
  yield root
  epath_backend.fsspec_backend._get_filesystem.cache_clear()
  # Nothing may have landed in a local folder named after the URI ("gs:/bucket/...").
  assert not (cwd / "gs:").exists(), sorted(os.listdir(cwd))


def test_paths_keep_the_scheme():
  cfg = config_lib.load_config("smollm2_3L_cpu", [f"train.run_dir={RUN}"])
  run_dir = run_directory(cfg)
  assert str(run_dir) == RUN and str(run_dir / "tb") == f"{RUN}/tb"
  assert run_paths.is_uri(run_dir) and not run_paths.is_uri("runs/x")
  assert str(run_paths.absolute(RUN)) == RUN
  assert str(run_paths.absolute("runs/x")) == os.path.join(os.getcwd(), "runs/x")
  assert str(tracking.Tracker(run_dir / "tb", enabled=False).logdir) == f"{RUN}/tb"
  # The default stays a relative local path.
  assert str(run_directory(config_lib.load_config("smollm2_3L_cpu"))) == "runs/smollm2_3L_cpu"


def test_run_config_round_trips_through_the_bucket(fake_gcs):
  cfg = config_lib.load_config("smollm2_3L_cpu", [f"train.run_dir={RUN}", "optim.lr=0.0003"])
  run_config.start_run(run_directory(cfg), cfg, None)
  folder = fake_gcs / "bucket" / "sol" / "run1"
  assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "provenance.json"]
  assert load_run_config(RUN) == cfg
  run_config.start_run(run_directory(cfg), cfg, 5)  # a resume appends a start
  assert '"resumed_from_step": 5' in (folder / "provenance.json").read_text()
  changed = config_lib.apply_overrides(cfg, ["optim.lr=0.001"])
  with pytest.raises(ValueError, match=f"(?s)refusing to resume {RUN} .*optim.lr"):
    run_config.start_run(run_directory(changed), changed, 5)


def test_checkpoints_live_under_the_uri(fake_gcs):
  ckpt = Checkpoints(RUN)
  try:
    assert str(ckpt.directory) == f"{RUN}/checkpoints"
    assert ckpt.latest_step() is None
    assert (fake_gcs / "bucket" / "sol" / "run1" / "checkpoints").is_dir()  # created there
  finally:
    ckpt.close()


def test_tensorboard_events_are_written_to_the_uri(fake_gcs):
  with tracking.Tracker(f"{RUN}/tb", enabled=True) as tracker:
    tracker.scalar("reward", np.float32(0.5), 1)
  events = list((fake_gcs / "bucket" / "sol" / "run1" / "tb").glob("events.out.tfevents.*"))
  assert len(events) == 1 and events[0].stat().st_size > 0
