"""Diagnosing a model with its maps: ``camscope failures`` and ``camscope adversarial``.

* :mod:`.failures`, :mod:`.report`: every misclassified image explained for its predicted and
  its true class, with the overlap of the two maps, ``failures.json``, the confusion matrix,
  per-class accuracy and the self-contained ``report.html``;
* :mod:`.attacks`, :mod:`.adversarial`: FGSM and PGD in pixel space ([0, 1], L-infinity ball, the
  model's normalisation applied inside, untargeted or targeted, batched), the maps of the original
  and the adversarial class, and how similar the original class's map stays;
* :mod:`.batches`: the settings both commands share and their batches of labelled images.

The map robustness numbers (sensitivity, Lipschitz, top-k intersection) are metrics of
:mod:`camscope.metrics.robustness` and run in ``camscope evaluate``. This room sits above the
engine, the metrics, the data and the models; never ``serve`` or :mod:`camscope.cli`.
"""
