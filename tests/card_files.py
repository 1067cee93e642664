"""Card files as other tools write them, built in tests (no files from elsewhere)."""

from __future__ import annotations

import base64
import io
import struct
import zlib

from PIL import Image


def png_with_text_chunks(chunks: dict[bytes, bytes], colour: str = "white") -> bytes:
    """A 4x4 PNG carrying each payload base64-encoded in a tEXt chunk under its keyword, as
    SillyTavern and other card tools write `chara` (V2) and `ccv3` (V3) cards."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(buffer, format="PNG")
    png = buffer.getvalue()
    extra = b""
    for keyword, payload in chunks.items():
        body = keyword + b"\x00" + base64.b64encode(payload)
        extra += struct.pack(">I", len(body)) + b"tEXt" + body
        extra += struct.pack(">I", zlib.crc32(b"tEXt" + body))
    iend = png.rindex(b"IEND") - 4
    return png[:iend] + extra + png[iend:]
