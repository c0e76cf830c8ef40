"""The leaderboard of docs/vit.md from `camscope evaluate` folders, as Markdown.

    python docs/scripts/vit_table.py out/vit-ref/evaluate [out/vit-ref/evaluate-layers ...]

The rows of every folder in order (the first folder's settings head the table), the columns
below, formatted and marked best (bold, floors never) by the report's own rules
(`camscope.evaluation.report.leaderboard_rows`), and the cascading-randomization Spearman with
every unit randomised where the folder ran the sanity check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from camscope.evaluation.report import leaderboard_rows

COLUMNS = [
    "gt_known_loc",
    "pointing",
    "energy",
    "disc_pointing",
    "disc_energy",
    "deletion",
    "insertion",
]


def main(folders: list[str]) -> None:
    summaries = [json.loads((Path(f) / "results.json").read_text()) for f in folders]
    merged = dict(summaries[0])
    merged["columns"] = [c for c in COLUMNS if c in merged["columns"]]
    merged["leaderboard"] = {}
    merged["baselines"] = []
    sanity: dict[str, str] = {}
    for folder, summary in zip(folders, summaries):
        layer = summary["config"]["layers"]
        for name, stats in summary["leaderboard"].items():
            key = name if "@" in name or layer == ["auto"] else f"{name}@{layer[0]}"
            merged["leaderboard"][key] = stats
            if name in summary.get("baselines", ()):
                merged["baselines"].append(key)
        path = Path(folder) / "sanity.json"
        if path.is_file():
            cascade = json.loads(path.read_text())["layers"]
            for result in cascade.values():
                for method, values in result["spearman"].items():
                    sanity[method] = f"{values[-1]:.2f}"
    header, body, flags = leaderboard_rows(merged)
    if sanity:
        header.append("Sanity ρ, all randomised")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cells, marks in zip(body, flags):
        shown = [f"**{c}**" if bold else c for c, bold in zip(cells, marks)]
        entry, _, floor = cells[0].partition(" ")  # "randomcam (floor)"
        shown[0] = f"`{entry}` {floor}".strip()
        if sanity:
            shown.append(sanity.get(entry, "-"))
        print("| " + " | ".join(shown) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
