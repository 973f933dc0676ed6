"""What demo-vision sees: data URLs decoded, image formats and pixel sizes read.

Only headers are read (PNG IHDR, GIF logical screen, JPEG SOF, WEBP VP8/VP8L/
VP8X), so any image size costs the same. Pure functions, no image library.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

__all__ = ["ImageInfo", "describe", "image_size", "read_data_url"]


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """One image as received: declared MIME, byte length, format and size."""

    mime: str
    length: int
    format: str = ""
    width: int = 0
    height: int = 0
    problem: str = ""

    def describe(self) -> str:
        if self.problem:
            return self.problem
        text = f"{self.mime}, {self.length} bytes"
        if self.format:
            text += f", {self.format} {self.width}×{self.height} pixels"
        else:
            text += ", in a format the demo cannot read"
        return text


def read_data_url(url: str) -> ImageInfo:
    """Decode `data:<mime>;base64,<data>` and read the image header."""
    if not url.startswith("data:"):
        scheme = url.split(":", 1)[0] if ":" in url else "a relative"
        return ImageInfo(
            "", 0, problem=f"a {scheme} URL, which the demo does not fetch"
        )
    header, _, payload = url[5:].partition(",")
    mime = header.split(";", 1)[0] or "text/plain"
    if not header.endswith(";base64"):
        return ImageInfo(mime, len(payload), problem="not base64-encoded")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return ImageInfo(mime, 0, problem=f"{mime}, but its base64 data is invalid")
    found = image_size(data)
    if found is None:
        return ImageInfo(mime, len(data))
    kind, width, height = found
    return ImageInfo(mime, len(data), kind, width, height)


def describe(images: list[ImageInfo]) -> str:
    """demo-vision's answer."""
    if not images:
        return (
            "I received no image. Attach one (Ollama `images`, base64) and I will "
            "tell you its type, its size in bytes and its width and height."
        )
    count = "1 image" if len(images) == 1 else f"{len(images)} images"
    lines = [f"I received {count}."]
    lines += [f"Image {i}: {image.describe()}." for i, image in enumerate(images, 1)]
    return "\n".join(lines)


def image_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) from the header of a PNG, GIF, JPEG or WEBP."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return "PNG", width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return "GIF", width, height
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    return None


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) do not.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[str, int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # no length field
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF and i + 9 <= len(data):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return "JPEG", width, height
        i += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[str, int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return "WEBP", width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        (bits,) = struct.unpack("<I", data[21:25])
        return "WEBP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return "WEBP", width, height
    return None
