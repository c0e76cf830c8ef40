"""The evaluation report: ``report.html`` (self-contained) and ``report.md``.

Content: a short verdict (:func:`camscope.evaluation.summary.verdict`), the leaderboard (methods x
metrics, the better direction marked with an arrow and every value that ties for the best of its
column, as printed, in bold), mean deletion / insertion curves, one bar chart per metric with its
asymmetric 95% intervals over images, the sanity-check table when it was run, the images that were
skipped and why, the cost of the run, and example grids of each method's worst and best images
(ground-truth boxes drawn in).

Text that comes from the user (model name, data path, class and layer names) is escaped in both
reports: HTML-escaped in ``report.html``, and in ``report.md`` HTML-escaped with Markdown's
punctuation backslash-escaped, so a name cannot inject markup or links. Figure titles are drawn
as plain text (no matplotlib mathtext, so a ``$`` in a class name is just a dollar sign).

Charts are drawn with matplotlib's Agg canvas (``matplotlib.figure.Figure``, no pyplot state) to
PNG; the HTML (the ``evaluation.html`` template, :func:`camscope.outputs.render_page`) embeds them
as base64 ``data:`` URIs so the file can be mailed or opened offline; the Markdown report links
the same PNGs, written to ``figures/`` beside it.

Example:
    >>> write_report("out/eval", summary, examples, title="efficientnet_lite0")  # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..io.preprocess import resize_map
from ..outputs import encoded, render_page, write_atomic
from ..viz import chart_colour, overlay
from ..viz.boxes import GREEN, Box, draw_boxes
from .summary import best_entries, column_decimals, shown, verdict


def _png(fig: Any) -> bytes:
    return encoded(fig, "png", dpi=110, bbox_inches="tight")


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))  # savefig draws it on an Agg canvas


def curves_figure(curves: dict[str, dict[str, list[float]]]) -> bytes | None:
    """Mean deletion and insertion curves, one line per method; None when there are none."""
    modes = [m for m in ("deletion", "insertion") if any(m in c for c in curves.values())]
    if not modes:
        return None
    fig = _new_figure(5.2 * len(modes), 3.6)
    for k, mode in enumerate(modes):
        ax = fig.add_subplot(1, len(modes), k + 1)
        for i, (name, c) in enumerate(curves.items()):
            if mode in c:
                ys = np.asarray(c[mode])
                xs = np.linspace(0, 1, len(ys))
                auc = float(np.sum(ys[1:] + ys[:-1]) / (2 * (len(ys) - 1)))
                label = f"{name} ({auc:.3f})".replace("$", r"\$")
                ax.plot(xs, ys, color=chart_colour(i), label=label)
        better = "lower" if mode == "deletion" else "higher"
        ax.set_title(f"{mode.capitalize()} (AUC {better} is better)")
        ax.set_xlabel("fraction of pixels " + ("removed" if mode == "deletion" else "inserted"))
        ax.set_ylabel("class probability")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(fig)


def bar_figure(summary: dict[str, Any], key: str) -> bytes:
    """One metric: a bar per method with its (asymmetric) 95% interval as error bars."""
    info = summary["column_info"][key]
    board = summary["leaderboard"]
    names = [n for n in board if key in board[n]]
    means = [board[n][key]["mean"] for n in names]
    below, above = error_bars(summary, key)
    fig = _new_figure(max(4.0, 0.55 * len(names) + 1.5), 3.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(
        range(len(names)),
        means,
        yerr=[below, above],
        capsize=3,
        color=[chart_colour(i) for i in range(len(names))],
    )
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8, parse_math=False)
    arrow = "↑ higher is better" if info["higher_is_better"] else "↓ lower is better"
    ax.set_title(f"{info['title']} ({arrow}; 95% interval)", fontsize=9, parse_math=False)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def error_bars(summary: dict[str, Any], key: str) -> tuple[list[float], list[float]]:
    """Distances from each mean down to its interval's low end and up to its high end (0 where
    there is no interval), as matplotlib's ``yerr=[below, above]`` wants them."""
    board = summary["leaderboard"]
    below, above = [], []
    for n in (n for n in board if key in board[n]):
        s = board[n][key]
        low, high = s.get("low", math.nan), s.get("high", math.nan)
        below.append(0.0 if math.isnan(low) else max(0.0, s["mean"] - low))
        above.append(0.0 if math.isnan(high) else max(0.0, high - s["mean"]))
    return below, above


def examples_figure(method: str, items: list[dict[str, Any]]) -> bytes:
    """A row of overlays (map on image, ground-truth boxes in green) with each image's score."""
    fig = _new_figure(2.0 * max(1, len(items)), 2.4)
    for k, item in enumerate(items):
        ax = fig.add_subplot(1, len(items), k + 1)
        base = Image.fromarray(item["image"])
        heat = resize_map(np.asarray(item["map"]), (base.height, base.width))
        ground_truth = [Box((x0, y0, x1 - 1, y1 - 1)) for x0, y0, x1, y1 in item["boxes"]]
        pic = draw_boxes(overlay(base, heat, alpha=0.5), ground_truth, colour=GREEN, width=2)
        ax.imshow(np.asarray(pic))
        ax.set_axis_off()
        tag = "worst" if k < len(items) / 2 else "best"
        ax.set_title(
            f"{tag}: {item['metric']} {item['score']:.2f}\n{item.get('target', '')}"[:60],
            fontsize=7,
            parse_math=False,
        )
    fig.suptitle(method, fontsize=9, parse_math=False)
    return _png(fig)


def sanity_figure(sanity: dict[str, Any]) -> bytes | None:
    """Spearman similarity to the trained model's maps along the randomization cascade."""
    layers = sanity.get("layers", {}) if sanity else {}
    if not layers:
        return None
    fig = _new_figure(5.5 * len(layers), 3.4)
    for k, (layer, data) in enumerate(layers.items()):
        ax = fig.add_subplot(1, len(layers), k + 1)
        for i, (name, vals) in enumerate(data["spearman"].items()):
            ax.plot(
                range(len(vals)), vals, marker="o", color=chart_colour(i),
                label=name.replace("$", r"\$"),
            )  # fmt: skip
        ax.set_xticks(range(len(data["steps"])))
        ax.set_xticklabels(data["steps"], rotation=45, ha="right", fontsize=7, parse_math=False)
        ax.axhline(sanity.get("fail_below", 0.5), color="grey", ls="--", lw=1)
        ax.set_ylim(-0.3, 1.05)
        ax.set_title(
            f"Cascading randomization at {layer} (lower = more sensitive)", fontsize=8,
            parse_math=False,
        )  # fmt: skip
        ax.set_ylabel("Spearman vs trained")
        ax.legend(fontsize=6)
    return _png(fig)


def leaderboard_rows(
    summary: dict[str, Any],
) -> tuple[list[str], list[list[str]], list[list[bool]]]:
    """Header cells, body cells and "best in column" flags of the leaderboard."""
    cols = summary["columns"]
    info = summary["column_info"]
    header = ["method"] + [
        f"{info[c]['title']} {'↑' if info[c]['higher_is_better'] else '↓'}" for c in cols
    ]
    best = {c: best_entries(summary, c) for c in cols}
    places = {c: column_decimals(summary, c) for c in cols}
    body, flags = [], []
    floors = set(summary.get("baselines") or ())  # baseline methods: the floor, never best
    for name, stats in summary["leaderboard"].items():
        label = f"{name} (floor)" if name in floors else name
        body.append([label] + [shown(stats[c], places[c]) if stats.get(c) else "–" for c in cols])
        flags.append([False] + [name in best[c] for c in cols])
    return header, body, flags


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#!|~$])")


def md_escape(text: object) -> str:
    r"""Plain text for Markdown: one line, HTML-escaped, Markdown punctuation backslash-escaped.

    >>> md_escape("a*b <script> [x](y)")
    'a\\*b &lt;script&gt; \\[x\\]\\(y\\)'
    """
    flat = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(flat, quote=False))


def intro_lines(summary: dict[str, Any]) -> list[str]:
    """The lines under the title: data size, how to read the table, what was left out, cost."""
    acc = summary.get("top1_accuracy")
    lines = [
        f"{summary.get('images', 0)} images; model top-1 accuracy on them: "
        + (f"{acc:.1f}%" if acc is not None and not math.isnan(acc) else "n/a"),
        "Values are means over images with a 95% interval in brackets: Wilson score intervals for "
        "the hit-or-miss columns (localization error, GT-known loc., pointing, Increase in "
        "Confidence), percentile bootstrap intervals (2,000 resamples, seed 0) for the others. "
        "↑ higher is better, ↓ lower is better; every value that ties for the best of its column "
        "(as printed) is bold. Win %: methods within "
        f"{summary.get('win_tie_tolerance', 0.01):g} points of the lowest signed drop share the win.",
    ]
    low = summary.get("low_confidence") or {}
    if low.get("images"):
        lines.append(
            f"{low['images']} image(s) whose explained class has p < {low['threshold']:g} are left "
            f"out of {', '.join(low['columns'])} (relative changes of such a probability say "
            "nothing about the map); they count in every other column."
        )
    failed = summary.get("failed") or []
    if failed:
        lines.append(
            f"{len(failed)} image(s) could not be evaluated and were skipped (listed below)."
        )
    timing = summary.get("timing") or {}
    if timing:
        lines.append(
            f"Run time {timing.get('seconds_total', 0):.0f} s for {timing.get('images', 0)} images "
            f"({timing.get('seconds_per_image', 0):.2f} s/image); metric forward passes: "
            f"{timing.get('metric_forward_images', 0)} images in {timing.get('metric_forward_seconds', 0):.0f} s; "
            f"metric work beyond forward passes: {timing.get('metric_overhead_seconds', 0):.0f} s."
        )
    return lines


@dataclass(frozen=True)
class _Page:
    """What the HTML and the Markdown report show, in page order."""

    title: str
    intro: list[str]
    verdict_lines: list[str]
    header: list[str]
    body: list[list[str]]
    flags: list[list[bool]]
    sanity: dict[str, Any] | None
    failed: list[dict[str, str]]
    sections: dict[str, list[tuple[str, bytes]]]  # heading -> (file name, PNG) of its figures


def _nan_for_null(value: Any) -> Any:
    """``results.json`` stores NaN as null (JSON has none); the report computes with NaN."""
    if isinstance(value, dict):
        return {key: _nan_for_null(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan_for_null(item) for item in value]
    return math.nan if value is None else value


def write_report(
    out_dir: str | Path,
    summary: dict[str, Any],
    examples: dict[str, list[dict[str, Any]]] | None = None,
    title: str = "camscope evaluation",
    notes: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (with ``figures/*.png``) to ``out_dir``.

    Args:
        summary: :func:`camscope.evaluation.summarise` output plus optional ``sanity``,
            ``timing`` and ``failed`` entries (as in ``results.json``).
        examples: :func:`camscope.evaluation.collect_examples` output.
        title: page title (escaped).
        notes: extra lines (protocol settings) printed under the title (escaped).

    Returns:
        The paths of the HTML and the Markdown report.
    """
    out = Path(out_dir)
    figdir = out / "figures"
    figdir.mkdir(parents=True, exist_ok=True)
    numbers = ("leaderboard", "curves", "sanity", "top1_accuracy")
    # a top-level null is "not measured" (no sanity run, no accuracy), not a NaN
    summary = {
        **summary,
        **{k: _nan_for_null(summary[k]) for k in numbers if summary.get(k) is not None},
    }
    sanity = summary.get("sanity")
    curves = curves_figure(summary.get("curves", {}))
    figures: list[tuple[str, str, bytes | None]] = [
        ("Deletion and insertion curves", "curves.png", curves)
    ]
    for key in summary["columns"]:
        figures.append(("Per-metric comparison", f"bar_{key}.png", bar_figure(summary, key)))
    figures.append(
        ("Randomization cascade", "sanity.png", sanity_figure(sanity) if sanity else None)
    )
    for method, items in (examples or {}).items():
        if items:
            safe = "".join(ch if ch.isalnum() else "_" for ch in method)
            grid = examples_figure(method, items)
            figures.append(
                ("Examples: worst and best images per method", f"examples_{safe}.png", grid)
            )
    sections: dict[str, list[tuple[str, bytes]]] = {}  # the figures that were drawn
    for heading, name, png in figures:
        if png:
            write_atomic(figdir / name, png, durable=False)
            sections.setdefault(heading, []).append((name, png))
    header, body, flags = leaderboard_rows(summary)
    intro = [*intro_lines(summary), *notes]
    failed = summary.get("failed") or []
    page = _Page(title, intro, verdict(summary), header, body, flags, sanity, failed, sections)
    cells = [list(zip(row, flag)) for row, flag in zip(body, flags)]
    html_page = render_page(
        "evaluation.html", title=title, page=page, cells=cells, sections=sections.items()
    )
    return write_atomic(out / "report.html", html_page), write_atomic(
        out / "report.md", _markdown(page)
    )


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(cells) + " |" for cells in [header, *rows]]
    return [lines[0], "|" + "---|" * len(header), *lines[1:]]


def _markdown(page: _Page) -> str:
    m = md_escape
    md = [f"# {m(page.title)}", "", *[f"{m(line)}  " for line in page.intro], ""]
    if page.verdict_lines:
        md += [
            "## Verdict for this model and data",
            "",
            *[f"* {m(line)}" for line in page.verdict_lines],
            "",
        ]
    md += ["## Leaderboard", ""]
    rows = []
    for row, flag in zip(page.body, page.flags):
        cells = [m(row[0]), *row[1:]]  # the name is the user's; the numbers are ours
        rows.append([f"**{c}**" if f else c for c, f in zip(cells, flag)])
    md += _md_table([m(h) for h in page.header], rows)
    if page.sanity and page.sanity.get("layers"):
        md += ["", "## Sanity check (cascading randomization)", ""]
        rows = [
            [
                m(layer),
                m(name),
                f"{data['spearman'][name][-1]:.3f}",
                f"{data['ssim'][name][-1]:.3f}",
                "pass" if ok else "FAIL",
            ]
            for layer, data in page.sanity["layers"].items()
            for name, ok in data["passed"].items()
        ]
        md += _md_table(["layer", "method", "Spearman", "SSIM", "verdict"], rows)
    if page.failed:
        md += ["", "## Skipped images", ""]
        md += _md_table(
            ["image", "reason"], [[m(f["source"]), m(f["reason"])] for f in page.failed]
        )
    for heading, figures in page.sections.items():
        md += ["", f"## {heading}", "", *[f"![{m(name)}](figures/{name})" for name, _ in figures]]
    return "\n".join(md) + "\n"
