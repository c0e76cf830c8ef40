"""Annotated data sets: readers, class mapping and the built-in ground-truthed benchmark.

* :mod:`.annotations`: VOC XML, COCO JSON and CSV boxes into :class:`~.annotations.Sample` records;
* :mod:`.checks`: the field checks of annotation files (file, entry and field named);
* :mod:`.layouts`: where annotations and images are in the common folder layouts (VOC, Oxford-IIIT
  Pet, COCO), and the refusal of image paths that leave the data folder;
* :mod:`.folders`: image-classification folders (one subfolder per class);
* :mod:`.classes`: data-set labels and ``--target`` names to model classes (class maps, names,
  ImageNet synsets and lemmas, the PASCAL VOC table, indices);
* :mod:`.synthetic`: ``builtin:N``, objects cut from scikit-image's photos onto other backgrounds,
  with exact boxes, generated offline and deterministically;
* :mod:`.inputs`: plain image arguments (files, folders, URLs, the demo images) with unique, safe
  output stems;
* :mod:`.labelled`: the labelled images of the audit, embedding and diagnosis commands.

Every command reads data through this package. It imports :mod:`camscope.errors`,
:mod:`camscope.io` and the :class:`~camscope.models.ModelSpec` type; no engine.
"""
