"""Electronic-structure solvers of the s-d model: exact diagonalisation, KPM, ordered states."""
from .ed import ExactSolver

__all__ = ["ExactSolver", "KPMSolver"]


def __getattr__(name):
    if name == "KPMSolver":
        from .kpm import KPMSolver

        return KPMSolver
    raise AttributeError(f"module 'sdlib.electrons' has no attribute {name!r}")
