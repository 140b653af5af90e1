"""The explanation methods, one entry each: the single list the command line, the page, the file names,
the figures and ``--method all`` read.

Adding a method is one module in ``fruitkeras/explain/`` with a function of
the common signature ``method(model, images, labels=None, **options) -> maps``,
plus one ``Method`` line below.  A method declares its options (``Option``,
``Method.declares``): the command line's flags and ``ExplainOptions`` are
made from those, so a new option is one ``Option`` and its place in a
``declares``; the page shows the options that have a ``page`` control.  This module imports no TensorFlow (the
command line's ``--help`` reads it); a method's function is imported when it
is first used.
"""

import importlib
from dataclasses import dataclass, field, make_dataclass


@dataclass(frozen=True)
class Option:
    """One option a method declares: the command line's ``--flag`` (the name with dashes) and, for the page, its
    control.  ``kind``: "count" (an integer >= 1), "count or none", "amount" (a float >= 0), "text", "flag"
    (on/off; ``negatable``: --x/--no-x), or a tuple of choices."""

    name: str
    default: object
    help: str
    kind: object = "text"
    negatable: bool = False
    page: tuple = None  # the page's slider (lowest, highest, step), or its dropdown's choices; None: not on the page
    label: str = None  # the page's label

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")


# The options, each declared once; a method lists those it takes (``Method.declares``), shared ones included.
REDUCE = Option("reduce", "max", "How gradient maps combine the colour channels.", ("max", "l2"))
SAMPLES = Option("samples", 25, "SmoothGrad noisy copies.", "count")
SMOOTH = Option("smooth", "gradient", "The method SmoothGrad averages over noisy copies.",
                ("gradient", "gradxinput", "gradcam", "integrated"))
NOISE = Option("noise", 0.15, "SmoothGrad noise std.", "amount")
PATCH = Option("patch", 10, "Occlusion square side (pixels).", "count", page=(2, 50, 1), label="patch (pixels)")
STRIDE = Option("stride", 1, "Occlusion grid step (pixels).", "count", page=(1, 20, 1), label="stride (pixels)")
FILL = Option("fill", "white", "Occlusion fill: white, grey, black, mean (training data), a number or r,g,b in [0, 1].",
              page=("white", "grey", "black", "mean"), label="fill (a name, a number or r,g,b in [0, 1])")
DELTA = Option("delta", False, "Occlusion maps the loss change against the unoccluded image instead of the loss.",
               "flag")
BATCH_SIZE = Option("batch_size", 512, "Occlusion positions per forward pass (bounds memory).", "count")
XLA = Option("xla", True, "Compile occlusion with XLA: about 0.6 s more for the first map, then 1.7x faster maps.",
             "flag", negatable=True)
LAYER = Option("layer", None, "Grad-CAM: the layer whose feature maps are weighed, numbered as in the architecture "
               "file (default: the last rectified feature maps: the ReLU after the last convolution).", "count or none")
BASELINE = Option("baseline", "white", "Integrated Gradients: the starting image's colour, as --fill takes it.")
STEPS = Option("steps", 64, "Integrated Gradients: integration steps.", "count")


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
    declares: tuple = ()  # its ``Option``s: the command line's flags and ``ExplainOptions``' fields come from these

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
           options=lambda o, mean: {"reduce": o.reduce}, tag=lambda o: o.reduce, gradient_based=True,
           declares=(REDUCE,)),
    SmoothedMethod("smoothgrad", "SmoothGrad", "fruitkeras.explain.smoothgrad:smoothgrad",
           "SmoothGrad: the mean map over noisy copies", options=_smoothgrad_options, tag=_smoothgrad_tag,
           declares=(SAMPLES, SMOOTH, NOISE)),
    Method("gradxinput", "gradient x input", "fruitkeras.explain.gradient:gradient_x_input", "|gradient x input|",
           options=lambda o, mean: {"reduce": o.reduce}, tag=lambda o: o.reduce, gradient_based=True,
           declares=(REDUCE,)),
    Method("occlusion", "occlusion", "fruitkeras.explain.occlusion:occlusion", "loss with patch centred here",
           options=lambda o, mean: {"patch": o.patch, "stride": o.stride, "fill": _fill(o.fill, mean),
                                    "batch_size": o.batch_size, "relative": o.delta, "progress": o.progress,
                                    "xla": o.xla},
           tag=lambda o: f"p{o.patch}-s{o.stride}-{_colour_tag(o.fill)}" + ("-delta" if o.delta else ""),
           reference=lambda o: "zero" if o.delta else "loss", delta_caption="loss change with patch centred here",
           declares=(PATCH, STRIDE, FILL, DELTA, BATCH_SIZE, XLA)),
    Method("gradcam", "Grad-CAM", "fruitkeras.explain.gradcam:gradcam", "Grad-CAM",
           options=lambda o, mean: {"layer": o.layer},
           tag=lambda o: "last-activation" if o.layer is None else f"layer{o.layer}", gradient_based=True,
           quantity=LOGIT, declares=(LAYER,)),
    Method("integrated", "Integrated Gradients", "fruitkeras.explain.integrated_gradients:integrated_gradients",
           "integrated gradients (red: for the class)",
           options=lambda o, mean: {"baseline": _fill(o.baseline, mean, what="baseline"), "steps": o.steps},
           tag=lambda o: f"{_colour_tag(o.baseline)}-n{o.steps}", gradient_based=True, quantity=LOGIT,
           declares=(BASELINE, STEPS)),
)
METHOD = {method.name: method for method in METHODS}
NAMES = tuple(METHOD)
SMOOTHABLE = tuple(method.name for method in METHODS if method.gradient_based)
assert SMOOTH.kind == SMOOTHABLE, "SmoothGrad's choices are the gradient-based methods"

# Every declared option once, in the methods' order, with the methods that take it (SmoothGrad also passes its
# inner method's on).
OPTIONS = {}
TAKEN_BY = {}
for _method in METHODS:
    for _option in _method.declares:
        if OPTIONS.setdefault(_option.name, _option) is not _option:
            raise ValueError(f"two options named {_option.name!r}: declare one and list it in both methods")
        TAKEN_BY.setdefault(_option.name, []).append(_method.name)

# Every method's options in one object: each method reads the ones it declared.  ``progress``: True: a
# terminal bar; a function(done, total): the page's bar.
ExplainOptions = make_dataclass(
    "ExplainOptions", [(option.name, object, field(default=option.default)) for option in OPTIONS.values()]
    + [("progress", object, field(default=False))])
ExplainOptions.__module__ = __name__
ExplainOptions.__doc__ = "Every method's declared options (``OPTIONS``), with their defaults, and ``progress``."
