"""The verdict that comes with every prediction: ``known``, ``unknown class`` or ``unfamiliar photo``.

Two statistics of a trained model, fitted on its Training photos only and
stored in the run folder (``familiarity.npz``):

* **photo typicality**: how typical the photo's low-level statistics are of the
  training photos, whatever their class.  Each block's feature maps are
  summarised by the mean and standard deviation of every channel (at every
  layer that shrinks the image: the input of a strided convolution, of a
  pooling or of the flattening), and one Gaussian (shrunk covariance) is fitted
  over those summaries; the score is minus the squared Mahalanobis distance.
  A scene, a cluttered table or noise is far from a single fruit on white.
* **familiarity**: the cosine similarity between the photo's penultimate
  features (the input of the classifier layer) and those of the nearest
  training photo; 1 is a copy of a training photo.  A fruit of a class the
  model never saw is far from all of them, although it is a studio photo.

Both are fitted on the training photos as they are; the thresholds accept
``ACCEPTED_SHARE`` of held-out training photos: the run's validation share,
seen through the run's own training augmentation less what takes a photo out
of the studio (backgrounds, copies, camera effects: ``augmentation.studio_settings``).
A model trained on composited photos must still call a scene unfamiliar:
calibrated on composited photos, its thresholds accepted most real photos and
most photos of no fruit at all, and it is right on few of them.
Fruits-360's validation frames are near-copies of training frames (consecutive
frames of one rotating fruit), and a threshold set on them as they are turns
away about one Test photo in ten; the augmentation stands for the difference
between two photos of the same fruit that training promises to bridge.
``docs/real-photos.md`` compares this choice with max-softmax, max-logit,
energy and Mahalanobis scores, measured by ``benchmarks/open_set.py``.
"""

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fruitkeras.errors import FruitkerasError
from fruitkeras.files import replaced_atomically

KNOWN = "known"
UNKNOWN_CLASS = "unknown class"
UNFAMILIAR_PHOTO = "unfamiliar photo"
NOT_AVAILABLE = "not available"
VERDICTS = (KNOWN, UNKNOWN_CLASS, UNFAMILIAR_PHOTO, NOT_AVAILABLE)

ACCEPTED_SHARE = 0.99  # of held-out in-distribution photos, by both thresholds together
# The photo test's part of the rejections; the familiarity test gets the rest.  Chosen on the development sets
# (docs/real-photos.md): the photo test separates scenes by a wide margin, and the familiarity test needs the
# room, as unseen classes are near the threshold.  At 0.5, 9.5% of unseen-class photos were accepted, at 0.2
# 6.4%, with the same real photos answered from their cut-outs; at 0.1 fewer of those were.
PHOTO_SHARE_OF_REJECTIONS = 0.2
SHRINKAGE = 1e-3  # of the covariance towards its mean variance: the summaries have near-constant channels
BANK_SCALE = 127  # the normalised features are stored as int8: a similarity error under 0.01
CALIBRATION_STREAM = 2  # the seed offset of the calibration augmentation (training uses seed, precise BN seed + 1)
BATCH = 256


@dataclass
class Familiarity:
    """A model's fitted verdict statistics (``fit``) and what they say of images (``verdicts``)."""

    photo_mean: np.ndarray  # (D,) the mean block summary of the training photos
    photo_precision: np.ndarray  # (D, D) the inverse of their shrunk covariance
    photo_threshold: float  # photo typicality below this: an unfamiliar photo
    bank: np.ndarray  # (M, K) int8: the training photos' normalised penultimate features
    familiarity_threshold: float  # familiarity below this: an unknown class
    details: dict = field(default_factory=dict)  # how and on what it was fitted

    def scores(self, model, images):
        """(photo typicality, familiarity) of float images (N, H, W, 3), each (N,)."""
        return self._scores_and_probabilities(model, images)[:2]

    def verdicts(self, model, images):
        """[(verdict, familiarity)] for each image."""
        return self.verdicts_and_probabilities(model, images)[0]

    def verdicts_and_probabilities(self, model, images):
        """([(verdict, familiarity)] for each image, their class probabilities (N, classes)): one forward pass."""
        typicality, familiarity, probabilities = self._scores_and_probabilities(model, images)
        return [(verdict(t, f, self.photo_threshold, self.familiarity_threshold), float(f))
                for t, f in zip(typicality, familiarity)], probabilities

    def _scores_and_probabilities(self, model, images):
        summaries, features, probabilities = image_features(model, images)
        if summaries.shape[1] != len(self.photo_mean) or features.shape[1] != self.bank.shape[1]:
            raise FruitkerasError("the familiarity statistics do not fit this model's layers; "
                                  "fit them again (fruitkeras fit-familiarity RUN)")
        return (photo_typicality(summaries, self.photo_mean, self.photo_precision),
                nearest_similarity(features, self.bank), probabilities)


def plain_words(verdict, top_class):
    """The verdict as a sentence for people: what the top class is worth, saying only what the two statistics
    measure (a photo's statistics against the training photos', and its nearest training photo), never what the
    photo shows: a cat on white and a fruit the model never learned get the same ``unknown class``."""
    return {
        KNOWN: f"Close to photos the model learned from: its answer is {top_class}.",
        UNKNOWN_CLASS: f"Passed the photo test, but far from every photo the model learned from, so none of its "
                       f"classes is the answer; the closest is {top_class}.",
        UNFAMILIAR_PHOTO: "Not like the photos the model learned from (one fruit on white): its classes below are "
                          "no answer.",
        NOT_AVAILABLE: f"The top class is {top_class}; this run has no familiarity statistics to judge it "
                       "(fruitkeras fit-familiarity RUN fits them).",
    }[verdict]


def verdict(typicality, familiarity, photo_threshold, familiarity_threshold):
    """The verdict of one image's two scores: the photo is judged before the class."""
    if typicality < photo_threshold:
        return UNFAMILIAR_PHOTO
    if familiarity < familiarity_threshold:
        return UNKNOWN_CLASS
    return KNOWN


def _summaries_and_features(layers):
    import tensorflow as tf

    def run(images):
        summaries, features = [], images
        for layer in layers[:-1]:  # the last layer is the classifier (``build_model``)
            output = layer(features, training=False)
            shrinks = len(features.shape) == 4 and (len(output.shape) != 4 or output.shape[1] < features.shape[1])
            if shrinks:
                block = tf.cast(features, tf.float32)
                summaries += [tf.reduce_mean(block, axis=[1, 2]), tf.math.reduce_std(block, axis=[1, 2])]
            features = output
        probabilities = tf.cast(layers[-1](features, training=False), tf.float32)
        return (tf.concat(summaries, axis=1), tf.math.l2_normalize(tf.cast(features, tf.float32), axis=1),
                probabilities)

    return run


def image_features(model, images):
    """(block summaries (N, D), normalised penultimate features (N, K), class probabilities (N, classes)) of
    float images, as NumPy arrays: the verdict's inputs and the prediction come from the same pass."""
    from fruitkeras.forward import compiled

    function = compiled(model, "familiarity-features", lambda proxy: _summaries_and_features(list(proxy.layers)))
    images = np.asarray(images, dtype=np.float32)
    parts = [function(images[i : i + BATCH]) for i in range(0, len(images), BATCH)]
    return tuple(np.concatenate([np.asarray(part[k]) for part in parts]) for k in range(3))


def photo_typicality(summaries, mean, precision):
    """Minus the squared Mahalanobis distance of each summary to the training photos' Gaussian."""
    centred = np.asarray(summaries, dtype=np.float64) - mean
    return -np.einsum("ij,jk,ik->i", centred, precision, centred)


def nearest_similarity(features, bank, chunk=4096):
    """The cosine similarity of each normalised feature vector to its nearest vector in the int8 bank."""
    features = np.asarray(features, dtype=np.float32)
    best = np.full(len(features), -1.0, dtype=np.float32)
    for start in range(0, len(bank), chunk):
        part = bank[start : start + chunk].astype(np.float32) / BANK_SCALE
        part /= np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
        best = np.maximum(best, (features @ part.T).max(axis=1))
    return best


def gaussian(summaries):
    """(mean, precision) of the summaries, the covariance shrunk towards its mean variance."""
    summaries = np.asarray(summaries, dtype=np.float64)
    mean = summaries.mean(axis=0)
    centred = summaries - mean
    covariance = centred.T @ centred / max(len(summaries) - 1, 1)
    scale = max(float(np.trace(covariance)) / len(covariance), 1e-12)
    covariance = (1 - SHRINKAGE) * covariance + SHRINKAGE * scale * np.eye(len(covariance))
    return mean, np.linalg.inv(covariance)


def thresholds(typicality, familiarity, accepted_share=ACCEPTED_SHARE):
    """(photo threshold, familiarity threshold) that together accept ``accepted_share`` of these
    in-distribution scores: ``PHOTO_SHARE_OF_REJECTIONS`` of the rejections to the photo test, which is
    applied first, the rest to the familiarity test."""
    rejected = 1.0 - accepted_share
    photo = float(np.quantile(typicality, rejected * PHOTO_SHARE_OF_REJECTIONS))
    kept = familiarity[typicality >= photo]
    # Of the photos the first test keeps, the second rejects enough to reach the total.
    share_left = 1.0 - accepted_share / max(len(kept) / len(familiarity), accepted_share)
    return photo, float(np.quantile(kept, min(max(share_left, 0.0), 1.0)))


def _split_features(model, split, rows, augmenter=None, seed=0):
    """Features of the split's ``rows``; through ``augmenter`` (keyed per batch on ``seed``) when given."""
    import tensorflow as tf

    from fruitkeras.augmentation import batch_key
    from fruitkeras.data import PIXEL_SCALE

    summaries, features = [], []
    for number, start in enumerate(range(0, len(rows), BATCH)):
        batch = split.images[rows[start : start + BATCH]].astype(np.float32) * np.float32(PIXEL_SCALE)
        if augmenter is not None:
            batch = np.asarray(augmenter(tf.constant(batch), batch_key(seed, 0, number)))
        s, f, _ = image_features(model, batch)
        summaries.append(s)
        features.append(f)
    return np.concatenate(summaries), np.concatenate(features)


def fit(model, split, train_rows, validation_rows, augmentation=None, seed=0):
    """Fit the verdict's statistics on a decoded Training split: the Gaussian and the bank on ``train_rows`` as
    they are, the thresholds on ``validation_rows`` seen through the ``augmentation`` settings (training's own),
    the studio's share of them.

    A run without a validation share lends a tenth of its training rows (in blocks of 10 frames) for the
    thresholds.
    """
    from fruitkeras.augmentation import make_augmenter, studio_settings
    from fruitkeras.data import split_validation

    train_rows, validation_rows = np.asarray(train_rows), np.asarray(validation_rows)
    if not len(validation_rows):
        subset = split.subset(train_rows)
        kept, lent = split_validation(subset, 0.1, seed, block=10)
        train_rows, validation_rows = train_rows[kept], train_rows[lent]
    if not len(validation_rows) or not len(train_rows):
        raise FruitkerasError("too few training images to fit the familiarity statistics")
    summaries, features = _split_features(model, split, train_rows)
    mean, precision = gaussian(summaries)
    bank = np.round(features * BANK_SCALE).astype(np.int8)
    augmenter = make_augmenter(studio_settings(augmentation))
    calibration = _split_features(model, split, validation_rows, augmenter, seed + CALIBRATION_STREAM)
    typicality = photo_typicality(calibration[0], mean, precision)
    familiarity = nearest_similarity(calibration[1], bank)
    photo_threshold, familiarity_threshold = thresholds(typicality, familiarity)
    details = {
        "fitted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_photos": int(len(train_rows)),
        "calibration_photos": int(len(validation_rows)),
        "calibration_augmented": augmenter is not None,
        "accepted_share": ACCEPTED_SHARE,
        "photo_share_of_rejections": PHOTO_SHARE_OF_REJECTIONS,
    }
    return Familiarity(mean, precision, photo_threshold, bank, familiarity_threshold, details)


def save(familiarity, path, model_path):
    """Write the statistics next to the model they belong to (``model_path``'s checksum is kept with them)."""
    path = Path(path)
    details = dict(familiarity.details, model_sha256=_checksum(model_path))
    with replaced_atomically(path) as temporary:
        np.savez_compressed(temporary, photo_mean=familiarity.photo_mean.astype(np.float32),
                            photo_precision=familiarity.photo_precision.astype(np.float32),
                            photo_threshold=np.float64(familiarity.photo_threshold), bank=familiarity.bank,
                            familiarity_threshold=np.float64(familiarity.familiarity_threshold),
                            details=np.array(json.dumps(details)))


def load(path, model_path=None):
    """The statistics in ``path``; with ``model_path``, refused (FruitkerasError) when fitted for another model."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            familiarity = Familiarity(stored["photo_mean"].astype(np.float64),
                                      stored["photo_precision"].astype(np.float64),
                                      float(stored["photo_threshold"]), stored["bank"],
                                      float(stored["familiarity_threshold"]), json.loads(str(stored["details"])))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        raise FruitkerasError(f"{path}: not a readable familiarity file (damaged or cut short); "
                              f"fit it again: fruitkeras fit-familiarity {Path(path).parent} --force") from None
    if model_path is not None and familiarity.details.get("model_sha256") != _checksum(model_path):
        raise FruitkerasError(f"{path} was fitted for another model than {model_path}; "
                              f"fit it again: fruitkeras fit-familiarity {Path(model_path).parent} --force")
    return familiarity


def _checksum(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_beside(model_path):
    """The statistics stored beside a model file, or None for a run fitted before verdicts existed."""
    from fruitkeras.run_folder import FAMILIARITY_FILE

    path = Path(model_path).parent / FAMILIARITY_FILE
    return load(path, model_path) if path.exists() else None
