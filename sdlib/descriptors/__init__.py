"""Symmetry-invariant descriptors of local spin neighbourhoods for Behler–Parrinello force fields.

    from sdlib.descriptors import Descriptor
    desc = Descriptor(lattice.triangular(12))      # cutoff 2.0 by default
    feats = desc(spins)                            # [N, 3] -> [N, desc.n_features]

Modules: ``groups`` (point groups, Burnside character tables, irrep matrices), ``neighborhood``
(sites, bonds, chiralities and their signed permutation representation), ``invariants``
(projection operators, symmetry-adapted basis, power spectrum and Gram invariants), ``module``
(the ``torch.nn.Module``). Reference: Zhang, Zhang, Chern, arXiv:2201.00798.
"""
from .groups import Irrep, PointGroup
from .invariants import character_projector, component_projector, symmetry_adapted_basis
from .module import SPEC_VERSION, Descriptor
from .neighborhood import DEFAULT_CUTOFF, Neighborhood

__all__ = [
    "Descriptor", "Neighborhood", "PointGroup", "Irrep", "character_projector", "component_projector",
    "symmetry_adapted_basis", "DEFAULT_CUTOFF", "SPEC_VERSION",
]
