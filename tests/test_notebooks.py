"""The notebooks run top to bottom on small data."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNGUARD_NOTEBOOK_CLIENTS", "300")
    monkeypatch.setenv("CHURNGUARD_NOTEBOOK_MONTHS", "30")
    monkeypatch.setenv("CHURNGUARD_NOTEBOOK_DIR", str(tmp_path))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # segment, tenure, importance, effects, calibration charts
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "labelled monthly snapshots" in text and "oracle AUC" in text
    assert [p.name for p in tmp_path.glob("churnguard-notebook-*")]  # its store went where told
