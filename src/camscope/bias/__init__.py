"""``camscope bias-experiment``: the Grad-CAM paper's bias experiment, offline (docs/bias.md).

* :mod:`.experiment`: the biased and the rebalanced set, both trainings through
  :mod:`camscope.training` and the audit of both models through :mod:`camscope.audit`;
* :mod:`.figures`: the side-by-side grids of the write-up.
"""
