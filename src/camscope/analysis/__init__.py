"""Using maps and features to diagnose models, one group of modules per command.

* :mod:`.labelled`: the labelled images the analysis commands read (class folders, annotated
  boxes, the built-in set), decoded one at a time;
* :mod:`.hotspot`: object energy and the box-free hot spot of a class's mean map (pure torch);
* :mod:`.audit`, :mod:`.audit_run`, :mod:`.audit_report`: ``camscope audit``, per-class
  accuracy, object energy, hot spot and plain-language flags, ``audit.json`` and ``report.html``;
* :mod:`.embed`, :mod:`.embed_run`, :mod:`.embed_report`: ``camscope embed``, globally pooled
  layer features projected to 2-D with silhouette and k-NN accuracy per layer;
* :mod:`.bias_experiment`, :mod:`.bias_figures`: ``camscope bias-experiment``, the Grad-CAM
  paper's bias experiment offline (docs/bias.md).

This room sits above the engine, the metrics, the data and the models: it may import any of
them (and ``training`` for the bias experiment), and nothing below imports it.
"""
