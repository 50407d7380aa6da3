"""Every example notebook runs top to bottom in a real kernel with sensible outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parent.parent / "example_notebooks"
NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.ipynb"))


def _outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_example_runs_clean(name: str, artifacts_dir: Path) -> None:
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", store_widget_state=True,
                            resources={"metadata": {"path": str(EXAMPLES)}})
    client.execute()
    nbformat.write(nb, artifacts_dir / f"executed-{name}")
    outs = _outputs(nb)
    errors = [o for o in outs if o["output_type"] == "error"]
    assert not errors, errors[0]["evalue"] if errors else ""
    stderr = "".join(o.get("text", "") for o in outs if o.get("name") == "stderr")
    assert "Traceback" not in stderr and stderr.count("Warning") <= 2, stderr[:2000]
    if "%deploy" in "".join(c.source for c in nb.cells):
        # the panel was displayed and its widget state saved with the notebook
        state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
        models = state.get("state", {}).values()
        assert any("nbdeploy-panel" in str(m.get("state", {}).get("_dom_classes", [])) for m in models)
        if name == "01_quickstart.ipynb":
            # a reader opening the saved notebook sees the header as it ended: serving
            headers = [m["state"]["value"] for m in models if m.get("model_name") == "HTMLModel"
                       and "nbdeploy-badge" in str(m.get("state", {}).get("value", ""))]
            assert headers and any("quickstart v1" in h and ">serving</span>" in h for h in headers), headers
