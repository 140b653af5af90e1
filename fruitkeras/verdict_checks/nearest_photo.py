"""The class test: familiarity, the cosine similarity between a photo's penultimate features (the input of the
classifier layer) and those of the nearest training photo; 1 is a copy of a training photo.  A fruit of a class
the model never saw is far from all of them, although it is a studio photo."""

import numpy as np

from fruitkeras.verdict_checks.words import UNKNOWN_CLASS

BANK_SCALE = 127  # the normalised features are stored as int8: a similarity error under 0.01


def nearest_similarity(features, bank, chunk=4096):
    """The cosine similarity of each normalised feature vector to its nearest vector in the int8 bank."""
    features = np.asarray(features, dtype=np.float32)
    best = np.full(len(features), -1.0, dtype=np.float32)
    for start in range(0, len(bank), chunk):
        part = bank[start : start + chunk].astype(np.float32) / BANK_SCALE
        part /= np.maximum(np.linalg.norm(part, axis=1, keepdims=True), 1e-12)
        best = np.maximum(best, (features @ part.T).max(axis=1))
    return best


class NearestTrainingPhoto:
    name = "familiarity"
    label = "familiarity: nearest training photo (cosine, penultimate)"
    rejects_as = UNKNOWN_CLASS

    def fit(self, summaries, features):
        return {"bank": np.round(features * BANK_SCALE).astype(np.int8)}

    def score(self, state, summaries, features):
        return nearest_similarity(features, state["bank"])

    def fits(self, state, summaries, features):
        return features.shape[1] == state["bank"].shape[1]

    def stored(self, state):
        return dict(state)

    def restored(self, arrays):
        return dict(arrays)
