"""A model's forward pass outside ``fit``, and its compiled functions, kept once per model.

``run_layers`` is the one loop that runs layers in inference mode; with
``batch_statistics`` our BatchNorm layers normalise with each batch's own
statistics instead of their moving ones (``fruitkeras eval --bn-train-mode``).
The mode is an argument of the call, and each mode gets its own compiled
function, so no call depends on what ran before.

``compiled(model, key, make)`` traces ``make``'s function once per model and
key and keeps it as long as the model lives, and no longer: the cache holds
the model weakly, and ``make`` gets a weak proxy of it, so that a kept
function never keeps its model alive (the faithfulness check makes many
randomised copies of a model).
"""

import threading
import weakref

_COMPILED = weakref.WeakKeyDictionary()  # model -> {key: function}
_LOCK = threading.RLock()  # the web page serves several users at once


def run_layers(layers, features, batch_statistics=False, statistics=None):
    """``features`` through ``layers`` in inference mode (no dropout; BatchNorm on its moving statistics,
    or with ``batch_statistics`` on the batch's own, leaving the moving ones as they are).

    ``statistics``: a list that receives each BatchNorm's (mean, variance) of its batch, in order (precise BN).
    """
    from fruitkeras.layers import BatchNorm

    for layer in layers:
        if batch_statistics and isinstance(layer, BatchNorm):
            mean, variance = layer.batch_statistics(features)
            if statistics is not None:
                statistics.append((mean, variance))
            features = layer.normalise(features, mean, variance)
        else:
            features = layer(features, training=False)
    return features


def compiled(model, key, make, **tf_function_options):
    """``tf.function(make(proxy))`` made once per (model, key); ``proxy`` is a weak proxy of ``model``.

    ``make`` must not keep ``model`` itself (layers and variables are fine).
    """
    import tensorflow as tf

    with _LOCK:
        kept = _COMPILED.setdefault(model, {})
        if key not in kept:
            tf_function_options.setdefault("reduce_retracing", True)
            kept[key] = tf.function(make(weakref.proxy(model)), **tf_function_options)
        return kept[key]


def kept_object(model, key, make):
    """``make(proxy)``'s result (an engine, say) kept once per (model, key), under the same rules as ``compiled``."""
    with _LOCK:
        kept = _COMPILED.setdefault(model, {})
        if key not in kept:
            kept[key] = make(weakref.proxy(model))
        return kept[key]


def probabilities_function(model, batch_statistics=False):
    """The compiled f(images) -> class probabilities of ``model``: traced once for every batch size (a split's last
    batch is a smaller one, and a second trace would cost the first epoch of a training its time)."""
    import tensorflow as tf

    images = tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)
    return compiled(model, ("probabilities", batch_statistics),
                    lambda proxy: _probabilities(list(proxy.layers), batch_statistics), input_signature=[images])


def in_batches(function, batch_size, *arrays):
    """``function`` over aligned slices of ``arrays`` (each (N, ...)), ``batch_size`` rows at a time, its outputs
    (one array or a tuple of them) as NumPy arrays joined along the first axis: every batched pass of the package."""
    import numpy as np

    if not len(arrays[0]):
        raise ValueError("in_batches: no rows")
    parts = [function(*(array[start : start + batch_size] for array in arrays))
             for start in range(0, len(arrays[0]), batch_size)]
    if isinstance(parts[0], (tuple, list)):
        return tuple(np.concatenate([np.asarray(part[k]) for part in parts]) for k in range(len(parts[0])))
    return np.concatenate([np.asarray(part) for part in parts])


def class_probabilities(model, images, batch_size=64):
    """Class probabilities (N, classes) of float images, batch norm in inference mode, as a NumPy array."""
    import numpy as np

    return in_batches(probabilities_function(model), batch_size, np.asarray(images, dtype=np.float32))


def _probabilities(layers, batch_statistics):
    return lambda images: run_layers(layers, images, batch_statistics)
