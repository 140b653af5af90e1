"""Outlier exposure (Hendrycks et al. 2019): a share of each training batch made into photos of no class.

A chosen photo is cut in two, across or down at 35-65% of the frame, and
its far side is taken from the next photo of the batch, of another class: a
chimera of two fruits on white, a photo like the training photos but of none
of their classes.  Its label becomes ``NO_CLASS``, which the loss
(``fruitkeras.losses``) trains towards the uniform distribution over the
classes.  The network learns to spread its answer over a fruit it does not
know, and to keep such a fruit's features apart from its classes', which the
verdict's nearest-training-photo test (``fruitkeras.familiarity``) measures.

Drawn statelessly from the batch's key, from streams of the augmentation's
table (``augmentation.STREAMS``), so the same seed still gives the same
history.
"""

NO_CLASS = -1  # the label of an outlier
CUT_RANGE = (0.35, 0.65)  # where the photo is cut, as a fraction of its width or height


def make_outlier_exposure(share):
    """``expose(batch, labels, key) -> (batch, labels)``, making about ``share`` of a batch outliers; None at 0."""
    if not share:
        return None
    import tensorflow as tf

    from fruitkeras.augmentation import draw_uniform, rectangle_masks

    def expose(batch, labels, key):
        count = tf.shape(batch)[0]
        partners, partner_labels = tf.roll(batch, 1, axis=0), tf.roll(labels, 1, axis=0)
        # Two photos of one class make no outlier: those stay as they are.
        chosen = (draw_uniform(key, "outlier_chosen", count, 0.0, 1.0) < share) & (partner_labels != labels)
        cut = draw_uniform(key, "outlier_cut", count, *CUT_RANGE)
        zeros, ones = tf.zeros_like(cut), tf.ones_like(cut)
        across = (draw_uniform(key, "outlier_direction", count, 0.0, 1.0) < 0.5)[:, None]
        # The far side as a box (top, left, height, width): below the cut, or right of it.
        far_side = tf.where(across, tf.stack([cut, zeros, 1.0 - cut, ones], axis=1),
                            tf.stack([zeros, cut, ones, 1.0 - cut], axis=1))
        taken = tf.cast(chosen, tf.float32)[:, None, None, None] * rectangle_masks(far_side, tf.shape(batch)[1],
                                                                                  tf.shape(batch)[2])
        return tf.where(taken > 0, partners, batch), tf.where(chosen, tf.constant(NO_CLASS, labels.dtype), labels)

    return expose
