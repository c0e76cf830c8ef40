"""Print the reference tables of docs/diagnosis.md from the folder diagnosis_reference.sh wrote.

python docs/scripts/diagnosis_tables.py out/diagnosis-ref
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ROBUSTNESS = (
    ("max_sensitivity", "Max-sens. ↓"),
    ("avg_sensitivity", "Avg-sens. ↓"),
    ("lipschitz", "Lipschitz ↓"),
    ("topk_intersection", "Top-k ∩ % ↑"),
    ("com_shift", "CoM shift px ↓"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    runs = {
        (attack, eps): json.loads(
            (args.folder / f"{attack}-{eps}" / "adversarial.json").read_text()
        )
        for attack in ("fgsm", "pgd")
        for eps in (1, 2)
    }
    print(attack_table(runs))
    print()
    print(similarity_table(runs["fgsm", 2], runs["pgd", 2]))
    print()
    print(robustness_table(args.folder / "robustness" / "results.json"))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def attack_table(runs: dict[tuple[str, int], dict[str, Any]]) -> str:
    lines = [
        "| attack | eps | images | success | success (8-bit) | clean p | original class's p after |",
        "|---|---|---|---|---|---|---|",
    ]
    for (attack, eps), run in runs.items():
        images = run["images"]
        clean = _mean([r["clean_probability"] for r in images])
        after = _mean([r["original_probability_adversarial"] for r in images])
        lines.append(
            f"| {attack.upper()}{'-10' if attack == 'pgd' else ''} | {eps}/255 | {len(images)} | "
            f"{100 * run['success_rate']:.0f}% | {100 * run['success_rate_8bit']:.0f}% | "
            f"{clean:.2f} | {after:.3f} |"
        )
    return "\n".join(lines)


def similarity_table(fgsm: dict[str, Any], pgd: dict[str, Any]) -> str:
    """Per method: how similar the original class's map stays, ranked by PGD's Spearman."""
    methods = sorted(
        pgd["similarity_by_method"],
        key=lambda m: -(pgd["similarity_by_method"][m]["spearman"] or 0.0),
    )
    lines = [
        "| rank | method | FGSM Spearman | FGSM top-15% IoU | PGD Spearman | PGD top-15% IoU "
        "| pointing clean | pointing after PGD |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rank, m in enumerate(methods, 1):
        f, p = fgsm["similarity_by_method"][m], pgd["similarity_by_method"][m]
        lines.append(
            f"| {rank} | `{m}` | {f['spearman']:.2f} | {f['top15_iou']:.2f} | "
            f"{p['spearman']:.2f} | {p['top15_iou']:.2f} | "
            f"{100 * p['pointing_clean']:.0f}% | {100 * p['pointing_adversarial']:.0f}% |"
        )
    return "\n".join(lines)


def _leaderboard(data: Any) -> dict[str, Any]:
    if isinstance(data, dict):
        if "leaderboard" in data:
            return dict(data["leaderboard"])
        for value in data.values():
            found = _leaderboard(value)
            if found:
                return found
    return {}


def robustness_table(results: Path) -> str:
    board = _leaderboard(json.loads(results.read_text()))
    ranked = sorted(board, key=lambda m: board[m]["avg_sensitivity"]["mean"])
    lines = [
        "| rank | method | " + " | ".join(title for _, title in ROBUSTNESS) + " |",
        "|---|---|" + "---|" * len(ROBUSTNESS),
    ]
    for rank, m in enumerate(ranked, 1):
        cells = []
        for key, _ in ROBUSTNESS:
            stats = board[m].get(key) or {}
            mean = stats.get("mean")
            cells.append("n/a" if mean is None else f"{mean:.2f}")
        lines.append(f"| {rank} | `{m}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
