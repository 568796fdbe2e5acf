"""examples/quickstart.ipynb runs end to end (smaller sizes), as a notebook user runs it."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path):
    nb = nbformat.read(os.path.join(REPO, "examples", "quickstart.ipynb"), as_version=4)
    params = next(cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", []))
    params.source = "EPOCHS = 3\nTRAIN_IMAGES = 96\nIMAGE_SIZE = 32\nBATCH_SIZE = 16"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []))
    assert "Stage 3/3 from epoch 3: image 32 px" in outputs and "Stage 1/3 from epoch 1: image 20 px" in outputs
    assert "val top-1 with EMA weights:" in outputs and "reloaded model predicts the same" in outputs
    assert (tmp_path / "quickstart.keras").exists() and (tmp_path / "quickstart_run" / "log.csv").exists()
