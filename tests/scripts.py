"""Helpers of the tests of scripts/: import a script as a module, and the relative torque error
computed directly (not through the library's own ``_rel``)."""
import importlib.util
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """``scripts/<name>.py`` as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def torque_rel(spins, fields, ref) -> float:
    """‖S × (H − H_ref)‖ / ‖S × H_ref‖ over all sites and frames."""
    cross = lambda h: torch.linalg.cross(spins, h, dim=-1)
    return ((cross(fields) - cross(ref)).pow(2).sum() / cross(ref).pow(2).sum()).sqrt().item()
