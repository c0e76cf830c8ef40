"""Annotated data sets: readers, class mapping and the built-in ground-truthed benchmark.

* :mod:`.annotations`: VOC XML, COCO JSON and CSV boxes into :class:`~.annotations.Sample` records;
* :mod:`.folders`: image-classification folders (one subfolder per class);
* :mod:`.classes`: data-set labels to model classes (ImageNet synsets, lemmas, indices);
* :mod:`.synthetic`: ``builtin:N``, objects cut from scikit-image's photos onto other backgrounds,
  with exact boxes, generated offline and deterministically.

Evaluation, training and the analysis commands read data through this package. It imports
:mod:`camscope.errors` and :mod:`camscope.io` only; no model, no engine.
"""
