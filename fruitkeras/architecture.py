"""JSON architecture files: validation and translation into keras.Sequential.

A file looks like::

    {
      "name": "vgg_small",
      "input": {"height": 100, "width": 100},
      "layers": [
        {"type": "conv", "filters": 16, "kernel_size": 3},
        {"type": "batchnorm"},
        {"type": "activation", "activation": "relu"},
        {"type": "maxpool", "pool_size": 2},
        {"type": "global_avg_pool"},
        {"type": "dense", "units": 64, "activation": "relu"}
      ],
      "training": {"optimizer": "adam", "learning_rate": 0.001,
                   "batch_size": 32, "epochs": 10, "augmentation": true}
    }

The output layer (one softmax unit per class) is appended by ``build_model``,
because the number of classes belongs to the data, not to the architecture.
Layers are numbered from 1 in error messages, in file order.
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

from fruitkeras.errors import FruitkerasError
from fruitkeras.precision import COMPUTES
from fruitkeras.precision import check_setting as check_precision_setting

REQUIRED = object()
ACTIVATIONS = ("relu", "elu", "gelu", "selu", "leaky_relu", "swish", "tanh", "sigmoid", "linear")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


def _positive_int(value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be a non-negative integer")
    return value


def _positive_number(value):
    # NaN compares false with everything and JSON's 1e999 reads as infinity: both must be refused here.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError("must be a finite positive number")
    return float(value)


def _fraction(value):
    """A number in [0, 1): dropout rates, momentum, validation share."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError("must be a number in [0, 1)")
    return float(value)


def _size(value):
    """A positive integer or a pair of them, as Keras takes for kernels and pools."""
    if isinstance(value, list) and len(value) == 2:
        return tuple(_positive_int(v) for v in value)
    try:
        return _positive_int(value)
    except ValueError:
        raise ValueError("must be a positive integer or a list of two") from None


def _boolean(value):
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _one_of(*choices):
    def check(value):
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(map(str, choices))}")
        return value

    return check


def _optional(check):
    return lambda value: None if value is None else check(value)


def _augmentation(value):
    """true/false, or an object of strengths, each 0 to switch that one off."""
    defaults = dict(AUGMENTATION_DEFAULTS)
    if isinstance(value, bool):
        return defaults if value else None
    if not isinstance(value, dict):
        raise ValueError("must be true, false or an object of strengths")
    for key, strength in value.items():
        if key not in defaults:
            raise ValueError(f"has unknown key '{key}' (known: {', '.join(defaults)})")
        try:
            defaults[key] = (_boolean if key in ("flip", "transpose") else _fraction)(strength)
        except ValueError as error:
            raise ValueError(f"key '{key}' {error}") from None
    return defaults


# Strengths: rotation as a fraction of a full turn either way, zoom and brightness
# as fractions, hue as a fraction of the colour circle, saturation as a factor
# spread (0.2: x0.8 to x1.2); background as the share of images laid on a procedural background, zoom_out
# as the largest shrink of those (0.6: the fruit keeps 40% to 100% of its size), specimens as the share of those
# with more copies of the fruit; temperature as the largest red/blue gain step, occlusion and blur as shares of
# images, noise as the largest standard deviation, exposure as the largest log gain of the fruit (0.4: x0.67 to
# x1.49), stretch as the largest log ratio by which the fruit is drawn wider or taller; transpose (true/false) swaps
# half the images' rows and columns, which with flips gives all eight right-angle orientations.  0 switches one off.
AUGMENTATION_DEFAULTS = {"flip": True, "rotation": 0.05, "zoom": 0.1, "brightness": 0.1, "hue": 0.0, "saturation": 0.0,
                         "background": 0.0, "zoom_out": 0.0, "specimens": 0.0, "temperature": 0.0, "occlusion": 0.0,
                         "blur": 0.0, "noise": 0.0, "exposure": 0.0, "stretch": 0.0, "transpose": False}

_POOL = {"pool_size": (_size, 2), "strides": (_optional(_size), None), "padding": (_one_of("valid", "same"), "valid")}

# type -> {field: (check, default)}; the fields are the Keras argument names.
LAYER_FIELDS = {
    "conv": {
        "filters": (_positive_int, REQUIRED),
        "kernel_size": (_size, 3),
        "strides": (_size, 1),
        "padding": (_one_of("same", "valid"), "same"),
        "activation": (_optional(_one_of(*ACTIVATIONS)), None),
        "use_bias": (_boolean, True),
    },
    # gradient: "closed_form" is faster, "autodiff" what older files' histories were trained with (layers.BatchNorm).
    "batchnorm": {"momentum": (_fraction, 0.99), "epsilon": (_positive_number, 1e-3),
                  "gradient": (_one_of("autodiff", "closed_form"), "autodiff")},
    "activation": {"activation": (_one_of(*ACTIVATIONS), REQUIRED)},
    "maxpool": _POOL,
    "avgpool": _POOL,
    "dropout": {"rate": (_fraction, REQUIRED)},
    "flatten": {},
    "global_avg_pool": {},
    "global_max_pool": {},
    "dense": {
        "units": (_positive_int, REQUIRED),
        "activation": (_optional(_one_of(*ACTIVATIONS)), None),
        "use_bias": (_boolean, True),
    },
}

TRAINING_FIELDS = {
    "optimizer": (_one_of(*OPTIMIZERS), "adam"),
    "learning_rate": (_positive_number, 1e-3),
    "batch_size": (_positive_int, 32),
    "epochs": (_positive_int, 10),
    "augmentation": (_augmentation, None),  # None: off
    # The first epoch (counted from 1, as the log counts) that is augmented; the ones before see the photos as
    # they are.  Augmented from the start, the live recipe missed 97% after epoch 1 (docs/live-recipe.md).
    "augmentation_from_epoch": (_positive_int, 1),
    "validation_split": (_fraction, 0.1),
    # Validation takes runs of this many consecutive frames together (1: single frames).
    "validation_block": (_positive_int, 1),
    # Optional parts of a recipe; the defaults leave training as plain as before.
    "schedule": (_one_of("constant", "cosine"), "constant"),  # cosine: decay to 0 over all epochs, per step
    "warmup_epochs": (_non_negative_int, 0),  # linear warm-up from 0 before the schedule
    # cosine only: a first cycle that decays to 0 over this many epochs, then a restart at the full rate that
    # decays over the rest (0: one cycle).  The model logged after the first cycle is annealed, not caught
    # mid-stride at a high rate (docs/live-recipe.md).
    "first_cycle_epochs": (_non_negative_int, 0),
    "weight_decay": (_fraction, 0.0),  # decoupled (AdamW-style) decay, any optimizer
    "momentum": (_fraction, 0.9),  # sgd's momentum and rmsprop's
    "label_smoothing": (_fraction, 0.0),
    # type_loss and outlier_exposure measured no gain and were removed (docs/real-photos.md; code in 65d5ea2).
    # Re-estimate batch-norm statistics after every epoch from this many clean
    # training batches (precise BN, Wu & Johnson 2021); 0: keep the moving averages.
    "precise_bn_batches": (_non_negative_int, 0),
    # Training steps run per call into the compiled graph: fewer trips through Python between steps.
    "steps_per_execution": (_positive_int, 1),
    # XLA for the training step; None: Keras's "auto" (off on a CPU, where it measured slower: docs/live-recipe.md).
    "jit_compile": (_optional(_boolean), None),
    # true: compute in bfloat16 (float16 on a GPU), variables and statistics in float32; "auto": only where the
    # machine has the instructions for it, float32 elsewhere (``fruitkeras.precision``); --mixed-precision forces it.
    "mixed_precision": (check_precision_setting, False),
}

INPUT_FIELDS = {"height": (_positive_int, REQUIRED), "width": (_positive_int, REQUIRED)}
MAX_FILE_BYTES = 1_000_000
TOP_LEVEL_FIELDS = ("name", "description", "input", "layers", "training", "by_precision")
# by_precision: changes a file makes for the compute that training.mixed_precision chooses on the machine
# ({"float32": {"input.height": 64}}: fields named as --set names them; one key per precision.COMPUTES).


@dataclass
class Architecture:
    name: str
    path: Path
    input_size: tuple  # (height, width); images are always RGB
    layers: list  # [(type, {field: value}), ...]
    training: dict
    source: dict  # the file's JSON as read, for copying into a run
    overrides: tuple = ()  # the --set FIELD=VALUE changes applied on top of the file

    @property
    def input_shape(self):
        return (*self.input_size, 3)


def _check_fields(where, given, fields):
    """Validate ``given`` against a field table; returns the completed dict."""
    if not isinstance(given, dict):
        raise FruitkerasError(f"{where}: must be a JSON object")
    unknown = sorted(set(given) - set(fields))
    if unknown:
        known = ", ".join(fields) or "none"
        raise FruitkerasError(f"{where}: unknown field '{unknown[0]}' (known fields: {known})")
    result = {}
    for name, (check, default) in fields.items():
        if name not in given:
            if default is REQUIRED:
                raise FruitkerasError(f"{where}: '{name}' is required")
            result[name] = default
            continue
        try:
            result[name] = check(given[name])
        except ValueError as error:
            raise FruitkerasError(f"{where}: '{name}' {error}, got {json.dumps(given[name])}") from None
    return result


def parse_architecture(source, path):
    """Validate the JSON object ``source`` read from ``path``."""
    path = Path(path)
    if not isinstance(source, dict):
        raise FruitkerasError(f"{path}: the top level must be a JSON object")
    unknown = sorted(set(source) - set(TOP_LEVEL_FIELDS))
    if unknown:
        raise FruitkerasError(
            f"{path}: unknown top-level field '{unknown[0]}' (known: {', '.join(TOP_LEVEL_FIELDS)})"
        )
    for compute in _precision_variants(source, path):
        parse_architecture(_without_variants(source, compute), f"{path} (by_precision.{compute})")
    name = source.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise FruitkerasError(f"{path}: 'name' must be a non-empty string")
    if "input" not in source:
        raise FruitkerasError(f"{path}: 'input' is required, e.g. {{\"height\": 100, \"width\": 100}}")
    size = _check_fields(f"{path}: input", source["input"], INPUT_FIELDS)
    layers_source = source.get("layers")
    if not isinstance(layers_source, list) or not layers_source:
        raise FruitkerasError(f"{path}: 'layers' must be a non-empty list")
    layers = []
    for number, spec in enumerate(layers_source, start=1):
        if not isinstance(spec, dict):
            raise FruitkerasError(f"{path}: layer {number}: must be a JSON object with a 'type'")
        kind = spec.get("type")
        if kind not in LAYER_FIELDS:
            raise FruitkerasError(
                f"{path}: layer {number}: unknown type {json.dumps(kind)} (known: {', '.join(LAYER_FIELDS)})"
            )
        fields = {key: value for key, value in spec.items() if key != "type"}
        layers.append((kind, _check_fields(f"{path}: layer {number} ({kind})", fields, LAYER_FIELDS[kind])))
    training = _check_fields(f"{path}: training", source.get("training", {}), TRAINING_FIELDS)
    if training["first_cycle_epochs"] and (training["schedule"] != "cosine" or training["warmup_epochs"]):
        raise FruitkerasError(f"{path}: training: 'first_cycle_epochs' needs \"schedule\": \"cosine\" "
                              "and no 'warmup_epochs'")
    if (training["augmentation"] or {}).get("transpose") and size["height"] != size["width"]:
        raise FruitkerasError(f"{path}: training: augmentation's 'transpose' swaps rows and columns, so it needs a "
                              f"square input, not {size['height']}x{size['width']}")
    return Architecture(name, path, (size["height"], size["width"]), layers, training, source)


def parse_override(text):
    """``field.path=value`` from ``--set``: (the path's parts, the value as JSON, else as a string)."""
    key, equals, raw = str(text).partition("=")
    if not equals or not key.strip():
        raise FruitkerasError(f"--set {text}: expected FIELD=VALUE, e.g. training.learning_rate=0.001 or "
                              "layers.1.filters=32")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare word: adam, cosine, relu
    return key.strip().split("."), value


def with_overrides(architecture, overrides):
    """The architecture with ``--set`` overrides applied to its file's JSON, validated as the file itself is.

    Paths name fields as the file does; layers are numbered from 1, as in error
    messages (``layers.3.filters=64``).  The result's ``source`` stays the file's
    own JSON (the run copies the file); ``overrides`` are recorded beside it.
    """
    if not overrides:
        return architecture
    parsed = parse_architecture(overridden_json(architecture.source, overrides),
                                f"{architecture.path} (with --set {' '.join(overrides)})")
    parsed.path, parsed.source, parsed.overrides = architecture.path, architecture.source, tuple(overrides)
    return parsed


def _precision_variants(source, path):
    """The checked ``by_precision`` object of a file's JSON: {compute: {field path: value}}."""
    variants = source.get("by_precision", {})
    if not isinstance(variants, dict):
        raise FruitkerasError(f"{path}: 'by_precision' must be a JSON object such as "
                              '{"float32": {"input.height": 64, "input.width": 64}}')
    for compute, changes in variants.items():
        if compute not in COMPUTES:
            raise FruitkerasError(f"{path}: by_precision: unknown precision '{compute}' (known: {', '.join(COMPUTES)})")
        if not isinstance(changes, dict):
            raise FruitkerasError(f"{path}: by_precision.{compute} must be a JSON object of field: value")
        for field in changes:
            if field.split(".")[0] not in ("input", "layers", "training") or field == "training.mixed_precision":
                raise FruitkerasError(f"{path}: by_precision.{compute}: '{field}' is not a field a precision may "
                                      "change (input.*, layers.N.*, training.* but training.mixed_precision)")
    return variants


def variant_overrides(source, compute):
    """The file's ``by_precision`` changes for ``compute`` as --set texts (empty when it has none)."""
    changes = source.get("by_precision", {}).get(compute, {})
    return [f"{field}={json.dumps(value)}" for field, value in changes.items()]


def _without_variants(source, compute):
    """The file's JSON with ``compute``'s changes applied and no by_precision left."""
    plain = {key: value for key, value in source.items() if key != "by_precision"}
    return overridden_json(plain, variant_overrides(source, compute))


def for_precision(architecture, compute, overrides=()):
    """``architecture`` as trained in ``compute``: the file's by_precision changes for it, then the ``--set``
    ``overrides`` on top (the command line has the last word).  ``overrides`` alone are recorded."""
    variant = variant_overrides(architecture.source, compute)
    parsed = with_overrides(architecture, variant + list(overrides or ()))
    parsed.overrides = tuple(overrides or ())
    return parsed


def trained_here(architecture, overrides=(), forced=None):
    """(the ``precision.Precision`` that the file's training.mixed_precision, after ``--set`` ``overrides``, chooses
    on this machine, or ``forced`` (--mixed-precision) does; the architecture as trained in it)."""
    from fruitkeras.precision import choose

    setting = with_overrides(architecture, overrides).training["mixed_precision"] if forced is None else forced
    chosen = choose(setting)
    return chosen, for_precision(architecture, chosen.compute, overrides)


def overridden_json(source, overrides):
    """A copy of an architecture file's JSON with ``--set`` overrides applied (not yet validated)."""
    import copy

    source = copy.deepcopy(source)
    for text in overrides or ():
        parts, value = parse_override(text)
        node = source
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or not 1 <= int(part) <= len(node):
                    raise FruitkerasError(f"--set {text}: {'.'.join(parts[:depth])} has layers 1 to {len(node)}")
                index = int(part) - 1
                if last:
                    node[index] = value
                else:
                    node = node[index]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise FruitkerasError(f"--set {text}: {'.'.join(parts[:depth])} is a value, not an object")
    return source


def load_architecture(path):
    """Read and validate an architecture file; every problem is a FruitkerasError."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:  # before reading it: the run folder would copy it too
            raise FruitkerasError(f"{path}: {path.stat().st_size:,} bytes is not an architecture file "
                                  f"(at most {MAX_FILE_BYTES:,}: a few KB of layers and settings)")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FruitkerasError(f"{path}: architecture file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise FruitkerasError(f"{path}: cannot read architecture file ({error})") from None
    try:
        source = json.loads(text)
    except json.JSONDecodeError as error:
        raise FruitkerasError(f"{path}: {describe_json_error(error)}") from None
    return parse_architecture(source, path)


def describe_json_error(error):
    """A JSONDecodeError as one whole sentence with the line's text.

    Python's messages such as "Unterminated string starting at" expect a
    position after them; the position leads the sentence instead.
    """
    where = f"line {error.lineno}, column {error.colno}"
    message = error.msg[0].lower() + error.msg[1:]
    if message.endswith(" starting at"):
        message = message[: -len(" starting at")] + " starts here"
    elif message.endswith(" at"):
        message = message[: -len(" at")]
    lines = error.doc.splitlines()
    shown = lines[error.lineno - 1].strip() if 0 < error.lineno <= len(lines) else ""
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"invalid JSON at {where}: {message}" + (f" (the line reads: {shown})" if shown else "")


def make_layer(kind, fields):
    import keras

    from fruitkeras.layers import BatchNorm

    classes = {
        "conv": keras.layers.Conv2D,
        "batchnorm": BatchNorm,
        "activation": keras.layers.Activation,
        "maxpool": keras.layers.MaxPooling2D,
        "avgpool": keras.layers.AveragePooling2D,
        "dropout": keras.layers.Dropout,
        "flatten": keras.layers.Flatten,
        "global_avg_pool": keras.layers.GlobalAveragePooling2D,
        "global_max_pool": keras.layers.GlobalMaxPooling2D,
        "dense": keras.layers.Dense,
    }
    return classes[kind](**fields)


def _window(kind, fields):
    """(window, stride, padding) of a layer that slides over the image, else None."""
    if kind == "conv":
        return fields["kernel_size"], fields["strides"], fields["padding"]
    if kind in ("maxpool", "avgpool"):
        return fields["pool_size"], fields["strides"] or fields["pool_size"], fields["padding"]
    return None


def as_pair(value):
    """A size or stride as (height, width): a pair as it is, one number for both."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _after(size, window, stride, padding):
    """One axis's size after a sliding window; <= 0 when the window does not fit."""
    if padding == "same":
        return -(-size // stride)
    return (size - window) // stride + 1 if size >= window else 0


def check_sizes(architecture):
    """Follow the image size through the layers; a window that does not fit is an error
    naming the layer, the sizes that clash and the smallest input that would fit."""
    height, width = architecture.input_size
    trail = [f"{height}x{width}"]
    for number, (kind, fields) in enumerate(architecture.layers, start=1):
        if kind in ("flatten", "global_avg_pool", "global_max_pool", "dense"):
            return
        found = _window(kind, fields)
        if found is None:
            continue
        window, stride, padding = (as_pair(v) if not isinstance(v, str) else v for v in found)
        new = [_after(n, w, s, padding) for n, w, s in zip((height, width), window, stride)]
        if min(new) <= 0:
            smallest = [_smallest_input(architecture, axis, number) for axis in (0, 1)]
            raise FruitkerasError(
                f"{architecture.path}: layer {number} ({kind}) does not fit the shape before it: its "
                f"{window[0]}x{window[1]} window ('valid' padding) is larger than the {height}x{width} map it gets "
                f"(input {' -> '.join(trail)}); the smallest input these layers take is "
                f"{smallest[0]}x{smallest[1]} (height x width)"
            )
        if new != [height, width]:
            trail.append(f"{new[0]}x{new[1]}")
        height, width = new


def _size_after(size, architecture, axis, up_to):
    """One axis's size after the first ``up_to`` layers; 0 when a window does not fit."""
    for kind, fields in architecture.layers[:up_to]:
        found = _window(kind, fields)
        if found is not None:
            window, stride, padding = found
            size = _after(size, as_pair(window)[axis], as_pair(stride)[axis], padding)
            if size <= 0:
                return 0
    return size


def _smallest_input(architecture, axis, up_to):
    """The smallest size along ``axis`` that every window up to layer ``up_to`` fits."""
    size = 1
    while _size_after(size, architecture, axis, up_to) <= 0:
        size += 1
    return size


def build_model(architecture, num_classes):
    """The architecture as a ``keras.Sequential`` ending in a softmax over ``num_classes``."""
    import keras

    check_sizes(architecture)

    model = keras.Sequential(name=architecture.name)
    model.add(keras.Input(shape=architecture.input_shape))
    for number, (kind, fields) in enumerate(architecture.layers, start=1):
        try:
            model.add(make_layer(kind, fields))
        except ValueError as error:
            first_line = str(error).strip().splitlines()[0]
            raise FruitkerasError(
                f"{architecture.path}: layer {number} ({kind}) does not fit the shape before it: {first_line}"
            ) from None
    if len(model.output_shape) != 2:
        raise FruitkerasError(
            f"{architecture.path}: the layers end in shape {model.output_shape[1:]}; "
            "add a 'flatten' or 'global_avg_pool' layer before the dense layers"
        )
    # Under a mixed-precision policy the softmax stays float32, as Keras's guide advises: its exp overflows in float16.
    mixed = keras.mixed_precision.global_policy().compute_dtype != "float32"
    model.add(keras.layers.Dense(num_classes, activation="softmax", name="predictions",
                                 **({"dtype": "float32"} if mixed else {})))
    return model
