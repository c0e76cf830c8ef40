"""``camscope explain`` as pictures: overlays, grids and ``.npy`` maps per image.

* :mod:`.run`: the whole job (:func:`~.run.run_picture_job`: methods under the pass budget,
  the target, ``summary.json``, also when interrupted);
* :mod:`.job`: load, explain in batches, skip what cannot run, records that survive Ctrl-C;
* :mod:`.plan`: what each image's files show (titles, layout, class labels);
* :mod:`.files`: draws and encodes them in a thread pool.

The data-set job (Parquet shards, ``--format parquet``) is :mod:`camscope.batch`.
"""
