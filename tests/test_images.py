"""Image decoding and limits: refused from the header, before pixels are allocated."""

import pytest

from securegate import errors

from vision import images
from tests import hostile

LIMIT = 40_000_000


def test_real_photos_decode_to_bgr(manifest):
    for row in manifest:
        pixels = images.decode(row["file"].read_bytes(), LIMIT)
        assert pixels.ndim == 3 and pixels.shape[2] == 3, row["file"]


def test_rgba_png_drops_alpha(faces_root):
    pixels = images.decode((faces_root / "scenes" / "rgba_32bit.png").read_bytes(), LIMIT)
    assert pixels.shape[2] == 3


def test_header_over_the_pixel_limit_is_refused_without_decoding():
    with pytest.raises(errors.ImageTooLarge) as info:
        images.decode(hostile.png_header_only(20000, 20000), LIMIT)
    assert info.value.details["width"] == 20000


def test_decompression_bomb_is_refused():
    bomb = hostile.decompression_bomb()
    assert len(bomb) < 1_000_000
    with pytest.raises(errors.ImageTooLarge):
        images.decode(bomb, 50_000_000)


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n"], ids=["empty", "text", "png-magic-only"])
def test_non_images_are_invalid(data):
    with pytest.raises(errors.InvalidImage):
        images.decode(data, LIMIT)


def test_truncated_files(faces_root):
    png = (faces_root / "scenes" / "lin_manuel_miranda.png").read_bytes()
    with pytest.raises(errors.InvalidImage):
        images.decode(png[: len(png) // 3], LIMIT)
    jpeg = (faces_root / "identities" / "obama" / "obama_1.jpg").read_bytes()
    # libjpeg decodes a truncated JPEG's first part (grey below): either a picture or a clean 400, never a crash.
    try:
        assert images.decode(jpeg[: len(jpeg) // 2], LIMIT).shape[2] == 3
    except errors.InvalidImage:
        pass


def test_one_pixel_image_is_invalid():
    with pytest.raises(errors.InvalidImage, match="too small"):
        images.decode(hostile.one_pixel(), LIMIT)


def test_base64():
    assert images.b64decode("aGk=") == b"hi"
    for bad in ("***", "", "a"):
        with pytest.raises(errors.InvalidImage):
            images.b64decode(bad)
