"""Running a chapter under papermill in the tests: one helper for every chapter test."""
import json
import os
from pathlib import Path

import papermill as pm

ROOT = Path(__file__).resolve().parents[1]
# Seconds one cell may run before nbclient interrupts it and the test fails naming the cell. The
# pytest-timeout of a test (pyproject.toml) is only a backstop here: its alarm can land inside a
# callback of the event loop that drives the kernel, where asyncio swallows it and a hung
# execution then never ends.
CELL_TIMEOUT = 600


def run_chapter(notebook: str, tmp_path, **params) -> dict:
    """Execute ``book/<notebook>`` with ``params`` in ``tmp_path`` (kernel ``python3``, this
    checkout's sdlib first on PYTHONPATH) and return the ``results.json`` the chapter recorded."""
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env_path]))
    try:
        pm.execute_notebook(str(ROOT / "book" / notebook), str(Path(tmp_path) / "out.ipynb"), parameters=params,
                            kernel_name="python3", cwd=str(tmp_path), progress_bar=False,
                            execution_timeout=CELL_TIMEOUT)
    finally:
        os.environ["PYTHONPATH"] = env_path
    return json.loads((Path(tmp_path) / "results.json").read_text())
