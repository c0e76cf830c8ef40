"""Passes through the model beyond the engine's one forward and backward.

Score-CAM's family runs the model on masked inputs (:mod:`.masked`), Ablation-CAM re-runs the
layers after the target with channels zeroed (:mod:`.ablation`), and both, like the evaluation
metrics, use :mod:`.fastpath`'s folded copy of the model for gradient-free passes. The options
these methods take are checked in :mod:`.options`. This package imports :mod:`camscope.core`
(layers, targets) and :mod:`camscope.errors` only; the method files import it.
"""

from .options import KNOWN_OPTIONS

__all__ = ["KNOWN_OPTIONS"]
