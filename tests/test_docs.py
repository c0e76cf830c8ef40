"""``docs/methods.md`` holds the table ``camscope methods --markdown`` prints, made from the registry."""

from __future__ import annotations

import re
from pathlib import Path

from camscope import get_method, list_methods
from camscope.methods.table import markdown_table

DOCS = Path(__file__).resolve().parents[1] / "docs" / "methods.md"
BLOCK = re.compile(
    r"<!-- generated: camscope methods --markdown -->\n(.*?)<!-- end generated -->", re.DOTALL
)


def documented_methods() -> list[str]:
    rows = re.findall(r"^\| `([^`]+)` \|", DOCS.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return rows


def test_docs_table_is_the_generated_table() -> None:
    match = BLOCK.search(DOCS.read_text(encoding="utf-8"))
    assert match is not None, "docs/methods.md lost its generated block"
    assert match.group(1) == markdown_table(), "run `camscope methods --markdown` and paste it"


def test_every_registered_method_has_one_docs_line() -> None:
    documented = documented_methods()
    assert sorted(documented) == sorted(list_methods())
    assert len(documented) == len(set(documented))


def test_the_registry_states_the_facts_people_asked_about() -> None:
    # smoothgradcam++ differentiates noisy copies itself; guided backprop barely depends on the
    # class (Adebayo et al. 2018); Eigen-CAM not at all
    assert get_method("smoothgradcam++").uses_gradients
    assert not get_method("smoothgradcam++").needs_gradients
    assert get_method("guided-backprop").class_specificity == "weakly"
    assert get_method("guided-backprop").class_specific is True  # depends on it, barely
    assert get_method("eigencam").class_specificity == "no"
    assert get_method("eigencam").class_specific is False
    assert get_method("gradcam").class_specificity == "yes"
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `([^`]+)` \|", line)
        if match:
            assert get_method(match.group(1)).paper in line, match.group(1)


EVALUATION = DOCS.parent / "evaluation.md"
COLUMNS_BLOCK = re.compile(
    r"<!-- generated: camscope.evaluation.registry.markdown_table\(\) -->\n(.*?)<!-- end generated -->",
    re.DOTALL,
)


def test_the_evaluation_columns_table_is_the_registry() -> None:
    from camscope.evaluation.registry import markdown_table

    match = COLUMNS_BLOCK.search(EVALUATION.read_text(encoding="utf-8"))
    assert match is not None, "docs/evaluation.md lost its generated columns table"
    assert match.group(1) == markdown_table(), "paste camscope.evaluation.registry.markdown_table()"


def test_every_metric_family_has_its_protocol_in_the_docs() -> None:
    from camscope.evaluation.registry import family_names

    text = EVALUATION.read_text(encoding="utf-8")
    protocols = text[text.index("## The protocols, exactly") : text.index("### The columns")]
    described = re.findall(r"^\| `([a-z]+)`", protocols, flags=re.MULTILINE)
    described += re.findall(r"^\| `[a-z]+` / `([a-z]+)`", protocols, flags=re.MULTILINE)
    assert sorted(set(described)) == sorted(family_names())
