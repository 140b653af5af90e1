"""fruitkeras: train a CNN on fruit photos, evaluate it, and explain its decisions.

Modules: ``architecture`` (JSON -> keras.Sequential), ``layers`` (our BatchNorm),
``losses``, ``augmentation``, ``data`` (folders, images, tf.data), ``callbacks``,
``training``, ``evaluation``, ``runs`` (run folders and model files),
``explain`` (heatmaps), ``cli``.

Importing the package does not import TensorFlow (``fruitkeras --help`` stays
fast), yet plain ``keras.models.load_model`` loads a run's model, compiled:
our layer and loss register with Keras as soon as Keras is imported, before
or after this package.

In a notebook::

    import fruitkeras
    model, info = fruitkeras.load_model("runs/fruits77-vgg_small")  # run folder or model file
    info["class_names"]  # the outputs, in order
    for p in fruitkeras.predict("runs/fruits77-vgg_small", ["photo.jpg"]):
        print(p.classes[0], p.verdict, p.familiarity)  # known / unknown class / unfamiliar photo
"""

import importlib.abc
import importlib.util
import sys

# Modules whose import registers Keras objects (layers, losses) that saved models name.
_KERAS_OBJECTS = ("fruitkeras.layers", "fruitkeras.losses")


def _register_keras_objects():
    for module in _KERAS_OBJECTS:
        importlib.import_module(module)


class _RegisterAfterKerasImport(importlib.abc.MetaPathFinder):
    """Runs ``_register_keras_objects`` right after ``import keras`` finishes, wherever it is imported.

    It stays installed until Keras has really been imported: a library may only
    look Keras up (TensorFlow asks ``importlib.util.find_spec``) before the
    import itself, and that look must not use the hook up.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)  # find the real module with the other finders
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        keras_exec = spec.loader.exec_module

        def exec_module(module):
            keras_exec(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            _register_keras_objects()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    _register_keras_objects()
elif not any(isinstance(finder, _RegisterAfterKerasImport) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKerasImport())


def predict(run_or_model, images, top=5):
    """``fruitkeras.prediction.Prediction``s of image files, folders or globs: the ``top`` classes with their
    probabilities, the verdict and the familiarity."""
    from fruitkeras.prediction import predict_paths
    from fruitkeras.runs import resolve_model_path

    return predict_paths(resolve_model_path(run_or_model), images, top)


def load_model(run_or_model):
    """A trained model and its metadata (class names, input size) from a run folder or .keras file."""
    from fruitkeras.runs import load_model as load, resolve_model_path

    return load(resolve_model_path(run_or_model))
