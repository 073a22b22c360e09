"""Reading a user's files and preparing them like MNIST: every format quirk and every bad input."""

import struct

import numpy as np
import pytest
from PIL import Image, ImageFilter

from seqlstm import InputError
from seqlstm.data.digits import mnist_style
from seqlstm.data.userfiles import MAX_PIXELS
from seqlstm.prediction import prepare_file


def ink_picture(size=120) -> np.ndarray:
    """uint8 (size, size): a thick dark-grey '7' on light-grey paper, off centre, soft-edged."""
    paper = np.full((size, size), 235, dtype=np.uint8)
    paper[20:32, 30:100] = 30  # the bar
    for row in range(32, 110):  # the stem, slanting left as it goes down
        col = 95 - (row - 32) // 2
        paper[row, col - 6 : col + 6] = 30
    # Grey levels everywhere in between, as a real pen and camera make them.
    return np.asarray(Image.fromarray(paper).filter(ImageFilter.GaussianBlur(2)))


@pytest.fixture
def seven(tmp_path) -> tuple[np.ndarray, np.ndarray]:
    """The drawing and what the preparation makes of it as an 8-bit grayscale PNG."""
    path = tmp_path / "seven.png"
    Image.fromarray(ink_picture()).save(path)
    return ink_picture(), prepare_file(path)


def test_preparation_matches_mnist_conventions(seven):
    _, prepared = seven
    assert prepared.shape == (28, 28) and prepared.dtype == np.uint8
    rows, cols = np.nonzero(prepared)
    # The longer side of the ink's box is 20 px (anti-aliasing may add a faint pixel at an edge).
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (20, 21)
    # Ink is bright on black, and its centre of mass is on pixel (14, 14) within rounding.
    assert prepared[0, 0] == 0 and prepared.max() == 255
    mass = prepared.astype(float) / prepared.sum()
    assert abs((mass.sum(axis=1) * np.arange(28)).sum() - 14) <= 0.5
    assert abs((mass.sum(axis=0) * np.arange(28)).sum() - 14) <= 0.5


def test_either_polarity_gives_the_same_frame(seven):
    drawing, prepared = seven
    assert np.array_equal(mnist_style(255 - drawing), prepared)


def test_paper_noise_and_specks_are_suppressed(seven):
    drawing, prepared = seven
    rng = np.random.default_rng(0)
    noisy = np.clip(drawing.astype(int) - 20 + rng.normal(0, 8, drawing.shape), 0, 255).astype(np.uint8)
    noisy[2, 2] = noisy[115, 3] = 0  # two dust specks far from the digit
    again = mnist_style(noisy)
    assert np.abs(again.astype(int) - prepared).mean() < 4


def test_sixteen_bit_palette_transparent_and_animated_images(tmp_path, seven):
    drawing, prepared = seven
    ink = 255 - drawing

    deep = tmp_path / "deep.png"
    Image.fromarray(drawing.astype(np.uint16) * 257).save(deep)
    assert Image.open(deep).mode.startswith("I")

    palette = tmp_path / "palette.png"
    image = Image.frombytes("P", (drawing.shape[1], drawing.shape[0]), ink.tobytes())
    # Palette entry i is the gray 255 - i: the stored indices are ink, the colours are the drawing.
    image.putpalette([255 - i for i in range(256) for _ in range(3)])
    image.save(palette)

    transparent = tmp_path / "transparent.png"
    rgba = np.zeros(drawing.shape + (4,), dtype=np.uint8)
    rgba[..., 3] = ink  # black paint whose opacity is the ink; the paper is fully transparent
    Image.fromarray(rgba).save(transparent)

    animated = tmp_path / "animated.gif"
    other = Image.fromarray(np.full_like(drawing, 255))
    other.paste(0, (10, 10, 60, 60))
    Image.fromarray(drawing).save(animated, save_all=True, append_images=[other], duration=100)

    for path in (deep, palette, animated):
        assert np.array_equal(prepare_file(path), prepared), path.name
    # Compositing rounds each pixel once more; nothing else may differ.
    assert np.abs(prepare_file(transparent).astype(int) - prepared).max() <= 2


def test_jpeg_and_exif_rotation(tmp_path, seven):
    drawing, prepared = seven
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the stored pixels are turned the other way
    Image.fromarray(np.rot90(drawing, k=1)).save(path, quality=95, exif=exif)
    assert np.abs(prepare_file(path).astype(int) - prepared).mean() < 4


def bmp_claiming(tmp_path, width, height):
    """A BMP whose header claims `width` x `height` pixels but holds only a few bytes of data."""
    path = tmp_path / f"claims-{width}x{height}.bmp"
    Image.new("L", (4, 4), 255).save(path)
    data = bytearray(path.read_bytes())
    data[18:26] = struct.pack("<ii", width, height)  # BITMAPINFOHEADER width and height
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "notes.png", "no such file"),
        (lambda d: write(d / "notes.png", b"shopping list: eggs, milk\n"), "not an image Pillow can read"),
        (lambda d: truncated(d, "png"), "truncated or damaged"),
        (lambda d: truncated(d, "jpg"), "truncated or damaged"),
        (lambda d: bmp_claiming(d, 8000, 7000), "image is too large (8000x7000 = 56,000,000 pixels; the limit is 50,000,000"),
        (lambda d: bmp_claiming(d, 20000, 20000), "image is too large"),
        (lambda d: saved(d / "blank.png", np.full((200, 300), 255, np.uint8)), "no ink found"),
        (lambda d: saved(d / "faint.png", faint()), "no ink found"),
        (lambda d: npy(d / "stack.npy", np.zeros((3, 28, 28), np.uint8)), "shape (3, 28, 28); expected one grayscale image"),
        (lambda d: npy(d / "ints.npy", np.zeros((28, 28), np.int64)), "dtype int64; expected uint8"),
        (lambda d: npy(d / "big.npy", np.full((28, 28), 3.0)), "values outside 0.0-1.0"),
        (lambda d: npy(d / "objects.npy", np.array([[{"a": 1}]], dtype=object)), "holds Python objects"),
        (lambda d: write(d / "cut.npy", npy_bytes(np.zeros((28, 28), np.uint8))[:500]), "the .npy file is truncated (500 bytes"),
        (lambda d: write(d / "header.npy", npy_bytes(np.zeros((28, 28), np.uint8))[:60]), "not a .npy array, or its header"),
    ],
    ids=[
        "missing", "not-an-image", "truncated-png", "truncated-jpeg", "over-limit", "bomb", "blank", "faint",
        "npy-shape", "npy-dtype", "npy-range", "npy-pickle", "npy-truncated", "npy-header",
    ],
)
def test_bad_inputs_name_the_file_and_the_problem(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(InputError) as raised:
        prepare_file(path)
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_limit_is_checked_before_decoding(tmp_path):
    assert MAX_PIXELS == 50_000_000
    # Just under the limit: the header is accepted, then the missing pixel data is the problem.
    with pytest.raises(InputError, match="truncated or damaged"):
        prepare_file(bmp_claiming(tmp_path, 5000, 5000))


def test_npy_arrays_and_no_preprocess(tmp_path, seven):
    drawing, prepared = seven
    assert np.array_equal(prepare_file(npy(tmp_path / "u8.npy", drawing)), prepared)
    assert np.array_equal(prepare_file(npy(tmp_path / "f.npy", drawing / 255.0)), prepared)
    assert np.array_equal(prepare_file(npy(tmp_path / "ready.npy", prepared), preprocess=False), prepared)
    assert np.array_equal(prepare_file(saved(tmp_path / "ready.png", prepared), preprocess=False), prepared)
    with pytest.raises(InputError, match=r"is 120x120 pixels; without preprocessing the input must be 28x28"):
        prepare_file(tmp_path / "u8.npy", preprocess=False)


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def saved(path, array):
    Image.fromarray(array).save(path)
    return path


def faint():
    """Ink only 10 % darker than the paper: below the contrast a real stroke has."""
    picture = np.full((100, 100), 200, dtype=np.uint8)
    picture[30:70, 45:55] = 175
    return picture


def truncated(directory, fmt):
    path = directory / f"cut.{fmt}"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (200, 200), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def npy(path, array):
    np.save(path, array)
    return path


def npy_bytes(array) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()
