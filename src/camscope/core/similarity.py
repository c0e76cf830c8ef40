"""Targets for embedding models: explain the similarity of an image to a reference.

A metric-learning or retrieval model maps an image to an embedding ``f(x)``. The score explained
is its cosine similarity to a reference embedding ``r`` (another image's, or a concept's):

.. math::
    y = \\cos(f(x), r) = \\frac{f(x) \\cdot r}{\\lVert f(x) \\rVert \\, \\lVert r \\rVert}

so a gradient CAM method answers "which regions make this image look like the reference". This
is the idea of pytorch-grad-cam's ``SimilarityToConceptTarget`` (its embeddings tutorial, after
Gildenblat's "Pixel attribution" notes). With ``R`` references, :class:`SimilarityTarget`
returns ``(B, R)`` scores: one map per reference from one forward and one batched backward.

Example:
    >>> reference = embed(model, load(ref_image))  # (1, D), no gradients  # doctest: +SKIP
    >>> res = explain(model, x, "gradcam", targets=SimilarityTarget(reference))  # doctest: +SKIP

The embedding is the model output: a ``(B, D)`` tensor (``(B, D, 1, 1)`` is flattened), the
first tensor of a tuple, or for a mapping or a Hugging Face output the first of
``image_embeds``, ``embeddings``, ``pooler_output`` (or the entry ``output_key`` names). A
classifier's output is its logits: its "embedding" is then the class-score vector (a valid, if
coarse, similarity). Deviation from pytorch-grad-cam: it compares one image's embedding with a
concept vector; here every image of the batch is compared with every reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import TargetError

EMBEDDING_KEYS = ("image_embeds", "embeddings", "embedding", "pooler_output")


def embedding_of(output: Any, output_key: str | None = None) -> Tensor:
    """The ``(B, D)`` embedding inside a model output (see the module docstring)."""
    found: Any = output
    if isinstance(output, Mapping) or not isinstance(output, (Tensor, tuple, list)):
        keys = (output_key,) if output_key else EMBEDDING_KEYS
        get = output.get if isinstance(output, Mapping) else lambda k: getattr(output, k, None)
        found = next((get(k) for k in keys if isinstance(get(k), Tensor)), None)
        if found is None:
            have = (
                sorted(map(str, output)) if isinstance(output, Mapping) else type(output).__name__
            )
            raise TargetError(
                f"no embedding in the model output ({have}); name its entry with output_key "
                f"(looked for {', '.join(keys)})"
            )
    elif isinstance(output, (tuple, list)):
        found = next((t for t in output if isinstance(t, Tensor)), None)
    if not isinstance(found, Tensor) or found.ndim < 2:
        raise TargetError(
            "an embedding is a (batch, dims) tensor; the model gave "
            f"{type(found).__name__} {tuple(getattr(found, 'shape', ()))}"
        )
    if found.ndim > 2:
        if any(int(v) != 1 for v in found.shape[2:]):
            raise TargetError(
                f"the model output {tuple(found.shape)} is not an embedding (batch, dims); "
                "pool it in the model or pick an embedding model"
            )
        found = found.flatten(1)
    return found


class SimilarityTarget:
    """Callable target: cosine similarity of each image's embedding to the reference(s).

    Args:
        reference: ``(D,)`` one reference, or ``(R, D)`` references (one map each).
        output_key: the entry of a mapping or ``ModelOutput`` that holds the embedding.
    """

    def __init__(self, reference: Tensor, output_key: str | None = None) -> None:
        if not isinstance(reference, Tensor) or reference.ndim not in (1, 2):
            raise TargetError(
                "reference must be a (dims,) or (references, dims) tensor; got "
                f"{type(reference).__name__} {tuple(getattr(reference, 'shape', ()))}"
            )
        if not bool(torch.isfinite(reference).all()) or bool(
            (reference.detach().reshape(-1, reference.shape[-1]).norm(dim=1) == 0).any()
        ):
            raise TargetError("a reference embedding is zero or not finite: it has no direction")
        self.reference = reference.detach()
        self.output_key = output_key

    def __call__(self, output: Any) -> Tensor:
        embedding = embedding_of(output, self.output_key)
        ref = self.reference.to(embedding)
        if ref.shape[-1] != embedding.shape[1]:
            raise TargetError(
                f"the reference has {ref.shape[-1]} dimensions, the model's embedding "
                f"{embedding.shape[1]}; compute the reference with the same model"
            )
        if ref.ndim == 1:
            return F.cosine_similarity(embedding, ref[None], dim=1)
        return F.cosine_similarity(embedding[:, None, :], ref[None, :, :], dim=2)


def embed(
    model: nn.Module, x: Tensor, *, output_key: str | None = None, mode: str = "eval"
) -> Tensor:
    """The ``(B, D)`` embeddings of ``x`` from one no-grad forward (eval mode by default, the
    model's modes restored afterwards, its lock held), detached."""
    from .layers import no_grad_forward

    output = no_grad_forward(model, x, mode)
    return embedding_of(output, output_key).detach()
