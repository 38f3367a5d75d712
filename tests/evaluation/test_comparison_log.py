"""The comparison log, read back through a real TensorBoard server's HTTP API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from sol_jax.evaluation import comparison_log as cl
from sol_jax.evaluation import comparison_plots as cp

REALIZED_TAGS = [f"realized/{a}" for a in cl.REALIZED]


def _rows():
  # Point ids deliberately not in net-keep order: "b" is the lowest budget.
  policy_keep = {"a": 0.6, "b": 0.3, "c": 0.9}
  rows = []
  for m, method in enumerate(cl.METHODS):
    for point, keep in policy_keep.items():
      k = keep if method != "dense" else 1.0
      rows.append(
        dict(
          method=method, point=point, ppl=10.0 + m + 5 * (1 - k), net_keep=k + 0.01 * m,
          relative_flops=0.8 * k, kappa=k, rho=min(1.0, k + 0.1), eta=0.5,
        )
      )  # fmt: skip
  return rows


def test_operating_points_sorted_by_policy_net_keep():
  rows = _rows()
  assert cl.operating_points(rows) == {"b": 0, "a": 1, "c": 2}
  # Without ids, a row's point is its ordinal within its method.
  plain = [dict(method=m, net_keep=k) for m in ("policy", "fixed") for k in (0.7, 0.2)]
  assert cl.operating_points(plain) == {1: 0, 0: 1}
  with pytest.raises(ValueError, match="no 'policy' row"):
    cl.operating_points(rows + [dict(method="fixed", point="z", net_keep=0.1)])


def test_write_rejects_duplicate_points(tmp_path):
  rows = _rows() + [dict(_rows()[3])]
  with pytest.raises(ValueError, match="several rows"):
    cl.write_comparison(tmp_path, rows)


def _free_port_server(logdir, log_path):
  # `--port 0` lets the OS choose; the server prints the address it bound.
  log = open(log_path, "w")
  cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
  cmd += ["--host", "127.0.0.1", "--port", "0", "--load_fast=false", "--reload_interval=1"]
  return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log


def _get(base, path, **query):
  url = base + path + ("?" + urllib.parse.urlencode(query) if query else "")
  with urllib.request.urlopen(url, timeout=10) as resp:
    return json.loads(resp.read())


def _wait(fn, deadline, what):
  last = None
  while time.monotonic() < deadline:
    try:
      last = fn()
      if last:
        return last
    except OSError:
      pass
    time.sleep(0.3)
  raise AssertionError(f"timed out waiting for {what}; last answer {last!r}")


@pytest.mark.integration
def test_tensorboard_serves_the_comparison(tmp_path):
  rows = _rows()
  logdir = tmp_path / "logs"
  tokens = ["The", " cat", "$x$", "\n", " sat"] * 4
  rng = np.random.default_rng(0)
  images = {
    "front/net_keep": cp.front_figure(rows, "net_keep"),
    "front/relative_flops": cp.front_figure(rows, "relative_flops"),
    "adherence": cp.adherence_figure({"kappa": [0.3, 0.6]}, {"kappa": [0.31, 0.58]}),
    "actions": cp.action_heatmap(
      tokens, rng.choice([0.25, 1.0], 20), rng.choice([0.5, 1.0], 20), rng.choice([4, 16], 20)
    ),
  }
  index = cl.write_comparison(logdir, rows, config="a: 1\n", images=images)
  assert index == {"b": 0, "a": 1, "c": 2}

  proc, log = _free_port_server(logdir, tmp_path / "tb.log")
  try:
    deadline = time.monotonic() + 60

    def address():
      found = re.search(r"http://127\.0\.0\.1:(\d+)/", (tmp_path / "tb.log").read_text())
      assert proc.poll() is None, (tmp_path / "tb.log").read_text()
      return found and f"http://127.0.0.1:{found.group(1)}"

    base = _wait(address, deadline, "the server address")
    want_runs = set(cl.METHODS) | {cl.SUMMARY_RUN}
    runs = _wait(lambda: want_runs <= set(_get(base, "/data/runs")), deadline, "runs")
    assert runs and set(_get(base, "/data/runs")) == want_runs

    tags = _get(base, "/data/plugin/scalars/tags")
    for method in cl.METHODS:
      assert sorted(tags[method]) == sorted(list(cl.SCALARS) + REALIZED_TAGS), method

    for method, tag, key in (("policy", "ppl", "ppl"), ("emc", "realized/rho", "rho")):
      series = _get(base, "/data/plugin/scalars/scalars", run=method, tag=tag)
      want = sorted((index[r["point"]], r[key]) for r in rows if r["method"] == method)
      assert [s[1] for s in series] == [w[0] for w in want]
      np.testing.assert_allclose([s[2] for s in series], [w[1] for w in want], rtol=1e-6)

    image_tags = _get(base, "/data/plugin/images/tags")
    assert set(image_tags[cl.SUMMARY_RUN]) == set(images)
    text_tags = _get(base, "/data/plugin/text/tags")
    assert set(text_tags[cl.SUMMARY_RUN]) == {"config/text_summary", "results/text_summary"}
    (results,) = _get(
      base, "/data/plugin/text/text", run=cl.SUMMARY_RUN, tag="results/text_summary"
    )
    assert "random_oracle" in results["text"] and "<table>" in results["text"]
  finally:
    proc.terminate()
    try:
      proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
      proc.kill()
    log.close()
