"""The explanation methods, one entry each: the single list the command line, the page, the file names,
the figures and ``--method all`` read.

Adding a method is one module in ``fruitkeras/explain/`` with a function of
the common signature ``method(model, images, labels=None, **options) -> maps``,
plus one ``Method`` line below.  This module imports no TensorFlow (the
command line's ``--help`` reads it); a method's function is imported when it
is first used.
"""

import importlib
from dataclasses import dataclass, field


@dataclass
class ExplainOptions:
    """Every method's options; each method takes the ones it knows (its ``Method.options``)."""

    reduce: str = "max"
    samples: int = 25
    noise: float = 0.15
    smooth: str = "gradient"  # the method SmoothGrad averages over noisy copies
    patch: int = 10
    stride: int = 1
    fill: str = "white"
    delta: bool = False
    batch_size: int = 512
    progress: object = False  # True: a terminal bar; a function(done, total): the web page's bar
    layer: int = None  # Grad-CAM's layer (architecture numbering); None: the last rectified feature maps
    baseline: str = "white"  # Integrated Gradients' starting image, a colour as --fill takes it
    steps: int = 64
    xla: bool = True  # occlusion compiled with XLA: 0.6 s more for the first map, 1.7x faster maps after


def _fill(text, mean_colour, what="fill"):
    from fruitkeras.explain.fill import parse_fill

    return parse_fill(text, mean_colour, what=what)


def _colour_tag(text):
    """A fill or baseline as it may stand in a file name."""
    return str(text).replace(",", "_").replace(" ", "")


LOSS, LOGIT = "loss", "class score (logit)"
QUANTITY_IN_NAMES = {LOSS: "loss", LOGIT: "logit"}  # the last word of every map's file name


@dataclass(frozen=True)
class Method:
    """One explanation method: how the command line, the page, the files and the figures know it."""

    name: str  # --method value and file names
    label: str  # the page's checkbox
    function: str  # "module:function", imported on first use
    caption: str  # over the map in the figure
    options: object = field(default=lambda options, mean_colour: {})  # ExplainOptions -> the function's keywords
    tag: object = field(default=lambda options: "")  # ExplainOptions -> the options that shape the map, for names
    # The map value that means "no effect": "zero", or "loss" (the unoccluded image's loss, for plain occlusion).
    reference: object = field(default=lambda options: "zero")
    delta_caption: str = None  # the caption when ``--delta`` maps the change instead
    gradient_based: bool = False  # SmoothGrad can average it over noisy copies
    # What the map explains: the loss of the explained class, or its score before the softmax.  The two are
    # never on one colour scale: a grid, the only figure with a shared scale, holds one method's maps.
    quantity: str = LOSS

    def load(self):
        module, _, name = self.function.partition(":")
        return getattr(importlib.import_module(module), name)

    def quantity_for(self, options):
        return self.quantity

    def caption_for(self, options):
        caption = self.delta_caption if options.delta and self.delta_caption else self.caption
        return f"{caption}; explains the {self.quantity_for(options)}"


@dataclass(frozen=True)
class SmoothedMethod(Method):
    """SmoothGrad: it explains what the method it averages (``--smooth``) explains."""

    def quantity_for(self, options):
        return METHOD[options.smooth].quantity_for(options)


def _smoothgrad_options(options, mean_colour):
    base = METHOD[options.smooth]
    return {"samples": options.samples, "noise": options.noise, "base": base.load(),
            **base.options(options, mean_colour)}


def _smoothgrad_tag(options):
    inner = METHOD[options.smooth].tag(options)
    base = inner if options.smooth == "gradient" else f"{options.smooth}-{inner}".rstrip("-")
    return f"{base}-n{options.samples}-s{options.noise:g}"


METHODS = (
    Method("gradient", "gradient", "fruitkeras.explain.gradient:gradient_saliency", "|d loss / d pixel|",
           options=lambda o, mean: {"reduce": o.reduce}, tag=lambda o: o.reduce, gradient_based=True),
    SmoothedMethod("smoothgrad", "SmoothGrad", "fruitkeras.explain.smoothgrad:smoothgrad",
           "SmoothGrad: the mean map over noisy copies", options=_smoothgrad_options, tag=_smoothgrad_tag),
    Method("gradxinput", "gradient x input", "fruitkeras.explain.gradient:gradient_x_input", "|gradient x input|",
           options=lambda o, mean: {"reduce": o.reduce}, tag=lambda o: o.reduce, gradient_based=True),
    Method("occlusion", "occlusion", "fruitkeras.explain.occlusion:occlusion", "loss with patch centred here",
           options=lambda o, mean: {"patch": o.patch, "stride": o.stride, "fill": _fill(o.fill, mean),
                                    "batch_size": o.batch_size, "relative": o.delta, "progress": o.progress,
                                    "xla": o.xla},
           tag=lambda o: f"p{o.patch}-s{o.stride}-{_colour_tag(o.fill)}" + ("-delta" if o.delta else ""),
           reference=lambda o: "zero" if o.delta else "loss", delta_caption="loss change with patch centred here"),
    Method("gradcam", "Grad-CAM", "fruitkeras.explain.gradcam:gradcam", "Grad-CAM",
           options=lambda o, mean: {"layer": o.layer},
           tag=lambda o: "last-activation" if o.layer is None else f"layer{o.layer}", gradient_based=True,
           quantity=LOGIT),
    Method("integrated", "Integrated Gradients", "fruitkeras.explain.integrated_gradients:integrated_gradients",
           "integrated gradients (red: for the class)",
           options=lambda o, mean: {"baseline": _fill(o.baseline, mean, what="baseline"), "steps": o.steps},
           tag=lambda o: f"{_colour_tag(o.baseline)}-n{o.steps}", gradient_based=True, quantity=LOGIT),
)
METHOD = {method.name: method for method in METHODS}
NAMES = tuple(METHOD)
SMOOTHABLE = tuple(method.name for method in METHODS if method.gradient_based)
