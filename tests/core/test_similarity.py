"""Similarity targets: explain an embedding's cosine similarity to a reference, by hand on a tiny
net and against pytorch-grad-cam's similarity target on a random-init ResNet."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torchvision
from torch import Tensor, nn

import camscope
from camscope.core.similarity import SimilarityTarget, embed, embedding_of
from camscope.errors import TargetError

# RowNet: the layer "conv" is the identity on a one-channel 2x2 input A; the embedding is the
# sums of A's rows, e = (A00 + A01, A10 + A11). On A = [[1, 2], [3, 4]]: e = (3, 7), |e| = √58.
# cos(e, (1, 0)) = 3 / √58; its gradient: d/de0 = e1² / |e|³ = 49 / 58^1.5,
# d/de1 = -e0 e1 / |e|³ = -21 / 58^1.5, the same for both positions of a row. Grad-CAM's weight
# is the mean, (2 · 49 - 2 · 21) / 4 / 58^1.5 = 14 / 58^1.5, and its raw map that times A.
A = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)


class RowNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x).sum(-1).flatten(1)


def test_similarity_gradcam_by_hand() -> None:
    target = SimilarityTarget(torch.tensor([1.0, 0.0]))
    res = camscope.explain(RowNet().eval(), A, "gradcam", layer="conv", targets=target)
    torch.testing.assert_close(res.scores, torch.tensor([3 / math.sqrt(58)]))
    torch.testing.assert_close(res.raw["gradcam"][0], 14 / 58**1.5 * A[0, 0])
    assert res.probabilities is None and res.targets.tolist() == [-1]


def test_several_references_give_one_map_each() -> None:
    # reference (0, 1): cos = 7 / √58; gradient d/de0 = -21 / 58^1.5, d/de1 = 9 / 58^1.5,
    # weight (2 · -21 + 2 · 9) / 4 / 58^1.5 = -6 / 58^1.5
    refs = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    res = camscope.explain(
        RowNet().eval(), A, "gradcam", layer="conv", targets=SimilarityTarget(refs)
    )
    torch.testing.assert_close(res.scores, torch.tensor([[3 / math.sqrt(58), 7 / math.sqrt(58)]]))
    torch.testing.assert_close(res.raw["gradcam"][0, 1], -6 / 58**1.5 * A[0, 0])


def test_embeddings_are_read_from_common_outputs() -> None:
    e = torch.ones(2, 3)
    assert embedding_of(e) is e
    assert embedding_of((e, torch.zeros(1))) is e
    assert embedding_of({"pooler_output": e, "last_hidden_state": torch.zeros(2, 4, 3)}) is e
    assert embedding_of(torch.ones(2, 3, 1, 1)).shape == (2, 3)
    with pytest.raises(TargetError, match="output_key"):
        embedding_of({"hidden": e})
    with pytest.raises(TargetError, match="not an embedding"):
        embedding_of(torch.ones(2, 3, 4, 4))
    with pytest.raises(TargetError, match="same model"):
        SimilarityTarget(torch.ones(5))(e)
    with pytest.raises(TargetError, match="no direction"):
        SimilarityTarget(torch.zeros(3))


def test_embed_restores_modes_and_takes_no_gradients() -> None:
    model = RowNet().train()
    out = embed(model, A)
    assert model.training and not out.requires_grad
    torch.testing.assert_close(out, torch.tensor([[3.0, 7.0]]))


def test_agrees_with_pytorch_grad_cam_similarity_to_concept() -> None:
    """pytorch-grad-cam's embeddings tutorial explains ``cos(model(x), concept)``; written here
    from its description, run through its GradCAM at the same layer."""
    from pytorch_grad_cam import GradCAM

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    model.fc = nn.Identity()  # the 512-d pooled embedding
    model.eval()
    gen = torch.Generator().manual_seed(4)
    x, reference = (
        torch.randn(1, 3, 96, 96, generator=gen),
        torch.randn(1, 3, 96, 96, generator=gen),
    )
    concept = embed(model, reference)[0]

    class PeerTarget:
        def __call__(self, output: Tensor) -> Tensor:
            return torch.nn.functional.cosine_similarity(output, concept, dim=0)

    peer_model = copy.deepcopy(model)
    with GradCAM(peer_model, [peer_model.layer4]) as cam:
        peer = cam(x, targets=[PeerTarget()])[0]
    res = camscope.explain(model, x, "gradcam", layer="layer4", targets=SimilarityTarget(concept))
    ours = res.maps["gradcam"][0].numpy()
    r = float(np.corrcoef(ours.ravel(), peer.ravel())[0, 1])
    assert r >= 0.98, f"r = {r:.4f}"
