"""``camscope embed``: globally pooled layer features projected to 2-D, with silhouette and k-NN
accuracy per layer, so how class separation grows with depth is a number. What each module
holds: the ``embeddings/`` paragraph of docs/architecture.md.
"""
