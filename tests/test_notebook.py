"""notebooks/quickstart.ipynb runs top to bottom (headless, small settings)."""

import os
import pathlib

import pytest

from sol_jax import data as data_lib
from sol_jax.rl import policies_dir

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.integration
def test_quickstart_executes_without_errors(tmp_path, monkeypatch):
  nbclient = pytest.importorskip("nbclient")
  nbformat = pytest.importorskip("nbformat")
  try:
    data_lib.resolve_data_dir(None)
  except FileNotFoundError:
    pytest.skip("needs the shared data dir")
  if not (policies_dir() / "smollm2_3L_cpu" / "seed2").is_dir():
    pytest.fail("the notebook loads the shipped policy smollm2_3L_cpu/seed2, which is missing")
  monkeypatch.setenv("SOL_NOTEBOOK_SMALL", "1")
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
    nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
  )
  client.execute()  # raises CellExecutionError on the first failing cell
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  text = "".join(o.get("text", "") for o in outputs)
  assert "policy vs Fixed" in text and "trained 2 data batches" in text
  assert any("image/png" in o.get("data", {}) for o in outputs)  # the heat maps were drawn
  assert os.environ["SOL_NOTEBOOK_SMALL"] == "1"
