import torch

from seqlstm.data.augment import random_shift


def test_each_image_is_its_own_shifted_copy_within_the_limit():
    images = torch.zeros(64, 12, 10, dtype=torch.uint8)
    images[:, 4:8, 3:7] = torch.arange(1, 17, dtype=torch.uint8).view(4, 4)  # ink away from the border
    shifted = random_shift(images, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and shifted.dtype == torch.uint8
    seen = set()
    for original, moved in zip(images, shifted):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(torch.roll(original, (dy, dx), (0, 1)), moved)
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 10  # offsets really vary from image to image


def test_reproducible_and_zero_is_identity():
    images = torch.randint(0, 256, (8, 28, 28), dtype=torch.uint8)
    a = random_shift(images, 1, torch.Generator().manual_seed(3))
    b = random_shift(images, 1, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert random_shift(images, 0, torch.Generator()) is images
