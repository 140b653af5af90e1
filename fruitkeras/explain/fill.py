"""The colour an occluding patch or an Integrated Gradients baseline is filled with, as the options name it.

No TensorFlow here: the registry, and so ``fruitkeras --help``, reads it.
"""

import numpy as np

NAMED_FILLS = {"white": (1.0, 1.0, 1.0), "grey": (0.5, 0.5, 0.5), "black": (0.0, 0.0, 0.0)}
DEFAULT_FILL = "white"  # the Fruits-360 background; README "Occlusion fill" has the measurement


def parse_fill(text, mean_colour=None, what="fill"):
    """A colour from its name, 'mean', one number or 'r,g,b' (all in [0, 1]); ``what`` names it in errors."""
    text = str(text).strip().lower()
    if text in NAMED_FILLS:
        return np.asarray(NAMED_FILLS[text], dtype=np.float32)
    if text == "mean":
        if mean_colour is None:
            raise ValueError(f"{what} 'mean' needs the training data's mean colour, which this model lacks")
        return np.asarray(mean_colour, dtype=np.float32)
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 3) or not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"{what} must be white, grey, black, mean, a number or r,g,b in [0, 1]; got '{text}'")
    return np.asarray(values * 3 if len(values) == 1 else values, dtype=np.float32)
