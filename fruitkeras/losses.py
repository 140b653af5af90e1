"""Training losses that Keras can save and load with a model."""

import keras


@keras.saving.register_keras_serializable(package="fruitkeras")
class SmoothedSparseCrossEntropy(keras.losses.Loss):
    """Cross-entropy against integer labels with label smoothing.

    Keras's sparse loss has no label smoothing, so the labels become one-hot
    targets over ``num_classes`` first.  Registered, so that a model compiled
    with it loads compiled through plain ``keras.models.load_model``.

    ``type_of_class`` and ``type_weight`` are read from older model files only:
    the fruit-type term they configured measured no gain and was removed
    (docs/real-photos.md); a file that used it is refused.
    """

    def __init__(self, num_classes, label_smoothing=0.1, type_of_class=None, type_weight=0.0,
                 name="smoothed_sparse_cross_entropy", **kwargs):
        super().__init__(name=name, **kwargs)
        if type_weight:
            raise ValueError("the fruit-type loss term was removed (docs/real-photos.md); this loss used it")
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        targets = keras.ops.one_hot(labels, self.num_classes)
        return keras.losses.categorical_crossentropy(targets, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "label_smoothing": self.label_smoothing})
        return config
