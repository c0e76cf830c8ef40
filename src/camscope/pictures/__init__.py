"""``camscope explain`` as pictures: overlays, grids and ``.npy`` maps per image, for classifiers,
detectors, segmentation and embedding models (:func:`~.run.run_picture_job`, also for library
callers). What each module holds: the ``pictures/`` paragraph of docs/architecture.md; the
data-set job (Parquet shards, ``--format parquet``) is :mod:`camscope.batch`.
"""
