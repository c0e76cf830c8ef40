"""``results.jsonl``: repeated rows counted once, a truncated line skipped (issue 15.8). The
folder's lock and the atomic writer are tested in tests/test_outputs.py."""

from __future__ import annotations

import json

from camscope.evaluation.run import read_rows, scan_rows


def test_read_rows_counts_a_repeated_row_once_and_skips_a_truncated_line(tmp_path):
    path = tmp_path / "results.jsonl"
    rows = [
        {"id": f"i{k}", "method": "gradcam", "layer": "2", "asked_layer": "2"} for k in range(3)
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(text + text + '{"id": "i9", "meth')  # two writers, then a kill
    assert read_rows(path) == rows
    assert scan_rows(path) == (rows, False)
    path.write_text(text)
    assert scan_rows(path) == (rows, True)
