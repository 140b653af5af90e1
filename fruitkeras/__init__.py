"""fruitkeras: train a CNN on fruit photos, evaluate it, and explain its decisions.

Modules: ``architecture`` (JSON -> keras.Sequential), ``layers`` (our BatchNorm),
``data`` (folders, images, tf.data), ``callbacks``, ``training``, ``evaluation``,
``runs`` (run folders and model files), ``explain`` (heatmaps), ``cli``.
Importing the package does not import TensorFlow.

In a notebook::

    import fruitkeras
    model, info = fruitkeras.load_model("runs/fruits77-vgg_small")  # run folder or model file
    info["class_names"]  # the model's outputs, in order
"""


def load_model(run_or_model):
    """A trained model and its metadata (class names, input size) from a run folder or .keras file.

    Loads TensorFlow on first use; registers our BatchNorm layer, so a plain
    ``keras.models.load_model`` works afterwards too.
    """
    from fruitkeras.runs import load_model as load, resolve_model_path

    return load(resolve_model_path(run_or_model))
