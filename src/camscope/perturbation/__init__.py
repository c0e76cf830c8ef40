"""Passes through the model beyond the engine's one forward and backward.

Score-CAM's family runs the model on masked inputs (:mod:`.masked`), Ablation-CAM re-runs the
layers after the target with channels zeroed (:mod:`.ablation`), occlusion slides patches over the
input (:mod:`.occlusion`). :mod:`.fastpath`'s :class:`FastForward` is a faster copy of the model
for gradient-free passes, owned by whoever makes it: Score-CAM's family and the ``occlusion``
method make one per call with ``optimize=True`` (or use the caller's, passed as the method option
``fast_model``), the evaluation metrics use the one their run hands them. The options these
methods take are checked in :mod:`.options`. This package imports :mod:`camscope.core` (layers,
targets) and :mod:`camscope.errors` only; the method files import it.
"""

from .fastpath import FastForward
from .options import KNOWN_OPTIONS

__all__ = ["KNOWN_OPTIONS", "FastForward"]
