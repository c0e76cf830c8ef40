"""Annotated data sets: readers, class mapping and the built-in ground-truthed benchmark.

* :mod:`.annotations`: VOC XML, COCO JSON and CSV boxes into :class:`~.annotations.Sample` records;
* :mod:`.classes`: data-set labels to model classes (ImageNet synsets, lemmas, indices);
* :mod:`.synthetic`: ``builtin:N``, objects cut from scikit-image's photos onto other backgrounds,
  with exact boxes, generated offline and deterministically.

Evaluation, training and the analysis commands read data through this package. It imports
:mod:`camscope.errors` only (and PIL/numpy at the edges); no model, no engine.
"""
