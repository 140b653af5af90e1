"""How faithful is a map to the model?  Metrics about explanations, beside the methods.

* Deletion and insertion (Petsiuk, Das, Saenko, "RISE", BMVC 2018): pixels are
  removed (set to the fill, white by default: this dataset's background) or
  inserted into a blank image in the order of the map's importance, highest
  first, and the explained class's probability is tracked; the area under
  that curve (x from 0 to 1, the share of pixels changed).  A faithful map
  makes the probability fall fast on deletion (low AUC) and rise fast on
  insertion (high AUC).
* Model-parameter randomisation (Adebayo et al., "Sanity Checks for Saliency
  Maps", NeurIPS 2018): the weights are re-initialised from the top layer
  down (cascading) and the Spearman rank correlation between the map of the
  trained model and that of the randomised one is measured.  A method that
  ignores the model keeps a high correlation and fails the check.  Batch
  norm's moving statistics are reset with the weights (mean 0, variance 1, as
  an untrained layer has them), so nothing learnt is left in a randomised
  layer; a constant map has no ranks, and its correlation is undefined (NaN),
  never a pass.

Every function takes maps as the methods return them, (N, H, W), higher
meaning more important.
"""

import numpy as np

from fruitkeras.forward import class_probabilities


def _curve_images(image, order, fill, steps, insert):
    """The images after each of ``steps`` equal shares of pixels in ``order`` changed."""
    height, width = image.shape[:2]
    counts = np.linspace(0, height * width, steps + 1).round().astype(int)
    flat_image = image.reshape(-1, 3)
    blank = np.broadcast_to(np.asarray(fill, np.float32), flat_image.shape)
    frames = np.empty((steps + 1, height * width, 3), np.float32)
    for index, count in enumerate(counts):
        changed = order[:count]
        frame = (blank if insert else flat_image).copy()
        frame[changed] = (flat_image if insert else blank)[changed]
        frames[index] = frame
    return frames.reshape(steps + 1, height, width, 3)


def importance_order(heatmap, generator):
    """The pixels' flat indices, most important first; equal values (flat regions) in an order drawn from
    ``generator``, so that a flat region is removed all over at once, not from its top-left corner."""
    values = np.asarray(heatmap, np.float64).reshape(-1)
    return np.lexsort((generator.permutation(len(values)), -values))


def deletion_insertion(model, images, maps, labels, fill=(1.0, 1.0, 1.0), steps=50, seed=0):
    """Per image: (deletion AUC, insertion AUC, deletion curve, insertion curve) of the labels' probability.

    Ties are broken at random from ``seed`` (``importance_order``), so results repeat."""
    results = []
    generator = np.random.default_rng(seed)
    for image, heatmap, label in zip(np.asarray(images, np.float32), maps, labels):
        order = importance_order(heatmap, generator)
        curves = []
        for insert in (False, True):
            frames = _curve_images(image, order, fill, steps, insert)
            curves.append(class_probabilities(model, frames)[:, label])
        auc = [float(np.trapezoid(curve, dx=1.0 / steps)) for curve in curves]
        results.append((auc[0], auc[1], curves[0], curves[1]))
    return results


def spearman(first, second):
    """Spearman rank correlation of two maps (average ranks for ties); NaN when either map is constant."""

    def ranks(values):
        values = np.asarray(values, np.float64).reshape(-1)
        order = values.argsort(kind="stable")
        ranked = np.empty(len(values))
        ranked[order] = np.arange(len(values))
        # average the ranks of equal values
        unique, inverse = np.unique(values, return_inverse=True)
        sums = np.bincount(inverse, weights=ranked)
        counts = np.bincount(inverse)
        return (sums / counts)[inverse]

    a, b = ranks(first), ranks(second)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def weighted_layers(model):
    return [layer for layer in model.layers if layer.trainable_weights]


def randomised_copy(model, top_layers, seed=0):
    """A copy of ``model`` whose ``top_layers`` highest layers with weights are re-initialised, batch norm's
    moving statistics included."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    generator = np.random.default_rng(seed)
    for layer in weighted_layers(copy)[::-1][:top_layers]:
        for weight in layer.trainable_weights:
            shape = tuple(weight.shape)
            if len(shape) > 1:  # kernels: Glorot uniform, as Keras initialises them
                fan_in, fan_out = int(np.prod(shape[:-1])), shape[-1]
                if len(shape) == 4:
                    fan_out = int(np.prod(shape[:2])) * shape[-1]
                limit = np.sqrt(6.0 / (fan_in + fan_out))
                weight.assign(generator.uniform(-limit, limit, size=shape).astype(np.float32))
            else:  # biases, batch-norm scales and offsets: random too, so nothing of the training is left
                weight.assign(generator.normal(0.0, 1.0, size=shape).astype(np.float32))
        for name, start in (("moving_mean", 0.0), ("moving_variance", 1.0)):  # the statistics of an untrained layer
            if hasattr(layer, name):
                getattr(layer, name).assign(np.full(tuple(getattr(layer, name).shape), start, np.float32))
    return copy


def randomisation_correlations(model, method, images, labels, maps=None, stages=(1, None), seed=0, **options):
    """Spearman correlation per image between the trained model's maps and those after
    randomising the top ``stage`` weighted layers (None: all of them), for each stage.

    Returns {stage: array of correlations}; ``maps`` are the trained model's maps, if already made.
    """
    images = np.asarray(images, np.float32)
    maps = method(model, images, labels, **options) if maps is None else maps
    results = {}
    for stage in stages:
        count = len(weighted_layers(model)) if stage is None else stage
        randomised = randomised_copy(model, count, seed)
        other = method(randomised, images, labels, **options)
        results[stage] = np.asarray([spearman(a, b) for a, b in zip(maps, other)])
    return results
