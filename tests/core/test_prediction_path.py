"""One prediction path: only ``core/prediction.py`` turns logits into classes or probabilities.

Like ``tests/test_architecture.py`` walks the imports, this walks every call in ``src/camscope``
and fails on a ``softmax``, ``log_softmax``, ``sigmoid``, ``argmax``, ``argmin`` or ``topk`` (as a
tensor method, ``torch.*``, ``F.*``, ``nn.functional.*`` or a name imported from torch) anywhere
else, unless the (module, call) pair is in :data:`ALLOWED` with the reason it is not over class
logits. A command that needs classes or probabilities uses :func:`camscope.core.prediction.predict`,
:func:`~camscope.core.prediction.classify`, a :class:`~camscope.core.prediction.Prediction` or
:attr:`camscope.Explanation.prediction`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "camscope"
OWNER = "core/prediction.py"
CALLS = frozenset({"softmax", "log_softmax", "sigmoid", "argmax", "argmin", "topk"})

# (module relative to src/camscope, call) -> why it is not a prediction over class logits
ALLOWED: dict[tuple[str, str], str] = {
    ("metrics/localization.py", "argmax"): (
        "the peak pixel of a map (pointing game) and the largest connected component of a mask"
    ),
    ("audit/hotspot.py", "argmax"): "the peak pixel of a map",
    ("embeddings/features.py", "topk"): "the k nearest neighbours of the k-NN accuracy",
    ("embeddings/features.py", "argmax"): (
        "the k-NN majority vote over data-set labels, and PCA's sign convention (largest loading)"
    ),
    ("perturbation/masked.py", "softmax"): (
        "Score-CAM's 'channel-softmax' variant: a softmax over the channel weights, not classes"
    ),
    ("core/segmentation.py", "argmax"): (
        "a segmentation model's per-pixel class, the mask of the pixels a target explains"
    ),
    ("core/attention.py", "softmax"): (
        "a vision transformer's attention probabilities over tokens, recomputed in the graph"
    ),
    ("core/attention.py", "sigmoid"): "the output gate of a gated timm attention block",
    ("methods/dff.py", "argmax"): (
        "the concept (over the NMF concepts, not classes) that gives a target its highest "
        "probability, read from ClassHead.probabilities"
    ),
    ("methods/fullgrad.py", "argmax"): "the first input row each row of a resize matrix reads",
}


def offending_calls(source: str) -> list[tuple[int, str]]:
    """``(line, call)`` of every call of one of :data:`CALLS` in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = (
            func.attr
            if isinstance(func, ast.Attribute)
            else func.id
            if isinstance(func, ast.Name)
            else None
        )
        if name in CALLS:
            found.append((node.lineno, name))
    return sorted(found)


def violations(files: dict[str, str]) -> list[str]:
    """The calls of ``files`` (module -> source) that break the rule, as ``module:line call``."""
    bad = []
    for module, source in sorted(files.items()):
        if module == OWNER:
            continue
        for line, name in offending_calls(source):
            if (module, name) not in ALLOWED:
                bad.append(f"{module}:{line} {name}")
    return bad


def source_files() -> dict[str, str]:
    return {
        path.relative_to(SRC).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(SRC.rglob("*.py"))
    }


def test_only_core_prediction_turns_logits_into_classes_or_probabilities() -> None:
    bad = violations(source_files())
    assert not bad, (
        "classes and probabilities come from camscope.core.prediction (predict, classify, "
        "Prediction, Explanation.prediction); add to ALLOWED, with the reason, only what is not "
        "over class logits:\n" + "\n".join(bad)
    )


def test_every_allowed_use_still_exists_and_says_why() -> None:
    files = source_files()
    for (module, name), why in ALLOWED.items():
        assert module in files, f"ALLOWED names {module}, which no longer exists"
        assert name in {n for _, n in offending_calls(files[module])}, (
            f"ALLOWED lets {module} call {name}, which it no longer does: remove the entry"
        )
        assert len(why) > 20, f"say why {module} may call {name}"
    assert offending_calls(files[OWNER]), "the prediction module itself should do the work"


@pytest.mark.parametrize(
    ("snippet", "call"),
    [
        ("p = logits.softmax(1)", "softmax"),
        ("p = logits.float().softmax(dim=-1)[0]", "softmax"),
        ("import torch\np = torch.sigmoid(z)", "sigmoid"),
        ("import torch.nn.functional as F\nq = F.log_softmax(z, 1)", "log_softmax"),
        ("from torch import nn\np = nn.functional.softmax(z, dim=1)", "softmax"),
        ("import torch\np = torch.nn.functional.sigmoid(z)", "sigmoid"),
        ("from torch import argmax\nc = argmax(z, 1)", "argmax"),
        ("c = int(scores.argmin())", "argmin"),
        ("values, ids = probs.topk(5)", "topk"),
        ("def f(out):\n    return [int(c) for c in out.logits.argmax(1)]", "argmax"),
    ],
)
def test_a_planted_prediction_is_caught(snippet: str, call: str) -> None:
    planted = {"serve/viewer/service.py": snippet, OWNER: snippet}
    assert violations(planted) == [f"serve/viewer/service.py:{snippet.count(chr(10)) + 1} {call}"]
    # an allowed module may make its allowed call, and only that one
    assert violations({"audit/hotspot.py": "i = maps.flatten(1).argmax(1)"}) == []
    assert violations({"audit/hotspot.py": "p = logits.softmax(1)"}) == [
        "audit/hotspot.py:1 softmax"
    ]


def test_calls_of_other_names_are_not_flagged() -> None:
    source = "y = x.max(1)\nz = x.sort()\nloss = F.cross_entropy(z, y)\nsoftmax = 3\n"
    assert offending_calls(source) == []
