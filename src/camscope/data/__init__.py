"""Every data set a command reads, in one grammar and one type, and the one walk over it.

* :mod:`.spec`: the data-spec grammar (``builtin[:N[:SEED]]``, ``cifar10:DIR``, lists,
  annotations, ``DIR``) and :class:`~.spec.DataOptions`;
* :mod:`.dataset`: :class:`~.dataset.LabelledData` of :class:`~.dataset.Sample` records (the one
  labelled-dataset type) and :meth:`~.dataset.Sample.prepare` (the one decode path);
* :mod:`.read`: :func:`~.read.read_data`, the one reader, over the format readers:
  :mod:`.annotations` (boxes in the registered annotation formats: :mod:`.voc` with Oxford-IIIT
  Pet, :mod:`.coco`, :mod:`.csv_boxes`; :mod:`.checks` names a broken field), :mod:`.layouts`
  (the format registry and the common folder layouts), :mod:`.folders` (class folders), :mod:`.lists`
  (CSV/Parquet lists as Arrow columns), :mod:`.cifar`, :mod:`.synthetic` (``builtin:N``, exact
  boxes, generated offline) and :mod:`.inputs` (plain image arguments, the demo images);
* :mod:`.classes`: data-set labels and ``--target`` names to model classes;
* :mod:`.walk`: :class:`~.walk.Walk`, the one batch walker (decode, skip with a reason, progress,
  cancel, resume, worker processes), and :mod:`.progress`, the one progress bar.

It imports :mod:`camscope.errors`, :mod:`camscope.io`, :mod:`camscope.core` (target parsing) and
the :class:`~camscope.models.ModelSpec` type; no engine.
"""

from . import coco, csv_boxes, voc  # noqa: F401  (each registers its annotation format)
