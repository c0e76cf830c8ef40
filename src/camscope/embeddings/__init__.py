"""``camscope embed``: globally pooled layer features projected to 2-D, with silhouette and k-NN
accuracy per layer.

* :mod:`.features`: hooks on the chosen layers, pooling, PCA/UMAP, silhouette, k-NN;
* :mod:`.run`: the batched forward passes over a data set;
* :mod:`.report`: ``embed.json`` and the self-contained ``report.html``.

This room sits above the engine, the data and the models; never ``serve`` or :mod:`camscope.cli`.
"""
