"""Field checks of annotation files: every value a reader needs, of the right type and finite.

Each failure is a :class:`DatasetError` that names the file, the entry and the field, so a broken
annotation is a usage error the user can fix, never an internal error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import DatasetError

Box = tuple[float, float, float, float]


def number(value: Any, where: str, what: str, positive: bool = False) -> float:
    """A finite number (``int``, ``float`` or numeric text; ``True`` and ``None`` are not)."""
    if isinstance(value, bool) or value is None:
        raise DatasetError(f"{where}: {what} is {value!r}, not a number")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: {what} is {value!r:.40}, not a number") from None
    if not math.isfinite(result):
        raise DatasetError(f"{where}: {what} is {value!r}, not a finite number")
    if positive and result <= 0:
        raise DatasetError(f"{where}: {what} must be positive; got {value!r}")
    return result


def box_in_image(raw: Box, where: str, size: tuple[int, int] | None) -> tuple[Box, bool]:
    """A checked ``(x0, y0, x1, y1)`` box and whether it was clipped to ``size`` (``(width, height)``) when it is known."""
    x0, y0, x1, y1 = raw
    if not (x1 > x0 and y1 > y0):
        raise DatasetError(f"{where}: box {raw} is empty or inverted (need x1 > x0 and y1 > y0)")
    width, height = size if size is not None else (math.inf, math.inf)
    box = (max(0.0, x0), max(0.0, y0), min(width, x1), min(height, y1))
    if not (box[2] > box[0] and box[3] > box[1]):
        dims = f"{width:g} x {height:g} image" if size is not None else "image"
        raise DatasetError(f"{where}: box {raw} lies outside the {dims}")
    return box, box != raw


def key_field(obj: dict[str, Any], name: str, where: str) -> int | str:
    """An id field: present, a number or a string (a list or object cannot be an id)."""
    if name not in obj:
        raise DatasetError(f"{where}: no {name!r} field")
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DatasetError(
            f"{where}: {name!r} must be a number or a string; got {type(value).__name__}"
        )
    return value


def text_field(obj: dict[str, Any], name: str, where: str) -> str:
    """A non-empty string field."""
    value = obj.get(name)
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: {name!r} must be a non-empty string; got {value!r}")
    return value.strip()


def size_of(width: Any, height: Any, where: str) -> tuple[int, int] | None:
    """``(width, height)`` in pixels, None when neither is given."""
    if width is None and height is None:
        return None
    return (
        round(number(width, where, "width", positive=True)),
        round(number(height, where, "height", positive=True)),
    )


def load_json(json_path: Path, name: str | None = None) -> Any:
    """A JSON file's content; an unreadable, invalid or absurdly nested file is named (as
    ``name``, default the path)."""
    name = name or str(json_path)
    try:
        return json.loads(json_path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DatasetError(f"{name}: cannot read ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(f"{name}: not valid JSON ({err})") from None
    except RecursionError:
        raise DatasetError(f"{name}: JSON nested too deeply to read") from None


def records(data: dict[str, Any], key: str, json_path: Path) -> list[dict[str, Any]]:
    """The list of objects under ``key`` (COCO's ``images``, ``annotations``, ``categories``)."""
    items = data.get(key)
    if not isinstance(items, list):
        raise DatasetError(
            f"{json_path}: no {key!r} list ({type(items).__name__}); is this a COCO annotation file?"
        )
    for k, item in enumerate(items):
        if not isinstance(item, dict):
            raise DatasetError(f"{json_path} {key}[{k}]: expected an object, got {item!r:.40}")
    return items
