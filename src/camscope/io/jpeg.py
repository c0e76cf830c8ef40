"""A JPEG whose entropy-coded data is too short for the size its header claims is truncated.

libjpeg (and so PIL) fills the rest of a JPEG that ends early with grey and reports nothing when
an end-of-image marker follows: a 641-byte file claiming 9000 x 9000 pixels decodes silently into
243 MB of grey. Huffman-coded JPEGs (baseline, extended and progressive: SOF0-SOF2) must spend at
least one bit on every 8 x 8 block of every component (its DC coefficient is coded in the first
scan whatever the content, ITU-T T.81 F.1.2.1 and G.1.2.1), so a file whose bytes after the first
start-of-scan header number fewer than ``blocks / 8`` cannot hold its picture. This bound is read
from the headers alone, before any decoding. It is loose on purpose: it never refuses an intact
file, and it catches what matters for memory (a tiny file claiming a huge picture); a photo cut in
the middle with its end marker re-added can still decode with a grey band (libjpeg only warns, and
PIL does not pass the warning on).
"""

from __future__ import annotations

from typing import IO

_HUFFMAN_FRAMES = {0xC0, 0xC1, 0xC2}  # baseline, extended sequential, progressive
_OTHER_FRAMES = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # no bound known
_STANDALONE = {0x01, 0xD8} | set(range(0xD0, 0xD8))


def _blocks(frame: bytes) -> int:
    """8 x 8 blocks of all components of a start-of-frame segment (T.81 A.2.1)."""
    if len(frame) < 6:
        return 0
    height = int.from_bytes(frame[1:3], "big")
    width = int.from_bytes(frame[3:5], "big")
    count = frame[5]
    factors = [
        (frame[6 + 3 * i + 1] >> 4, frame[6 + 3 * i + 1] & 15)
        for i in range(count)
        if 6 + 3 * i + 2 < len(frame)
    ]
    if not factors or height == 0 or width == 0:  # height 0: defined later by a DNL marker
        return 0
    h_max = max(h for h, _ in factors) or 1
    v_max = max(v for _, v in factors) or 1
    total = 0
    for h, v in factors:
        columns = -(-width * h // h_max)
        rows = -(-height * v // v_max)
        total += -(-columns // 8) * -(-rows // 8)
    return total


def jpeg_shortfall(handle: IO[bytes]) -> str | None:
    """Why this JPEG cannot hold the picture its header claims, or None (see module docstring).

    Reads the marker segments up to the first start-of-scan; the caller restores the position.
    """
    handle.seek(0, 2)
    size = handle.tell()
    handle.seek(0)
    if handle.read(2) != b"\xff\xd8":
        return None
    blocks = 0
    while True:
        byte = handle.read(1)
        if byte != b"\xff":
            return None  # not a marker where one must be: leave the verdict to the decoder
        marker = handle.read(1)
        while marker == b"\xff":  # fill bytes
            marker = handle.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in _STANDALONE:
            continue
        length_bytes = handle.read(2)
        if len(length_bytes) < 2:
            return None
        payload = handle.read(max(int.from_bytes(length_bytes, "big") - 2, 0))
        if code in _OTHER_FRAMES:
            return None
        if code in _HUFFMAN_FRAMES:
            blocks = _blocks(payload)
        elif code == 0xDA:  # start of scan: entropy-coded data follows
            data = size - handle.tell()
            needed = blocks // 8
            if blocks and data < needed:
                return (
                    f"{data} bytes of image data where {blocks} blocks of 8 x 8 pixels need at "
                    f"least {needed}"
                )
            return None
        elif code == 0xD9:
            return None
