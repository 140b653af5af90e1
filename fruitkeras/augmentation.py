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

``background`` (a probability) lays that share of the images on a procedural
background instead of white, shrunk by up to ``zoom_out`` and moved within the
frame: a step towards photos outside the studio.  The fruit's mask is what is
not white after the affine map and before the colour changes.  Among those,
``specimens`` (a probability) adds one or two more copies of the same fruit
behind it, each with its own size, angle and place, as in a heap or a bowl.

Photos outside the studio also differ in light and sharpness: ``temperature``
tints warm or cold (red and blue gains moved apart), ``occlusion`` (a
probability) covers a rectangle of the frame with a flat colour, ``blur`` (a
probability) softens the image by a random amount, and ``noise`` is the
largest standard deviation of the pixel noise added.  ``exposure`` darkens or
brightens the fruit alone, by a gain of up to e^exposure either way, and leaves
the white round it white: GrabCut's cut-out of a photo taken in dim or bright
light is a fruit of another exposure on white.  ``stretch`` draws the fruit
wider or taller by up to e^stretch, as another specimen of its kind may be.
"""

import math

# One stream per random quantity; the numbers are part of the reproducibility contract.
STREAMS = {"flip_x": 1, "flip_y": 2, "angle": 3, "zoom": 4, "hue": 5, "saturation": 6, "brightness": 7,
           "background": 8, "scale": 9, "shift_x": 10, "shift_y": 11, "colour_a": 12, "colour_b": 13,
           "gradient_angle": 14, "coarse": 15, "fine": 16, "mix": 17, "texture": 18,
           "specimens": 19, "specimen_count": 20, "specimen_scale": 21, "specimen_shift_x": 22,
           "specimen_shift_y": 23, "specimen_angle": 24, "occlusion": 25, "occluder": 26, "occluder_colour": 27,
           "blur": 28, "noise": 29, "noise_field": 30, "temperature": 31, "occluder_corner": 32,
           "blur_amount": 33, "exposure": 34, "stretch": 35, "transpose": 36}
PIXEL_MOVES = ("flip", "transpose")  # the settings that move pixels without changing a value
BACKGROUND_VALUE = 1.0  # white, in the [0, 1] scale models see
# The mask: a pixel is background when its darkest channel is above WHITE_FROM, fruit below WHITE_FROM - RAMP.
WHITE_FROM, RAMP = 0.94, 0.08
COARSE_CELLS, FINE_CELLS = 4, 24  # the background's patches of colour, and its texture, in cells per side
EXTRA_SPECIMENS = 2  # at most this many copies behind the fruit
OCCLUDER_SIDES = (0.2, 0.5)  # an occluding rectangle's sides, as fractions of the frame's
BLUR_SIGMA = 1.5  # pixels: a blurred image is mixed with the image at this blur by a random weight


# The keys that take a photo out of the studio (backgrounds, copies, camera effects, light, another specimen's
# proportions); the rest is studio jitter, the difference between two frames of one fruit.
OUTSIDE_THE_STUDIO = ("background", "zoom_out", "specimens", "temperature", "occlusion", "blur", "noise", "exposure",
                      "stretch")


def studio_settings(settings):
    """``settings`` with the keys that take a photo out of the studio switched off."""
    return None if settings is None else {key: (0.0 if key in OUTSIDE_THE_STUDIO else value)
                                          for key, value in settings.items()}


def batch_key(seed, epoch, batch):
    """The stateless key (int64 pair) of batch ``batch`` of epoch ``epoch`` in a run with ``seed``."""
    import tensorflow as tf

    key = tf.stack([tf.cast(seed, tf.int64), tf.constant(0x5EED, tf.int64)])
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(epoch, tf.int64))
    return tf.random.experimental.stateless_fold_in(key, tf.cast(batch, tf.int64))


def draw_uniform(key, stream, count, low, high, per_image=()):
    """Numbers uniform in [low, high) from ``stream`` (a name in STREAMS) of the batch's ``key``: ``count`` of
    them, or ``count`` arrays of shape ``per_image``."""
    import tensorflow as tf

    return tf.random.stateless_uniform((count, *per_image), tf.random.experimental.stateless_fold_in(
        key, STREAMS[stream]), minval=low, maxval=high)


def draw_parameters(settings, key, count):
    """Each image's transformation parameters for a batch of ``count``: a dict of (count,) float32 tensors.

    ``flip_x``/``flip_y``: -1 (flipped) or 1; ``angle`` in radians; ``zoom``: the
    scale of the area read (> 1 zooms out); ``hue`` (shift), ``saturation``
    (factor), ``brightness`` (shift); with ``stretch``, the factor by which the fruit is drawn wider than it is
    tall (its inverse makes it taller).  A strength of 0 gives the identity.
    """
    import tensorflow as tf

    def sign(stream):
        flipped = draw_uniform(key, stream, count, 0.0, 1.0) < 0.5
        return tf.where(flipped, -1.0, 1.0) if settings["flip"] else tf.ones((count,))

    def spread(stream, strength, centre=0.0):
        if not strength:
            return tf.fill((count,), centre)
        return centre + draw_uniform(key, stream, count, -strength, strength)

    parameters = {
        "flip_x": sign("flip_x"),
        "flip_y": sign("flip_y"),
        "angle": spread("angle", settings["rotation"] * 2 * math.pi),
        "zoom": spread("zoom", settings["zoom"], 1.0),
        "hue": spread("hue", settings["hue"]),
        "saturation": spread("saturation", settings["saturation"], 1.0),
        "brightness": spread("brightness", settings["brightness"]),
    }
    if settings.get("transpose"):  # 1: swap the image's rows and columns
        parameters["transpose"] = tf.cast(draw_uniform(key, "transpose", count, 0.0, 1.0) < 0.5, tf.float32)
    if settings.get("stretch"):
        parameters["stretch"] = tf.exp(draw_uniform(key, "stretch", count, -settings["stretch"], settings["stretch"]))
    if settings.get("background"):
        parameters.update(background_parameters(settings, key, count))
    if settings.get("specimens") and settings.get("background"):
        parameters.update(specimen_parameters(settings, key, count, parameters["composited"]))
    parameters.update(photo_parameters(settings, key, count))
    return parameters


def specimen_parameters(settings, key, count, composited):
    """For each composited image drawn for ``specimens``: the presence (1 or 0) of each of EXTRA_SPECIMENS copies,
    and each copy's ``specimen_scale``, ``specimen_shift_x``/``_y`` and ``specimen_angle``, as (count, copies)."""
    import tensorflow as tf

    def draw(stream, low, high):
        return draw_uniform(key, stream, count, low, high, per_image=(EXTRA_SPECIMENS,))

    chosen = composited * tf.cast(draw_uniform(key, "specimens", count, 0.0, 1.0) < settings["specimens"], tf.float32)
    copies = tf.floor(draw_uniform(key, "specimen_count", count, 1.0, EXTRA_SPECIMENS + 1.0))  # 1 .. EXTRA_SPECIMENS
    present = chosen[:, None] * tf.cast(tf.range(EXTRA_SPECIMENS, dtype=tf.float32)[None] < copies[:, None], tf.float32)
    scale = 1.0 - draw("specimen_scale", 0.0, settings.get("zoom_out", 0.0))
    room = (1.0 - scale) / 2
    return {"specimen_present": present, "specimen_scale": scale,
            "specimen_shift_x": room * draw("specimen_shift_x", -1.0, 1.0),
            "specimen_shift_y": room * draw("specimen_shift_y", -1.0, 1.0),
            "specimen_angle": draw("specimen_angle", 0.0, 2 * math.pi)}


def photo_parameters(settings, key, count):
    """The camera's share: ``exposure`` (the fruit's gain), ``temperature`` (a gain step, red up when blue goes
    down), an ``occluded`` flag with its rectangle ``occluder`` (count, 4: top, left, height, width as fractions)
    and ``occluder_colour``, ``blur`` (a weight in [0, 1], 0 for images not drawn) and ``noise`` (a standard
    deviation)."""
    import tensorflow as tf

    parameters = {}
    if settings.get("exposure"):
        parameters["exposure"] = tf.exp(draw_uniform(key, "exposure", count, -settings["exposure"], settings["exposure"]))
    if settings.get("temperature"):
        parameters["temperature"] = draw_uniform(key, "temperature", count, -settings["temperature"],
                                             settings["temperature"])
    if settings.get("occlusion"):
        sides = draw_uniform(key, "occluder", count, *OCCLUDER_SIDES, per_image=(2,))
        corner = draw_uniform(key, "occluder_corner", count, 0.0, 1.0, per_image=(2,)) * (1.0 - sides)
        parameters["occluded"] = tf.cast(draw_uniform(key, "occlusion", count, 0.0, 1.0) < settings["occlusion"],
                                         tf.float32)
        parameters["occluder"] = tf.concat([corner, sides], axis=1)
        parameters["occluder_colour"] = draw_uniform(key, "occluder_colour", count, 0.0, 1.0, per_image=(3,))
    if settings.get("blur"):
        blurred = tf.cast(draw_uniform(key, "blur", count, 0.0, 1.0) < settings["blur"], tf.float32)
        parameters["blur"] = blurred * draw_uniform(key, "blur_amount", count, 0.0, 1.0) ** 0.5
    if settings.get("noise"):
        parameters["noise"] = draw_uniform(key, "noise", count, 0.0, settings["noise"])
        parameters["noise_key"] = key  # the noise field is drawn in apply, where the image size is known
    return parameters


def background_parameters(settings, key, count):
    """Which images get a background (``composited``: 1 or 0), their shrink ``scale`` and ``shift`` (fractions of
    the frame), and the background's ingredients: two colours and an angle for a gradient, coarse patches of
    colour, a fine texture and their mixing weights."""
    import tensorflow as tf

    def grid(stream, cells):
        return draw_uniform(key, stream, count, 0.0, 1.0, per_image=(cells, cells, 3))

    composited = tf.cast(draw_uniform(key, "background", count, 0.0, 1.0) < settings["background"], tf.float32)
    scale = 1.0 - composited * draw_uniform(key, "scale", count, 0.0, settings.get("zoom_out", 0.0))
    room = (1.0 - scale) / 2  # the fruit moves at most to the frame's edge
    return {
        "composited": composited,
        "scale": scale,
        "shift_x": room * draw_uniform(key, "shift_x", count, -1.0, 1.0),
        "shift_y": room * draw_uniform(key, "shift_y", count, -1.0, 1.0),
        "colour_a": grid("colour_a", 1)[:, 0, 0],
        "colour_b": grid("colour_b", 1)[:, 0, 0],
        "gradient_angle": draw_uniform(key, "gradient_angle", count, 0.0, 2 * math.pi),
        "coarse": grid("coarse", COARSE_CELLS),
        "fine": grid("fine", FINE_CELLS),
        "mix": draw_uniform(key, "mix", count, 0.0, 1.0),
        "texture": draw_uniform(key, "texture", count, 0.0, 0.4),
    }


def affine_transforms(parameters, height, width):
    """The (N, 8) projective transforms that map each output pixel to where it is read in the input.

    Input point = centre + zoom · R(angle) · diag(flip_x / stretch, flip_y · stretch) · (output point - centre).
    """
    import tensorflow as tf

    cos, sin, zoom = tf.cos(parameters["angle"]), tf.sin(parameters["angle"]), parameters["zoom"]
    if "scale" in parameters:  # shrunk onto a background: a wider area is read, the fruit moved by the shift
        zoom = zoom / parameters["scale"]
    fx, fy = parameters["flip_x"], parameters["flip_y"]
    if "stretch" in parameters:  # another specimen's proportions: a longer mango, a rounder pear
        fx, fy = fx / parameters["stretch"], fy * parameters["stretch"]
    a0, a1 = zoom * cos * fx, -zoom * sin * fy
    b0, b1 = zoom * sin * fx, zoom * cos * fy
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    # Output point o reads input centre + A (o - centre - shift).
    ox, oy = cx, cy
    if "shift_x" in parameters:
        ox, oy = cx + parameters["shift_x"] * width, cy + parameters["shift_y"] * height
    a2 = cx - a0 * ox - a1 * oy
    b2 = cy - b0 * ox - b1 * oy
    zeros = tf.zeros_like(a0)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def apply(batch, parameters, settings):
    """``batch`` (N, H, W, 3) floats in [0, 1] transformed by ``draw_parameters``'s parameters."""
    import tensorflow as tf

    source = batch
    if settings["rotation"] or settings["zoom"] or settings.get("background") or settings.get("stretch"):
        batch = warp(source, parameters)
        if "specimen_present" in parameters:
            batch = add_specimens(source, batch, parameters)
        if "transpose" in parameters:
            batch = transpose(batch, parameters["transpose"])
    elif settings["flip"] or "transpose" in parameters:
        batch = orient(source, parameters)
    # The fruit's mask, taken before colour changes move the white: compositing uses it less its edge.
    mask = fruit_mask(batch) if settings.get("background") or "exposure" in parameters else None
    fruit = shrink_mask(mask) if settings.get("background") else None
    if "exposure" in parameters:
        batch = batch * (1.0 + mask * (parameters["exposure"][:, None, None, None] - 1.0))
    if settings["hue"] or settings["saturation"]:
        # White has no saturation, so hue and saturation changes leave the background white.
        hsv = tf.image.rgb_to_hsv(tf.clip_by_value(batch, 0.0, 1.0))
        h, s, v = tf.unstack(hsv, axis=-1)
        h = tf.math.floormod(h + parameters["hue"][:, None, None], 1.0)
        s = tf.clip_by_value(s * parameters["saturation"][:, None, None], 0.0, 1.0)
        batch = tf.image.hsv_to_rgb(tf.stack([h, s, v], axis=-1))
    if settings["brightness"]:
        batch = batch + parameters["brightness"][:, None, None, None]
    if "temperature" in parameters:
        step = parameters["temperature"][:, None, None, None]
        batch = batch * tf.concat([1.0 + step, tf.ones_like(step), 1.0 - step], axis=-1)
    if fruit is not None:
        backgrounds = make_backgrounds(parameters, tf.shape(batch)[1], tf.shape(batch)[2])
        keep = 1.0 - parameters["composited"][:, None, None, None] * (1.0 - fruit)
        batch = keep * batch + (1.0 - keep) * backgrounds
    if "occluder" in parameters:
        covered = parameters["occluded"][:, None, None, None] * rectangle_masks(
            parameters["occluder"], tf.shape(batch)[1], tf.shape(batch)[2])
        batch = (1.0 - covered) * batch + covered * parameters["occluder_colour"][:, None, None, :]
    if "blur" in parameters:
        weight = parameters["blur"][:, None, None, None]
        batch = (1.0 - weight) * batch + weight * gaussian_blur(batch, BLUR_SIGMA)
    if "noise" in parameters:
        field = tf.random.stateless_normal(tf.shape(batch), tf.random.experimental.stateless_fold_in(
            parameters["noise_key"], STREAMS["noise_field"]))
        batch = batch + parameters["noise"][:, None, None, None] * field
    if batch.dtype == tf.uint8:  # moved pixels alone (``make_augmenter``): nothing left the range
        return batch
    return tf.clip_by_value(batch, 0.0, 1.0)


def warp(images, placement):
    """``images`` through ``affine_transforms(placement)``: one bilinear resampling, the edges filled white."""
    import tensorflow as tf

    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        height, width = tf.shape(images)[1], tf.shape(images)[2]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=affine_transforms(placement, tf.cast(height, tf.float32),
                                                    tf.cast(width, tf.float32)),
        output_shape=tf.stack([height, width]), fill_value=BACKGROUND_VALUE,
        interpolation="BILINEAR", fill_mode="CONSTANT")


def orient(images, parameters):
    """``warp`` of flips alone (its transform then reads whole pixels: the same values), then ``transpose`` where
    ``parameters`` has it, without resampling: one gather that reads each image's pixels in the order of its own
    right-angle orientation (done one after the other, the live recipe's flips and swaps cost 3 s of a 17 s
    float32 epoch).  Any dtype; square images for the swap."""
    import tensorflow as tf

    count, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    row, column = tf.meshgrid(tf.range(height), tf.range(width), indexing="ij")
    row, column = row[None], column[None]  # (1, H, W): output pixel (i, j)
    if "transpose" in parameters:  # the swapped images read the mirrored pixel (j, i)
        swapped = (parameters["transpose"] > 0)[:, None, None]
        row, column = tf.where(swapped, column, row), tf.where(swapped, row, column)
    row = tf.where((parameters["flip_y"] < 0)[:, None, None], height - 1 - row, row)
    column = tf.where((parameters["flip_x"] < 0)[:, None, None], width - 1 - column, column)
    pixels = tf.reshape(images, (count, height * width, tf.shape(images)[3]))
    read = tf.reshape(row * width + column, (count, height * width))
    return tf.reshape(tf.gather(pixels, read, batch_dims=1), tf.shape(images))


def transpose(images, chosen):
    """The ``chosen`` images (1) with their rows and columns swapped, the others (0) as they are.

    With both flips, the swap completes the eight right-angle orientations (quarter turns and their mirror
    images): a fruit has no up that the photos keep, and Test films some specimens lying otherwise than Training
    does (docs/live-recipe.md).  Square images only."""
    import tensorflow as tf

    # Split, swap the chosen part, stitch back: a fifth of the time of tf.where between the batch and its swapped copy.
    which = tf.cast(chosen > 0, tf.int32)
    positions = tf.dynamic_partition(tf.range(tf.shape(images)[0]), which, 2)
    kept, swapped = tf.dynamic_partition(images, which, 2)
    return tf.dynamic_stitch(positions, [kept, tf.transpose(swapped, (0, 2, 1, 3))])


def add_specimens(source, batch, parameters):
    """``batch`` (the fruit on white after its affine map) with the drawn copies of ``source`` laid behind it."""
    for copy in range(EXTRA_SPECIMENS):
        placement = {"flip_x": parameters["flip_x"], "flip_y": parameters["flip_y"],
                     "angle": parameters["specimen_angle"][:, copy], "zoom": parameters["zoom"],
                     "scale": parameters["specimen_scale"][:, copy],
                     "shift_x": parameters["specimen_shift_x"][:, copy],
                     "shift_y": parameters["specimen_shift_y"][:, copy]}
        layer = warp(source, placement)
        # Behind what is already there: the copy shows only where the frame is still white.
        show = parameters["specimen_present"][:, copy, None, None, None] * fruit_mask(layer) * (1.0 - fruit_mask(batch))
        batch = (1.0 - show) * batch + show * layer
    return batch


def rectangle_masks(boxes, height, width):
    """(N, H, W, 1): 1 inside each image's box (top, left, height, width as fractions of the frame), else 0."""
    import tensorflow as tf

    ys = (tf.cast(tf.range(height), tf.float32) + 0.5) / tf.cast(height, tf.float32)
    xs = (tf.cast(tf.range(width), tf.float32) + 0.5) / tf.cast(width, tf.float32)
    top, left, tall, wide = (boxes[:, i, None] for i in range(4))
    rows = tf.cast((ys[None] >= top) & (ys[None] < top + tall), tf.float32)
    columns = tf.cast((xs[None] >= left) & (xs[None] < left + wide), tf.float32)
    return (rows[:, :, None] * columns[:, None, :])[..., None]


def gaussian_blur(batch, sigma):
    """Each channel blurred by a Gaussian of ``sigma`` pixels, edges repeated (a separable depthwise filter)."""
    import tensorflow as tf

    radius = int(math.ceil(3 * sigma))
    taps = tf.exp(-tf.square(tf.range(-radius, radius + 1, dtype=tf.float32)) / (2 * sigma**2))
    taps = taps / tf.reduce_sum(taps)
    padded = tf.pad(batch, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="SYMMETRIC")
    across = tf.tile(tf.reshape(taps, (1, -1, 1, 1)), [1, 1, 3, 1])
    down = tf.tile(tf.reshape(taps, (-1, 1, 1, 1)), [1, 1, 3, 1])
    padded = tf.nn.depthwise_conv2d(padded, across, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(padded, down, [1, 1, 1, 1], "VALID")


def fruit_mask(batch):
    """(N, H, W, 1) in [0, 1]: 1 on the fruit, 0 on the white background, a soft ramp between."""
    import tensorflow as tf

    darkest = tf.reduce_min(batch, axis=-1, keepdims=True)
    return tf.clip_by_value((WHITE_FROM - darkest) / RAMP, 0.0, 1.0)


def shrink_mask(mask):
    """The mask less its outermost pixel, where the fruit's edge is blended with the studio's white: kept, that
    edge would draw a pale outline round every composited fruit that no photo has."""
    import tensorflow as tf

    return -tf.nn.max_pool2d(-mask, 3, 1, "SAME")


def make_backgrounds(parameters, height, width):
    """(N, H, W, 3) procedural backgrounds: a two-colour gradient blended with coarse patches, plus texture."""
    import tensorflow as tf

    ys = tf.linspace(-0.5, 0.5, height)[None, :, None]
    xs = tf.linspace(-0.5, 0.5, width)[None, None, :]
    angle = parameters["gradient_angle"][:, None, None]
    along = tf.clip_by_value(tf.cos(angle) * xs + tf.sin(angle) * ys + 0.5, 0.0, 1.0)[..., None]
    gradient = parameters["colour_a"][:, None, None] * (1 - along) + parameters["colour_b"][:, None, None] * along
    size = tf.stack([height, width])
    coarse = tf.image.resize(parameters["coarse"], size, method="bilinear")
    fine = tf.image.resize(parameters["fine"], size, method="bilinear")
    mix = parameters["mix"][:, None, None, None]
    texture = parameters["texture"][:, None, None, None]
    return tf.clip_by_value((1 - mix) * gradient + mix * coarse + texture * (fine - 0.5), 0.0, 1.0)


def make_augmenter(settings):
    """The augmentation as ``augment(batch, key)``, or None when every strength is off."""
    if not settings or not any(settings.values()):
        return None
    import tensorflow as tf

    def augment(batch, key):
        return apply(batch, draw_parameters(settings, key, tf.shape(batch)[0]), settings)

    # Flips and the swap of rows and columns only move pixels: on the uint8 photos they give the same values
    # after scaling, with a quarter of the bytes to move (``data.make_dataset`` applies them before the cast).
    augment.moves_pixels_only = not any(value for name, value in settings.items() if name not in PIXEL_MOVES)
    return augment
