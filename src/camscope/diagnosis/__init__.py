"""Diagnosing a model with its maps: ``camscope failures`` (every misclassified image explained
for its predicted and its true class) and ``camscope adversarial`` (FGSM and PGD, and how the
original class's map survives the attack). The map robustness numbers under input noise are
metrics of :mod:`camscope.metrics.robustness` (``camscope evaluate``). What each module holds:
the ``diagnosis/`` paragraph of docs/architecture.md.
"""
