"""SmoothGrad (Smilkov et al. 2017): any gradient method's map, averaged over noisy copies of the image.

Like Captum's NoiseTunnel it wraps another method of the common signature
rather than one hard-wired gradient: ``base`` gets ``samples`` copies of
each image with Gaussian noise of std ``noise`` (the pixel range is 1), and
the maps are averaged.
"""

import numpy as np

from fruitkeras.explain.class_scores import resolve_labels


def smoothgrad(model, images, labels=None, samples=25, noise=0.15, base=None, seed=0, **base_options):
    """Mean of ``base``'s maps (default: the plain gradient) over ``samples`` noisy copies of each image."""
    if base is None:
        from fruitkeras.explain.gradient import gradient_saliency as base
    images = np.asarray(images, dtype=np.float32)
    labels = resolve_labels(model, images, labels)  # the class of the photo, not of each noisy copy
    rng = np.random.default_rng(seed)
    maps = []
    for image, label in zip(images, labels):
        noisy = image[None] + rng.normal(0.0, noise, size=(samples, *image.shape)).astype(np.float32)
        maps.append(np.asarray(base(model, noisy, np.full(samples, label, np.int32), **base_options)).mean(axis=0))
    return np.stack(maps).astype(np.float32)
