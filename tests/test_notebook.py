"""Executes examples/colab_quickstart.ipynb headless in its quick mode so it cannot rot."""
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "colab_quickstart.ipynb"


@pytest.mark.slow
def test_colab_quickstart_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.setenv("RESEG_NOTEBOOK_MODE", "quick")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = "\n".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert "mode=quick" in outputs
    assert "mean_iou" in outputs
    assert "TFLite output (1," in outputs
    assert (tmp_path / "runs" / "notebook_demo" / "model.keras").is_file()
    assert any((tmp_path / "exported" / "notebook" / "saved_model").iterdir())
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # data grid, prediction strips, TFLite result
