"""The method table of ``camscope methods`` and ``docs/methods.md``, both made from the registry.

One row per registered method with its family, the gradients it uses, the passes it costs per
image, whether its map depends on the class, the paper and what the map shows.
``tests/test_docs.py`` checks that ``docs/methods.md`` holds exactly :func:`markdown_table` (run
``camscope methods --markdown`` to regenerate it after adding a method), so the two can never
disagree.
"""

from __future__ import annotations

from ..core.registry import MethodSpec, registered_specs

COLUMNS = (
    "method",
    "gradients",
    "class-specific",
    "passes per image",
    "family",
    "paper",
    "what it shows",
)


def gradients_label(spec: MethodSpec) -> str:
    """Which gradients a method reads: the shared backward (and second derivatives), its own
    passes, guided ones, none."""
    parts = []
    if spec.needs_hessian:
        parts.append("yes (shared backward) + second derivatives")
    elif spec.needs_gradients:
        parts.append("yes (shared backward)")
    elif spec.uses_gradients and not spec.needs_guided_gradients:
        parts.append("yes (own backward passes)")
    if spec.needs_guided_gradients:
        parts.append("guided input gradients")
    return " + ".join(parts) or "no"


def method_rows() -> list[dict[str, str]]:
    """Every registered method as a row of :data:`COLUMNS` (registration order)."""
    return [
        {
            "method": spec.name,
            "family": spec.family,
            "gradients": gradients_label(spec),
            "passes per image": spec.passes_text,
            "class-specific": spec.class_specificity,
            "paper": spec.paper,
            "what it shows": spec.summary,
        }
        for spec in registered_specs()
    ]


def markdown_table() -> str:
    """The rows as a GitHub-flavoured Markdown table (the block in ``docs/methods.md``)."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in method_rows():
        cells = [f"`{row['method']}`", *(row[c] for c in COLUMNS[1:])]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"
