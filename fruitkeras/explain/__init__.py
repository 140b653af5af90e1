"""Explanation methods.

Every method has the same shape::

    method(model, images, labels=None, **options) -> heatmaps

``images`` is float32 (N, H, W, 3) in [0, 1] as ``fruitkeras.data.load_image``
gives, ``labels`` the class indices to explain (None: the predicted ones), and
the result float32 (N, H, W).  Batch-norm layers always run in inference mode.

One module a method (``gradient``, ``smoothgrad``, ``occlusion``, ``gradcam``,
``integrated_gradients``), listed once in ``registry``; drawing lives in
``drawing``, the faithfulness metrics beside the methods in ``faithfulness``;
nothing here plots.  Importing this package imports no TensorFlow (the
command line reads the registry for its ``--help``); ``METHODS``, the
registry's name -> function, loads the modules on first use.
"""


def __getattr__(name):
    if name == "METHODS":
        from fruitkeras.explain.registry import METHODS as REGISTRY

        return {method.name: method.load() for method in REGISTRY}
    raise AttributeError(f"module 'fruitkeras.explain' has no attribute '{name}'")
