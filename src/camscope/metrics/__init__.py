"""Evaluation metrics for saliency maps, one module per family (pure torch, batched).

* :mod:`camscope.metrics.localization`: WSOL boxes, IoU, localization error, pointing games,
  energy share, class discrimination;
* :mod:`camscope.metrics.faithfulness`: Average Drop / Increase in Confidence / Win, deletion and
  insertion AUC, ROAD, rank correlation with occlusion;
* :mod:`camscope.metrics.sanity`: cascading model-parameter randomization;
* :mod:`camscope.metrics.robustness`: max-/average-sensitivity, local Lipschitz estimate, top-k
  intersection and centre-of-mass shift of maps under small input noise.

They take tensors and, where they need passes, a ``forward`` or ``explain_fn`` callable; they
know nothing of data sets or runs. ``camscope evaluate`` runs them on a data set through the
metric families registered in :mod:`camscope.evaluation.registry` and writes a report.
"""
