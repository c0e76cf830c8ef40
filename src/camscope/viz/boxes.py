"""Boxes drawn on pictures: the detections a map explains.

:func:`draw_boxes` draws each box in a colour of its own (a fixed cycle of eight colours that
stay apart for colour-blind readers, Okabe & Ito 2008) with its caption above it; the
highlighted box (the one a map explains) gets a thick outline and the others a thin one;
``colour`` and ``width`` draw every box alike instead (the ground-truth boxes of the evaluation
and audit reports). Boxes are in the picture's pixels.

Example:
    >>> drawn = draw_boxes(picture, [Box((10, 10, 80, 60), "0: dog 0.93")], highlight=0)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

from .grid import font, printable

# Okabe-Ito: orange, sky blue, bluish green, yellow, blue, vermillion, reddish purple, black
PALETTE = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (0, 0, 0),
)
GREEN = (0, 255, 0)  # ground-truth boxes in the evaluation and audit reports
CYAN = (0, 255, 255)  # the audit's hot spot


@dataclass(frozen=True)
class Box:
    """A box ``(x0, y0, x1, y1)`` in picture pixels and its caption."""

    xyxy: tuple[float, float, float, float]
    caption: str = ""


def draw_boxes(
    picture: Image.Image,
    boxes: Sequence[Box],
    highlight: int | None = None,
    *,
    colour: tuple[int, int, int] | None = None,
    width: int | None = None,
) -> Image.Image:
    """A copy of ``picture`` (RGB) with ``boxes`` drawn; ``highlight`` is the index of the box
    drawn thick (the others thin), None draws all alike; ``colour`` and ``width``, when given,
    are every box's."""
    out = picture.convert("RGB")
    draw = ImageDraw.Draw(out)
    side = max(out.size)
    thin = max(1, round(side / 400))
    thick = max(3, round(side / 150))
    face = font(max(11, round(side / 45)))
    order = [k for k in range(len(boxes)) if k != highlight]
    if highlight is not None and 0 <= highlight < len(boxes):
        order.append(highlight)  # drawn last, on top
    for k in order:
        box = boxes[k]
        ink_box = colour or PALETTE[k % len(PALETTE)]
        x0, y0, x1, y1 = (float(v) for v in box.xyxy)
        line = width or (thick if k == highlight else thin)
        draw.rectangle((x0, y0, max(x0, x1), max(y0, y1)), outline=ink_box, width=line)
        if box.caption and (highlight is None or k == highlight or len(boxes) <= 8):
            text = printable(box.caption).replace("\n", " ")
            left, top, right, bottom = draw.textbbox((0, 0), text, font=face)
            w, h = right - left + 6, bottom - top + 4
            ty = y0 - h if y0 - h >= 0 else y0
            tx = min(max(0.0, x0), max(0.0, out.width - w))
            draw.rectangle((tx, ty, tx + w, ty + h), fill=ink_box)
            ink = (255, 255, 255) if sum(ink_box) < 380 else (0, 0, 0)
            draw.text((tx + 3 - left, ty + 2 - top), text, fill=ink, font=face)
    return out
