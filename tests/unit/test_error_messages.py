"""Error texts say what the user sent and the project's own limit: no Python reprs, no library's limits."""
from __future__ import annotations

import struct
import zlib

import pytest

from backend.auth import mask_query_secrets
from backend.errors import InvalidImage, PayloadTooLarge
from backend.pipelines.animation.pipeline import image_size


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("data", [b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"GIF89a\x00"])
def test_an_unreadable_image_is_described_without_a_repr(data) -> None:
    with pytest.raises(InvalidImage) as caught:
        image_size(data, max_pixels=1_000_000)
    message = caught.value.message
    assert "<" not in message and "0x" not in message and "BytesIO" not in message
    assert f"{len(data)} bytes" in message


@pytest.mark.parametrize("size", [(50_000, 50_000), (2_000, 1_000)], ids=["beyond-pil-bomb-limit", "beyond-ours"])
def test_a_decompression_bomb_cites_max_image_pixels_and_the_size_sent(size) -> None:
    width, height = size
    with pytest.raises(PayloadTooLarge) as caught:
        image_size(_png_header(width, height), max_pixels=1_000_000)
    message = caught.value.message
    assert f"{width}x{height} pixels" in message and "1000000 pixel limit (MAX_IMAGE_PIXELS)" in message
    assert "could be decompression bomb" not in message  # PIL's text (and its own limit) is not shown


def test_a_limit_above_pils_own_is_ours_to_apply() -> None:
    assert image_size(_png_header(10_000, 10_000), max_pixels=200_000_000) == (10_000, 10_000)


@pytest.mark.parametrize(("line", "masked"), [
    ("GET /api/models?api_key=abc&x=1 HTTP/1.1", "GET /api/models?api_key=***&x=1 HTTP/1.1"),
    ("GET /a?x=1&token=t&KEY=k;apikey=z HTTP/1.1", "GET /a?x=1&token=***&KEY=***;apikey=***"),
    ("GET /a?access_token=abc#frag", "GET /a?access_token=***#frag"),
    ("GET /a?voice=af_heart HTTP/1.1", "GET /a?voice=af_heart HTTP/1.1"),
    ("GET /key=path/no-query HTTP/1.1", "GET /key=path/no-query HTTP/1.1"),
])
def test_the_access_log_masks_key_and_token_query_values(line, masked) -> None:
    assert mask_query_secrets(line).startswith(masked)
