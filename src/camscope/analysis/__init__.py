"""Using maps and features to diagnose models, one group of modules per command.

* :mod:`.labelled`: the one reader of labelled images for ``audit``, ``embed``, ``failures``
  and ``adversarial`` (class folders, the annotated formats of ``evaluate``, the built-in set, or
  plain images), each with its accepted model classes and boxes, decoded one at a time;
  :mod:`.labelled_batches` walks them batch by batch for ``failures`` and ``adversarial`` (their
  shared settings, the skipped inputs, the progress bar);
* :mod:`.hotspot`: object energy and the box-free hot spot of a class's mean map (pure torch);
* :mod:`.audit`, :mod:`.audit_run`, :mod:`.audit_report`: ``camscope audit``, per-class
  accuracy, object energy, hot spot and plain-language flags, ``audit.json`` and ``report.html``;
* :mod:`.embed`, :mod:`.embed_run`, :mod:`.embed_report`: ``camscope embed``, globally pooled
  layer features projected to 2-D with silhouette and k-NN accuracy per layer;
* :mod:`.bias_experiment`, :mod:`.bias_figures`: ``camscope bias-experiment``, the Grad-CAM
  paper's bias experiment offline (docs/bias.md);
* :mod:`.failures`, :mod:`.report`: ``camscope failures``, every misclassified image explained
  for its predicted and its true class, with the overlap of the two maps, ``failures.json``, the
  confusion matrix, per-class accuracy and the self-contained ``report.html``;
* :mod:`.attacks`, :mod:`.adversarial`: ``camscope adversarial``, FGSM and PGD in pixel space
  ([0, 1], L-infinity ball, the model's normalisation applied inside, untargeted or targeted,
  batched), the maps of the original and the adversarial class, and how similar the original
  class's map stays.

The map robustness numbers (sensitivity, Lipschitz, top-k intersection) are metrics of
:mod:`camscope.metrics.robustness` and run in ``camscope evaluate``.

This room sits above the engine, the metrics, the data and the models: it may import any of
them, ``batch`` (input gathering and output stems) and ``evaluation``, ``training`` for the bias
experiment; never ``serve`` or :mod:`camscope.cli`, and nothing below imports it.
"""
