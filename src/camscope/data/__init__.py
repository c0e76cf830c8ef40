"""Every data set a command reads, in one grammar (:mod:`.spec`) and one type
(:class:`~.dataset.LabelledData` of :class:`~.dataset.Sample` records, read by
:func:`~.read.read_data` and decoded by :meth:`~.dataset.Sample.prepare`), and the one walk over
it (:class:`~.walk.Walk`, with :mod:`.progress`, the one progress bar). What each module holds
and the grammar's table: docs/architecture.md ("data/", "Data: the one grammar").
"""

from . import coco, csv_boxes, voc  # noqa: F401  (each registers its annotation format)
