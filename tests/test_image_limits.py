"""One image reader with byte and pixel limits, used by ImageFolder, predict, viz and the server."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cnnkit.data import ImageFolder
from cnnkit.data.image_file import MAX_PIXELS, ImageInputError, read_image
from cnnkit.viz import prepare_image


def chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header(width, height):
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IEND", b""))


def encoded(size=(8, 8), file_format="PNG", **options):
    buffer = io.BytesIO()
    Image.new("L", size, 200).save(buffer, format=file_format, **options)
    return buffer.getvalue()


REFUSED = {
    "PNG declaring 60000 x 60000": (png_header(60000, 60000), "image too large: 60000 x 60000"),
    "PNG declaring 4097 x 4096": (png_header(4097, 4096), "image too large: 4097 x 4096"),
    "PNG declaring 2**31 - 1 wide": (png_header(2 ** 31 - 1, 1), "image too large"),
    "a real 5000 x 5000 PNG": (encoded((5000, 5000)), "image too large: 5000 x 5000"),
    "TIFF of 4100 x 4100": (encoded((4100, 4100), "TIFF"), "image too large: 4100 x 4100"),
    "huge zTXt chunk": (encoded()[:33] + chunk(b"zTXt", b"k\x00\x00" + zlib.compress(b"x" * (2 << 20)))
                        + encoded()[33:], "text chunk"),
    "random bytes": (bytes(range(256)) * 4, "not an image"),
    "empty": (b"", "empty"),
    "a JPEG cut in half": (encoded((64, 64), "JPEG")[:300], "image"),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_bad_pictures_give_one_clear_line(name):
    data, words = REFUSED[name]
    with pytest.raises(ImageInputError, match=words) as caught:
        read_image(data)
    assert "\n" not in str(caught.value) and "0x" not in str(caught.value)


def test_limits_are_exact_and_pictures_within_them_load():
    assert read_image(encoded((4096, 1))).size == (4096, 1)
    assert read_image(encoded((16, 16), "JPEG")).mode == "L"
    with pytest.raises(ImageInputError, match="damaged"):  # passes the size check, then has no pixel data
        read_image(png_header(4096, 4096))
    with pytest.raises(ImageInputError, match=f"limit {MAX_PIXELS} pixels \\(4096 x 4096\\)"):
        read_image(png_header(4096, 4097))
    with pytest.raises(ImageInputError, match="8 x 8 pixels, limit 63 pixels$"):
        read_image(encoded((8, 8)), max_pixels=63)
    with pytest.raises(ImageInputError, match="limit 10 bytes"):
        read_image(encoded((8, 8)), max_bytes=10)


def test_files_name_themselves_and_the_byte_limit_is_checked_before_reading(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(encoded((8, 8)) + b"\x00" * 4096)  # trailing bytes: Pillow ignores them
    with pytest.raises(ImageInputError, match=f"{path} is .* bytes, limit 100 bytes"):
        read_image(path, max_bytes=100)
    with pytest.raises(ImageInputError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageInputError, match="cannot read image .*: Is a directory"):
        read_image(tmp_path)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(30000, 30000))
    with pytest.raises(ImageInputError, match=f"image too large: 30000 x 30000 .*{bomb.name}"):
        read_image(bomb)


def test_image_folder_uses_the_same_limits(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        Image.new("L", (8, 8), 100).save(tmp_path / name / "0.png")
    (tmp_path / "dog" / "1.png").write_bytes(png_header(50000, 50000))
    folder = ImageFolder(tmp_path)
    assert folder[0][0].shape == (8, 8)
    with pytest.raises(ImageInputError, match="ImageFolder: image too large: 50000 x 50000"):
        folder[2]


def test_viz_uses_the_same_limits():
    with pytest.raises(ImageInputError, match="image too large: 9000 x 9000"):
        prepare_image(png_header(9000, 9000), (28, 28))
    assert prepare_image(encoded((40, 40)), (28, 28)).array.shape == (1, 28, 28)
    assert np.isfinite(prepare_image(encoded((40, 40)), (28, 28)).array).all()
