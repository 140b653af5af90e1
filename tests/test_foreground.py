"""The fruit cut out of a photo (GrabCut): on white, cropped to it; nothing when nothing separates."""

import numpy as np

from fruitkeras import foreground


def fruit_on_a_table(size=160, radius=35, seed=0):
    """A red disc (the fruit) off-centre on a brown, noisy table: (image, disc mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    table = np.clip(np.array([120, 90, 60]) + rng.normal(0, 12, (size, size, 3)), 0, 255)
    disc = (yy - 0.44 * size) ** 2 + (xx - 0.56 * size) ** 2 < radius**2
    table[disc] = np.clip(np.array([200, 30, 40]) + rng.normal(0, 8, (disc.sum(), 3)), 0, 255)
    return table.astype(np.uint8), disc


def test_the_fruit_is_cut_out_on_white_and_cropped_to_it():
    image, disc = fruit_on_a_table()
    piece = foreground.cut_out(image)
    assert piece is not None
    side = 2 * 35
    assert abs(piece.shape[0] - side) <= 4 and abs(piece.shape[1] - side) <= 4  # the crop is the disc's box
    red = (piece[..., 0] > 150) & (piece[..., 1] < 90)
    white = np.all(piece == 255, axis=-1)
    assert red.sum() > 0.95 * disc.sum()  # the fruit kept ...
    assert (red | white).mean() > 0.97  # ... and nothing of the table: the rest is white
    assert white[0, 0] and white[-1, -1]  # corners of the box are outside the disc


def test_a_large_photo_is_worked_on_small_and_the_same_each_time():
    image, _ = fruit_on_a_table(size=640, radius=140)
    first, second = foreground.cut_out(image), foreground.cut_out(image)
    np.testing.assert_array_equal(first, second)
    assert max(first.shape[:2]) <= foreground.WORKING_SIDE


def test_nothing_to_separate_gives_none():
    assert foreground.cut_out(np.full((80, 80, 3), 128, np.uint8)) is None  # flat: no foreground
    assert foreground.cut_out(np.zeros((5, 5, 3), np.uint8)) is None  # too small to work on
