"""Training-time augmentation, drawn statelessly: the same (seed, epoch, batch) gives the same images.

Every random number comes from a stateless TensorFlow op keyed on the batch's
key (``batch_key``: a function of the run's seed, the epoch and the batch's
number in it), so the augmented stream does not depend on how many threads
ran the pipeline or in which order, nor on what ran before in the process:
the basis of reproducible training histories.

Each transformation draws from its own stream (the key folded with the
transformation's number), so an image's flip, angle, zoom and colour shifts
are independent of one another.  Flip, rotation and zoom are one affine map
per image, applied in one bilinear resampling with the edges filled white
like the dataset's background.
"""

import math

# One stream per random quantity; the numbers are part of the reproducibility contract.
STREAMS = {"flip_x": 1, "flip_y": 2, "angle": 3, "zoom": 4, "hue": 5, "saturation": 6, "brightness": 7}
BACKGROUND_VALUE = 1.0  # white, in the [0, 1] scale models see


def batch_key(seed, epoch, batch):
    """The stateless key (int64 pair) of batch ``batch`` of epoch ``epoch`` in a run with ``seed``."""
    import tensorflow as tf

    key = tf.stack([tf.cast(seed, tf.int64), tf.constant(0x5EED, tf.int64)])
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(epoch, tf.int64))
    return tf.random.experimental.stateless_fold_in(key, tf.cast(batch, tf.int64))


def _uniform(key, stream, count, low, high):
    import tensorflow as tf

    return tf.random.stateless_uniform((count,), tf.random.experimental.stateless_fold_in(key, STREAMS[stream]),
                                       minval=low, maxval=high)


def draw_parameters(settings, key, count):
    """Each image's transformation parameters for a batch of ``count``: a dict of (count,) float32 tensors.

    ``flip_x``/``flip_y``: -1 (flipped) or 1; ``angle`` in radians; ``zoom``: the
    scale of the area read (> 1 zooms out); ``hue`` (shift), ``saturation``
    (factor), ``brightness`` (shift).  A strength of 0 gives the identity.
    """
    import tensorflow as tf

    def sign(stream):
        flipped = _uniform(key, stream, count, 0.0, 1.0) < 0.5
        return tf.where(flipped, -1.0, 1.0) if settings["flip"] else tf.ones((count,))

    def spread(stream, strength, centre=0.0):
        if not strength:
            return tf.fill((count,), centre)
        return centre + _uniform(key, stream, count, -strength, strength)

    return {
        "flip_x": sign("flip_x"),
        "flip_y": sign("flip_y"),
        "angle": spread("angle", settings["rotation"] * 2 * math.pi),
        "zoom": spread("zoom", settings["zoom"], 1.0),
        "hue": spread("hue", settings["hue"]),
        "saturation": spread("saturation", settings["saturation"], 1.0),
        "brightness": spread("brightness", settings["brightness"]),
    }


def affine_transforms(parameters, height, width):
    """The (N, 8) projective transforms that map each output pixel to where it is read in the input.

    Input point = centre + zoom · R(angle) · diag(flip_x, flip_y) · (output point - centre).
    """
    import tensorflow as tf

    cos, sin, zoom = tf.cos(parameters["angle"]), tf.sin(parameters["angle"]), parameters["zoom"]
    fx, fy = parameters["flip_x"], parameters["flip_y"]
    a0, a1 = zoom * cos * fx, -zoom * sin * fy
    b0, b1 = zoom * sin * fx, zoom * cos * fy
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    a2 = cx - a0 * cx - a1 * cy
    b2 = cy - b0 * cx - b1 * cy
    zeros = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def apply(batch, parameters, settings):
    """``batch`` (N, H, W, 3) floats in [0, 1] transformed by ``draw_parameters``'s parameters."""
    import tensorflow as tf

    if settings["flip"] or settings["rotation"] or settings["zoom"]:
        height, width = batch.shape[1], batch.shape[2]
        if height is None or width is None:
            height, width = tf.shape(batch)[1], tf.shape(batch)[2]
        batch = tf.raw_ops.ImageProjectiveTransformV3(
            images=batch, transforms=affine_transforms(parameters, tf.cast(height, tf.float32),
                                                       tf.cast(width, tf.float32)),
            output_shape=tf.stack([height, width]), fill_value=BACKGROUND_VALUE,
            interpolation="BILINEAR", fill_mode="CONSTANT")
    if settings["hue"] or settings["saturation"]:
        # White has no saturation, so hue and saturation changes leave the background white.
        hsv = tf.image.rgb_to_hsv(tf.clip_by_value(batch, 0.0, 1.0))
        h, s, v = tf.unstack(hsv, axis=-1)
        h = tf.math.floormod(h + parameters["hue"][:, None, None], 1.0)
        s = tf.clip_by_value(s * parameters["saturation"][:, None, None], 0.0, 1.0)
        batch = tf.image.hsv_to_rgb(tf.stack([h, s, v], axis=-1))
    if settings["brightness"]:
        batch = batch + parameters["brightness"][:, None, None, None]
    return tf.clip_by_value(batch, 0.0, 1.0)


def make_augmenter(settings):
    """The augmentation as ``augment(batch, key)``, or None when every strength is off."""
    if not settings or not any(settings.values()):
        return None
    import tensorflow as tf

    def augment(batch, key):
        return apply(batch, draw_parameters(settings, key, tf.shape(batch)[0]), settings)

    return augment
