"""The verdict that comes with every prediction: ``known``, ``unknown class`` or ``unfamiliar photo``.

The verdict's tests (``fruitkeras.verdict_checks``: the photo test, then the
class test) are fitted on a trained model's Training photos only and stored
in the run folder (``familiarity.npz``), each test's arrays and threshold
under its name.  A photo's verdict is the ``rejects_as`` of the first test
whose score is below its threshold, else ``known``; the familiarity shown with
it is the class test's score.

The thresholds together accept ``ACCEPTED_SHARE`` of held-out training photos:
the run's validation share, seen through the run's own training augmentation
less what takes a photo out of the studio (backgrounds, copies, camera effects:
``augmentation.studio_settings``).  A model trained on composited photos must
still call a scene unfamiliar: calibrated on composited photos, its thresholds
accepted most real photos and most photos of no fruit at all, and it is right
on few of them.  Fruits-360's validation frames are near-copies of training
frames (consecutive frames of one rotating fruit), and a threshold set on them
as they are turns away about one Test photo in ten; the augmentation stands for
the difference between two photos of the same fruit that training promises to
bridge.  ``docs/real-photos.md`` compares this choice with max-softmax,
max-logit, energy and Mahalanobis scores, measured by ``benchmarks/open_set.py``.
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

from fruitkeras.verdict_checks import CHECKS
from fruitkeras.verdict_checks.nearest_photo import NearestTrainingPhoto
from fruitkeras.verdict_checks.words import KNOWN, NOT_AVAILABLE, UNFAMILIAR_PHOTO, UNKNOWN_CLASS, VERDICTS  # noqa: F401

ACCEPTED_SHARE = 0.99  # of held-out in-distribution photos, by all the tests together
CALIBRATION_STREAM = 2  # the seed offset of the calibration augmentation (training uses seed, precise BN seed + 1)
BATCH = 256
# The shipped run's file predates the tests' own names for their arrays.
OLD_NAMES = {"photo_mean": "photo.mean", "photo_precision": "photo.precision", "photo_threshold": "photo.threshold",
             "bank": "familiarity.bank", "familiarity_threshold": "familiarity.threshold"}
CLASS_TEST = NearestTrainingPhoto.name  # the test whose score every answer shows as its familiarity


@dataclass
class Familiarity:
    """A model's fitted verdict tests (``fit``) and what they say of images (``verdicts``)."""

    states: dict  # test name -> its fitted arrays
    thresholds: dict  # test name -> a score below it fails the test
    details: dict = field(default_factory=dict)  # how and on what it was fitted

    def scores(self, model, images):
        """{test name: its score of each of float images (N, H, W, 3)}."""
        return self._scores_and_probabilities(model, images)[0]

    def verdicts(self, model, images):
        """[(verdict, familiarity)] for each image."""
        return self.verdicts_and_probabilities(model, images)[0]

    def verdicts_and_probabilities(self, model, images):
        """([(verdict, familiarity)] for each image, their class probabilities (N, classes)): one forward pass."""
        scores, probabilities = self._scores_and_probabilities(model, images)
        return list(zip(self.verdicts_of(scores), (float(f) for f in scores[CLASS_TEST]))), probabilities

    def verdicts_of(self, scores):
        """The verdict of each image from its tests' scores ({test name: (N,)}): the first test failed decides."""
        failed = [(check.rejects_as, np.asarray(scores[check.name]) < self.thresholds[check.name])
                  for check, _ in CHECKS]
        return [next((verdict for verdict, fails in failed if fails[image]), KNOWN)
                for image in range(len(failed[0][1]))]

    def _scores_and_probabilities(self, model, images):
        summaries, features, probabilities = image_features(model, images)
        if not all(check.fits(self.states[check.name], summaries, features) for check, _ in CHECKS):
            raise FruitkerasError("the familiarity statistics do not fit this model's layers; "
                                  "fit them again (fruitkeras fit-familiarity RUN)")
        return {check.name: check.score(self.states[check.name], summaries, features) for check, _ in CHECKS}, \
            probabilities


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
    from fruitkeras.forward import compiled, in_batches

    function = compiled(model, "familiarity-features", lambda proxy: _summaries_and_features(list(proxy.layers)))
    return in_batches(function, BATCH, np.asarray(images, dtype=np.float32))


def thresholds(scores, accepted_share=ACCEPTED_SHARE):
    """{test name: threshold} that together accept ``accepted_share`` of these in-distribution scores ({test name:
    (N,)}): each test but the last rejects its share of the rejections (``CHECKS``), the last enough of the
    photos the others keep to reach the total."""
    rejected = 1.0 - accepted_share
    kept = np.ones(len(next(iter(scores.values()))), dtype=bool)  # by the tests before this one
    found = {}
    for check, share in CHECKS:
        values = np.asarray(scores[check.name])
        if share is not None:
            found[check.name] = float(np.quantile(values, rejected * share))
            kept &= values >= found[check.name]
            continue
        share_left = 1.0 - accepted_share / max(kept.mean(), accepted_share)
        found[check.name] = float(np.quantile(values[kept], min(max(share_left, 0.0), 1.0)))
    return found


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
    """Fit the verdict's tests on a decoded Training split: each test's statistics on ``train_rows`` as they
    are, the thresholds on ``validation_rows`` seen through the ``augmentation`` settings (training's own),
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
    states = {check.name: check.fit(summaries, features) for check, _ in CHECKS}
    augmenter = make_augmenter(studio_settings(augmentation))
    calibration = _split_features(model, split, validation_rows, augmenter, seed + CALIBRATION_STREAM)
    scores = {check.name: check.score(states[check.name], *calibration) for check, _ in CHECKS}
    details = {
        "fitted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_photos": int(len(train_rows)),
        "calibration_photos": int(len(validation_rows)),
        "calibration_augmented": augmenter is not None,
        "accepted_share": ACCEPTED_SHARE,
        "shares_of_rejections": {check.name: share for check, share in CHECKS},
    }
    return Familiarity(states, thresholds(scores), details)


def save(familiarity, path, model_path):
    """Write the statistics next to the model they belong to (``model_path``'s checksum is kept with them)."""
    path = Path(path)
    details = dict(familiarity.details, model_sha256=_checksum(model_path))
    arrays = {}
    for check, _ in CHECKS:
        arrays.update({f"{check.name}.{key}": value for key, value in check.stored(familiarity.states[check.name]).items()})
        arrays[f"{check.name}.threshold"] = np.float64(familiarity.thresholds[check.name])
    with replaced_atomically(path) as temporary:
        np.savez_compressed(temporary, details=np.array(json.dumps(details)), **arrays)


def load(path, model_path=None):
    """The statistics in ``path``; with ``model_path``, refused (FruitkerasError) when fitted for another model."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {OLD_NAMES.get(key, key): stored[key] for key in stored.files}
        states, found = {}, {}
        for check, _ in CHECKS:
            prefix = check.name + "."
            mine = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
            found[check.name] = float(mine.pop("threshold"))
            states[check.name] = check.restored(mine)
        familiarity = Familiarity(states, found, json.loads(str(arrays["details"])))
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
