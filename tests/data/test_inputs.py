"""camscope.data.inputs: folders expanded into image files in a stable order, the demo images,
plain image arguments as samples."""

from __future__ import annotations

from pathlib import Path

from camscope.data.inputs import DEMO_IMAGES, collect_inputs, demo_images

# ---------------------------------------------------------------------------- collect_inputs


def test_collect_inputs(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "zz").mkdir()
    for rel in ["b.PNG", "a.jpg", "notes.txt", "sub/c.jpeg", "sub/deeper/d.TIF", "zz/e.webp"]:
        (root / rel).write_bytes(b"x")
    url = "https://example.com/cat.jpg"
    items = [str(root), str(tmp_path / "missing.jpg"), url, str(root / "a.jpg"), url]
    assert collect_inputs(items) == [
        str(root / "a.jpg"),
        str(root / "b.PNG"),
        str(root / "sub" / "c.jpeg"),
        str(root / "sub" / "deeper" / "d.TIF"),
        str(root / "zz" / "e.webp"),
        str(tmp_path / "missing.jpg"),
        url,
    ]


def test_collect_inputs_keeps_given_order_of_items(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"x")
    (tmp_path / "a.png").write_bytes(b"x")
    given = [str(tmp_path / "x.png"), str(tmp_path / "a.png")]
    assert collect_inputs(given) == given


# ---------------------------------------------------------------------------- demo


def test_demo_images() -> None:
    demos = demo_images()
    assert [name for name, _ in demos] == list(DEMO_IMAGES)
    sizes = {name: image.size for name, image in demos}
    assert sizes["chelsea"] == (451, 300)
    assert sizes["astronaut"] == (512, 512)
    assert all(image.mode == "RGB" for _, image in demos)
