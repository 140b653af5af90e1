"""fruitkeras: train a CNN on fruit photos, evaluate it, and explain its decisions.

Modules: ``architecture`` (JSON -> keras.Sequential), ``layers`` (our BatchNorm),
``data`` (folders, images, tf.data), ``callbacks``, ``training``, ``evaluation``,
``runs`` (run folders and model files), ``explain`` (heatmaps), ``cli``.
Importing the package does not import TensorFlow.
"""
