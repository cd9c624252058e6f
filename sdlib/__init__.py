"""sdlib: machine-learning force fields for Landau–Lifshitz–Gilbert dynamics of itinerant magnets.

Public names::

    from sdlib import lattice, SDModel, ExactSolver, KPMSolver, MLForceField, LLG
"""
from importlib import import_module

from . import lattice
from .electrons.ed import ExactSolver
from .forcefield import FiniteDifferenceFields, ForceField, ForceFieldOutput
from .model import SDModel, random_spins

__version__ = "0.1.0"

__all__ = [
    "lattice", "SDModel", "ExactSolver", "KPMSolver", "MLForceField", "LLG",
    "random_spins", "ForceField", "ForceFieldOutput", "FiniteDifferenceFields", "__version__",
]

# Heavier parts are imported on first use, so `import sdlib` stays light.
_LAZY = {"KPMSolver": "sdlib.electrons.kpm", "MLForceField": "sdlib.nn", "LLG": "sdlib.dynamics"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sdlib' has no attribute {name!r}")
