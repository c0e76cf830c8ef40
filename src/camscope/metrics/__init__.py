"""Evaluation metrics for saliency maps, one module per family (pure torch, batched).

* :mod:`camscope.metrics.localization`: WSOL boxes, IoU, localization error, pointing games,
  energy share, class discrimination;
* :mod:`camscope.metrics.faithfulness`: Average Drop / Increase in Confidence / Win, deletion and
  insertion AUC, ROAD, rank correlation with occlusion;
* :mod:`camscope.metrics.sanity`: cascading model-parameter randomization;
* :mod:`camscope.metrics.robustness`: max-/average-sensitivity, local Lipschitz estimate, top-k
  intersection and centre-of-mass shift of maps under small input noise.

``camscope evaluate`` (:mod:`camscope.evaluation`) runs them on a data set and writes a report.
"""

# Metric families of ``camscope evaluate --metrics`` (kept here, free of torch, so that the CLI's
# --help stays fast).
FAMILIES = (
    "loc",
    "pointing",
    "energy",
    "discrimination",
    "drop",
    "deletion",
    "insertion",
    "road",
    "occlusion",
    "sanity",
    "robustness",
)
#: The default set: everything but the costly ROAD, occlusion, sanity and robustness families.
DEFAULT_METRICS = ("loc", "pointing", "energy", "discrimination", "drop", "deletion", "insertion")
