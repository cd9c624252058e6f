"""The data engine: typed recipes of the two studies and the steps that make their reference data.

    seed      exact-LLG (or network-driven) quenches at the reference size   (``quench``)
    explore   quenches driven by a trained network, candidates scored by a committee  (``active``)
    select    largest per-site torque disagreement + a uniform share + ordered states  (``select``)
    label     exact grand-canonical labels on the μ grid, one ``eigh`` per frame, resumable shards  (``label``)
    iterate   train → explore → select → label, each round's held-out error in ``rounds.json``  (``active``)

``scripts/make_models.py`` is a command line over this package; ``shipped`` holds the recipes and
steps of the two models shipped in ``sdlib/data`` (small clusters, T_e = 0 quenches relabelled).
"""
from .active import (active_round, baseline, explore, make_driver, make_heldout, read_rounds, record, run_active, seed,
                     seed_data)
from .committee import grand_dataset, heldout_errors, train_committee
from .job import gpu_round
from .label import chunk_files, label_fixed, label_pool, labelled_index, read_frames, write_frames
from .quench import generate_quench_data, quench_frames
from .recipes import SQUARE, STUDIES, TRIANGULAR, Recipe, study
from .select import disagreement, ordered_configurations, select_frames, torque_spread

__all__ = ["Recipe", "SQUARE", "TRIANGULAR", "STUDIES", "study", "generate_quench_data", "quench_frames",
           "torque_spread", "disagreement", "select_frames", "ordered_configurations", "write_frames", "read_frames",
           "label_pool", "chunk_files", "labelled_index", "label_fixed", "grand_dataset", "train_committee",
           "heldout_errors", "make_driver", "seed", "seed_data", "make_heldout", "explore", "active_round", "run_active",
           "baseline", "read_rounds", "record", "gpu_round"]
