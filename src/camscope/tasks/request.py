"""What to explain in a model that is not a classifier, as plain values (:class:`TaskRequest`).

Torch-free at import, so that the command line can offer :data:`TASK_CHOICES` in its help.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

TASK_CHOICES = ("auto", "classification", "detection", "segmentation", "similarity")
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TaskRequest:
    """The task and its choices.

    Attributes:
        task: ``auto`` (the model spec's task), ``classification``, ``detection``,
            ``segmentation`` or ``similarity``.
        box_threshold: detection: explain every detection scoring at least this.
        boxes: detection: explain the detections matching these boxes instead (``x0, y0, x1,
            y1`` in the image's own pixels).
        class_name: detection: only boxes of this class; segmentation: the class explained
            (a name or an index).
        region: segmentation: a mask picture of the pixels to explain (default: the pixels the
            model labels with the class).
        references: similarity: the images whose embeddings the image is compared with.
        iou: detection: how the IoU with the box enters the score (``none``, ``multiply``,
            ``add``; :class:`camscope.core.detection.DetectionTarget`).
        iou_threshold: detection: the least IoU of a match.
    """

    task: str = "auto"
    box_threshold: float = 0.5
    boxes: tuple[Box, ...] = ()
    class_name: str | None = None
    region: str | None = None
    references: tuple[str, ...] = ()
    iou: str = "none"
    iou_threshold: float = 0.5

    def check(self) -> None:
        """Values in range and no option of another task (a usage error names the option)."""
        if self.task not in TASK_CHOICES:
            raise UsageError(f"--task must be one of {', '.join(TASK_CHOICES)}; got {self.task!r}")
        for what, value in (
            ("--box-threshold", self.box_threshold),
            ("--iou-threshold", self.iou_threshold),
        ):
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"{what} must be between 0 and 1; got {value}")
        from ..core.detection import IOU_MODES

        if self.iou not in IOU_MODES:
            raise UsageError(f"--box-iou must be one of {', '.join(IOU_MODES)}; got {self.iou!r}")
        for box in self.boxes:
            if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
                raise UsageError(f"--box {list(box)}: give x0,y0,x1,y1 with x0 < x1 and y0 < y1")

    def resolve(self, model_task: str) -> str:
        """The task to run for a model whose spec says ``model_task`` (``auto`` takes it), with
        every option checked against it."""
        self.check()
        task = model_task if self.task == "auto" else self.task
        given = {
            "--box": bool(self.boxes) and task != "detection",
            "--region": self.region is not None and task != "segmentation",
            "--reference": bool(self.references) and task != "similarity",
            "--class": self.class_name is not None and task not in ("detection", "segmentation"),
        }
        wrong = [option for option, bad in given.items() if bad]
        if wrong:
            raise UsageError(
                f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not for the "
                f"{task} task (--task detection takes --box/--class, segmentation --class/"
                "--region, similarity --reference)"
            )
        if task == "segmentation" and self.class_name is None:
            raise UsageError(
                "--task segmentation needs --class NAME (the class to explain, e.g. person)"
            )
        if task == "similarity" and not self.references:
            raise UsageError(
                "--task similarity needs --reference IMAGE (the image to compare with)"
            )
        if task == "classification" and model_task in ("detection", "segmentation"):
            raise UsageError(
                f"the model is a {model_task} model; explain it with --task {model_task} "
                "(or --task auto)"
            )
        return task
