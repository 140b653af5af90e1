"""Training losses that Keras can save and load with a model."""

import keras


@keras.saving.register_keras_serializable(package="fruitkeras")
class SmoothedSparseCrossEntropy(keras.losses.Loss):
    """Cross-entropy against integer labels with label smoothing, and optionally a fruit-type term.

    Keras's sparse loss has no label smoothing, so the labels become one-hot
    targets over ``num_classes`` first.  Registered, so that a model compiled
    with it loads compiled through plain ``keras.models.load_model``.

    With ``type_weight`` > 0, ``type_of_class`` (a type number per class, as
    ``data.fruit_types`` gives) adds ``type_weight`` times the cross-entropy of
    the photo's fruit type, whose probability is the sum of its classes'
    probabilities.  The classes of one type (three apples and three pears among
    the 77) then share what makes them that fruit, and confusing two apples
    costs less than calling an apple a plum.

    A negative label (``outliers.NO_CLASS``: a photo of no class, made by
    outlier exposure) is trained towards the uniform distribution.
    """

    def __init__(self, num_classes, label_smoothing=0.1, type_of_class=None, type_weight=0.0,
                 name="smoothed_sparse_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.type_of_class = None if type_of_class is None else [int(t) for t in type_of_class]
        self.type_weight = float(type_weight)
        if self.type_weight and (self.type_of_class is None or len(self.type_of_class) != self.num_classes):
            raise ValueError("a type term needs one type number per class")

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        targets = keras.ops.one_hot(labels, self.num_classes)  # all zeros for a negative label
        targets = targets + keras.ops.cast(labels < 0, targets.dtype)[:, None] / self.num_classes
        loss = keras.losses.categorical_crossentropy(targets, y_pred, label_smoothing=self.label_smoothing)
        if not self.type_weight:
            return loss
        membership = keras.ops.one_hot(keras.ops.convert_to_tensor(self.type_of_class, "int32"),
                                       max(self.type_of_class) + 1, dtype=y_pred.dtype)  # class -> type
        type_probabilities = keras.ops.matmul(y_pred, membership)
        true_type = keras.ops.matmul(keras.ops.cast(targets, y_pred.dtype), membership)
        return loss + self.type_weight * keras.losses.categorical_crossentropy(true_type, type_probabilities)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "label_smoothing": self.label_smoothing,
                       "type_of_class": self.type_of_class, "type_weight": self.type_weight})
        return config
