"""The table behind ``camscope layers``: every layer camscope can explain, tokens included.

Feature maps and token layers alike, with the layout camscope reads them in and the ``auto`` /
``first`` / ``middle`` / ``last`` choices marked.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .families import family_blocks
from .layers import auto_layer, depth_choices, dry_run, list_layers
from .reshape import OutputLayout, layout_of, token_facts


@dataclass(frozen=True)
class LayerRow:
    """One row of :func:`layer_table`.

    Attributes:
        name: dotted module name.
        kind: module class name.
        output_shape: per-sample output shape as the module returns it.
        layout: how camscope reads it (``NCHW``, ``NHWC``, ``tokens(...)``).
        spatial: ``(C, h, w)`` after reshaping.
        conv_index: position among ``Conv2d`` modules, or None.
        marks: ``auto`` / ``first`` / ``middle`` / ``last`` where this layer is that choice.
    """

    name: str
    kind: str
    output_shape: tuple[int, ...]
    layout: str
    spatial: tuple[int, int, int]
    conv_index: int | None
    marks: tuple[str, ...]


def _spatial_of(shape: tuple[int, ...], layout: OutputLayout) -> tuple[int, int, int]:
    if layout.kind == "NHWC":
        return shape[2], shape[0], shape[1]
    if layout.kind == "tokens" and layout.grid is not None:
        return shape[1], layout.grid[0], layout.grid[1]
    return shape[0], shape[1], shape[2]


def layer_table(model: nn.Module, x: Tensor) -> list[LayerRow]:
    """Every module whose output camscope can explain, feature maps and token layers alike.

    One eval-mode, no-grad forward on ``x[:1]`` (modes and hooks restored). Rows come in
    execution order; the ``auto`` choice and the first / middle / last ``Conv2d`` (the choices of
    Riyaz & Morem 2024, seed 002) or, for transformers, block are marked.
    """
    facts = token_facts(model)
    size = (x.shape[-2], x.shape[-1])
    seen = dry_run(model, x, ranks=(3, 4))
    rows: list[tuple[str, nn.Module, tuple[int, ...], OutputLayout]] = []
    done: set[str] = set()
    for name, module, shape in seen:
        layout = layout_of(shape, facts, size)
        if name in done or layout is None:
            continue
        done.add(name)
        rows.append((name, module, shape, layout))
    conv_index = {i.name: i.conv_index for i in list_layers(model, x) if i.conv_index is not None}
    marks: dict[str, list[str]] = {auto_layer(model, x): ["auto"]}
    if conv_index or family_blocks(model):
        for tag, pick in depth_choices(model, x).items():
            marks.setdefault(pick, []).append(tag)
    return [
        LayerRow(
            name,
            type(module).__name__,
            shape,
            str(layout),
            _spatial_of(shape, layout),
            conv_index.get(name),
            tuple(marks.get(name, [])),
        )
        for name, module, shape, layout in rows
    ]
