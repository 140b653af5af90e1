"""Explanation methods.

Every method has the same shape::

    method(model, images, labels=None, **options) -> heatmaps

``images`` is float32 (N, H, W, 3) in [0, 1] as ``fruitkeras.data.load_image``
gives, ``labels`` the class indices to explain (None: the predicted ones), and
the result float32 (N, H, W).  Batch-norm layers always run in inference mode.
Drawing lives in ``drawing``; nothing here plots.
"""

from fruitkeras.explain.gradcam import gradcam
from fruitkeras.explain.gradient import gradient_saliency, gradient_x_input, smoothgrad
from fruitkeras.explain.integrated_gradients import integrated_gradients
from fruitkeras.explain.occlusion import occlusion

METHODS = {
    "gradient": gradient_saliency,
    "smoothgrad": smoothgrad,
    "gradxinput": gradient_x_input,
    "occlusion": occlusion,
    "gradcam": gradcam,
    "integrated": integrated_gradients,
}
