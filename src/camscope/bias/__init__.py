"""``camscope bias-experiment``: the Grad-CAM paper's bias experiment, offline (docs/bias.md): a
biased and a rebalanced training set, both trained through :mod:`camscope.training` and audited
through :mod:`camscope.audit`, and the figures of the write-up.
"""
