"""The photo test: how typical a photo's low-level statistics are of the training photos, whatever their class.

Each block's feature maps are summarised by the mean and standard deviation of
every channel (``familiarity.image_features``), and one Gaussian (shrunk
covariance) is fitted over those summaries; the score is minus the squared
Mahalanobis distance.  A scene, a cluttered table or noise is far from a single
fruit on white.
"""

import numpy as np

from fruitkeras.verdict_checks.words import UNFAMILIAR_PHOTO

SHRINKAGE = 1e-3  # of the covariance towards its mean variance: the summaries have near-constant channels


def gaussian(summaries):
    """(mean, precision) of the summaries, the covariance shrunk towards its mean variance."""
    summaries = np.asarray(summaries, dtype=np.float64)
    mean = summaries.mean(axis=0)
    centred = summaries - mean
    covariance = centred.T @ centred / max(len(summaries) - 1, 1)
    scale = max(float(np.trace(covariance)) / len(covariance), 1e-12)
    covariance = (1 - SHRINKAGE) * covariance + SHRINKAGE * scale * np.eye(len(covariance))
    return mean, np.linalg.inv(covariance)


def photo_typicality(summaries, mean, precision):
    """Minus the squared Mahalanobis distance of each summary to the training photos' Gaussian."""
    centred = np.asarray(summaries, dtype=np.float64) - mean
    return -np.einsum("ij,jk,ik->i", centred, precision, centred)


class PhotoTypicality:
    name = "photo"  # its arrays' prefix in familiarity.npz
    label = "photo typicality (block summaries, one Gaussian)"
    rejects_as = UNFAMILIAR_PHOTO

    def fit(self, summaries, features):
        mean, precision = gaussian(summaries)
        return {"mean": mean, "precision": precision}

    def score(self, state, summaries, features):
        return photo_typicality(summaries, state["mean"], state["precision"])

    def fits(self, state, summaries, features):
        return summaries.shape[1] == len(state["mean"])

    def stored(self, state):
        return {key: value.astype(np.float32) for key, value in state.items()}

    def restored(self, arrays):
        return {key: np.asarray(value, dtype=np.float64) for key, value in arrays.items()}
