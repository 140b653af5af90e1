"""Outlier exposure (Hendrycks et al. 2019): a share of each training batch made into photos of no class.

A chosen photo is cut in two, across or down at 35-65% of the frame, and
its far side is taken from the next photo of the batch, of another class: a
chimera of two fruits on white, a photo like the training photos but of none
of their classes.  Its label becomes ``NO_CLASS``, which the loss
(``fruitkeras.losses``) trains towards the uniform distribution over the
classes.  The network learns to spread its answer over a fruit it does not
know, and to keep such a fruit's features apart from its classes', which the
verdict's nearest-training-photo test (``fruitkeras.familiarity``) measures.

Drawn statelessly from the batch's key, like the augmentation, so the same
seed still gives the same history.
"""

NO_CLASS = -1  # the label of an outlier
# Streams folded into the batch key; apart from the augmentation's (``augmentation.STREAMS``: 1-35).
STREAMS = {"chosen": 101, "cut": 102, "direction": 103}
CUT_RANGE = (0.35, 0.65)  # where the photo is cut, as a fraction of its width or height


def make_outlier_exposure(share):
    """``expose(batch, labels, key) -> (batch, labels)``, making about ``share`` of a batch outliers; None at 0."""
    if not share:
        return None
    import tensorflow as tf

    def uniform(key, stream, count, low=0.0, high=1.0):
        return tf.random.stateless_uniform((count,), tf.random.experimental.stateless_fold_in(key, STREAMS[stream]),
                                           minval=low, maxval=high)

    def expose(batch, labels, key):
        count, height, width = tf.shape(batch)[0], tf.shape(batch)[1], tf.shape(batch)[2]
        partners, partner_labels = tf.roll(batch, 1, axis=0), tf.roll(labels, 1, axis=0)
        # Two photos of one class make no outlier: those stay as they are.
        chosen = (uniform(key, "chosen", count) < share) & (partner_labels != labels)
        cut = uniform(key, "cut", count, *CUT_RANGE)[:, None, None]
        rows = (tf.cast(tf.range(height), tf.float32)[None, :, None] + 0.5) / tf.cast(height, tf.float32)
        columns = (tf.cast(tf.range(width), tf.float32)[None, None, :] + 0.5) / tf.cast(width, tf.float32)
        across = (uniform(key, "direction", count) < 0.5)[:, None, None]
        far_side = tf.where(across, rows >= cut, columns >= cut)  # (N, H, W)
        taken = (chosen[:, None, None] & far_side)[..., None]
        return tf.where(taken, partners, batch), tf.where(chosen, tf.constant(NO_CLASS, labels.dtype), labels)

    return expose
