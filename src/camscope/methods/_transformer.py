"""Steps the transformer methods share: which blocks a layer selects, the head's token rows, the
patch grid (no hooks here; the attention is recorded by :mod:`camscope.core.attention`)."""

from __future__ import annotations

from torch import Tensor

from ..core.attention import TransformerLayout, transformer_layout
from ..core.context import LayerContext
from ..core.targets import OutputAdapter
from ..errors import LayerError
from ..perturbation.options import Settings, class_targets


def targets_and_adapter(ctx: LayerContext, method: str) -> tuple[Tensor, OutputAdapter]:
    """The target classes (callable targets refused: the method scores its own pass by class)
    and the output adapter of the call, read as every method with passes of its own reads them."""
    return class_targets(ctx.class_ids, method), Settings.read(ctx.method_options).adapter


def layout_and_last_block(ctx: LayerContext, method: str) -> tuple[TransformerLayout, int]:
    """The model's layout and the index of the block that holds ``ctx.layer``: the methods read
    the blocks up to and including it (all of them at the default ``auto`` layer, the last
    block's first LayerNorm)."""
    layout = transformer_layout(ctx.model)
    last = layout.block_of(ctx.layer)
    if last is None:
        raise LayerError(
            f"{method} reads the attention of the blocks up to the chosen layer, and layer "
            f"{ctx.layer!r} is in no transformer block; pick a layer inside a block, e.g. "
            f"{layout.blocks[-1]!r} or the default 'auto'"
        )
    return layout, last


def readout_rows(matrix: Tensor, layout: TransformerLayout) -> Tensor:
    """``(..., N, N)`` token-to-token matrix -> ``(..., N)``: the row of the token the head reads
    (the mean of several, e.g. class and distillation tokens; of the patch tokens' rows when the
    head pools them)."""
    if layout.readout:
        return matrix[..., list(layout.readout), :].mean(-2)
    return matrix[..., layout.prefix :, :].mean(-2)


def patch_grid(tokens: Tensor, layout: TransformerLayout, ctx: LayerContext, method: str) -> Tensor:
    """``(B, K, N)`` values over all tokens -> ``(B, K, h, w)`` over the patch tokens, on the grid of
    the explained layer (``ctx.activations``)."""
    h, w = ctx.activations.shape[-2:]
    patches = tokens[..., layout.prefix :]
    if patches.shape[-1] != h * w:
        raise LayerError(
            f"{method}: {patches.shape[-1]} patch tokens do not fill the {h}x{w} grid of layer "
            f"{ctx.layer!r}; with a custom reshape, keep the model's patch grid"
        )
    return patches.reshape(*patches.shape[:-1], h, w)
