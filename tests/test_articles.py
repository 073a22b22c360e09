"""Fashion-MNIST's preparation of a product photo (`fashion_style`) and its use by predict."""

import numpy as np
import pytest
from PIL import Image

from conftest import product_photo
from seqlstm.data import load_dataset
from seqlstm.data.articles import fashion_style
from seqlstm.errors import InputError
from seqlstm.prediction import prepare_file


def trousers(background: int = 245, cloth: int = 60, stripe: int = 120) -> np.ndarray:
    """A 300x200 photo: two trouser legs (240 px tall) with a lighter stripe, on a plain background."""
    photo = np.full((300, 200), background, dtype=np.uint8)
    photo[30:270, 50:90] = cloth
    photo[30:270, 110:150] = cloth
    photo[30:60, 50:150] = cloth  # the waistband joins the legs
    photo[100:200, 60:80] = stripe
    return photo


def test_a_product_photo_fills_the_frame_bright_on_black_and_keeps_its_grey_levels():
    frame = fashion_style(trousers())
    assert frame.shape == (28, 28) and frame.dtype == np.uint8
    rows, cols = np.nonzero(frame)
    # The longer side (240 px tall) becomes all 28 rows; the 100 px width about 12, centred.
    assert (rows.min(), rows.max()) == (0, 27)
    assert abs(cols.min() - (27 - cols.max())) <= 1 and 10 <= cols.max() - cols.min() + 1 <= 13
    assert frame[:, : cols.min()].max() == 0 and frame[:, cols.max() + 1 :].max() == 0
    # Grey levels relative to the background are kept (negated), not stretched to full ink as
    # MNIST's are: the cloth's flat bottom rows at (245 - 60) / 245 of 255, the stripe darker.
    leg = frame[24:, cols.min() : cols.min() + 2]
    assert np.abs(leg.astype(int) - 193).max() <= 3
    stripe = frame[11:18, cols.min() + 1 : cols.min() + 3]
    assert 60 < np.median(stripe) < 160


def test_a_dark_background_is_taken_as_it_is():
    light = fashion_style(trousers())
    dark = fashion_style(255 - trousers())
    assert np.abs(light.astype(int) - dark).max() <= 1


def test_a_plain_picture_holds_no_article():
    with pytest.raises(InputError, match=r"no article found: no pixel differs from the background by more than 5%"):
        fashion_style(np.full((50, 40), 200, dtype=np.uint8) + np.eye(50, 40, dtype=np.uint8) * 10)


def test_photos_of_fashion_mnist_images_come_back_in_their_place(fashion_dir, tmp_path):
    images, _ = load_dataset("fashion-mnist", "test", fashion_dir)
    for index in range(40):
        original = images[index].numpy()
        path = tmp_path / f"{index}.png"
        Image.fromarray(product_photo(original, index)).save(path)
        prepared = prepare_file(path, style="fashion-mnist")
        # The article's box and its brightness come back to within a pixel and a few grey levels
        # (the texture differs: the photo was resampled twice and sharpened).
        for axis in (0, 1):
            ours = np.nonzero(prepared.max(axis=axis) > 13)[0]
            theirs = np.nonzero(original.max(axis=axis) > 13)[0]
            assert abs(ours.min() - theirs.min()) <= 1 and abs(ours.max() - theirs.max()) <= 1, index
        assert abs(float(prepared.mean()) - float(original.mean())) < 12, index
