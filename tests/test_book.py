"""The book's sources: table of contents, stripped chapters, one parameters cell each."""
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [c["file"] for c in toc["chapters"]]


def test_toc_entries_exist_once():
    for entry in toc_files():
        found = [p for p in (ROOT / f"{entry}.md", ROOT / f"{entry}.ipynb") if p.exists()]
        assert len(found) == 1, f"{entry}: expected exactly one of .md/.ipynb, found {found}"


def test_every_chapter_is_in_the_toc():
    listed = set(toc_files())
    for nb in CHAPTERS:
        assert f"book/{nb.stem}" in listed, f"{nb.name} is not in _toc.yml"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_is_stripped_and_parametrised(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs must be stripped"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_papermill_sees_every_parameter(path):
    """papermill (and so the batch sweeps) must parse every assignment of the parameters cell."""
    import ast

    import papermill as pm

    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)]
    tuples = [node for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
              and not all(isinstance(t, ast.Name) for t in node.targets)]
    assert not tuples, "one name per assignment in the parameters cell"
    assert list(pm.inspect_notebook(str(path))) == assigned
