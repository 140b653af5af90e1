"""One registry of explanation methods: the command line, the page, the files and the figures read it."""

import numpy as np
import pytest

from fruitkeras.cli import main
from fruitkeras.explain import METHODS
from fruitkeras.explain.gradcam import gradcam
from fruitkeras.explain.gradient import gradient_x_input
from fruitkeras.explain.integrated_gradients import integrated_gradients
from fruitkeras.explain.smoothgrad import smoothgrad
from fruitkeras.explain.registry import METHOD, NAMES, ExplainOptions


def test_every_front_end_offers_exactly_the_registry():
    import click

    explain = main.get_command(click.Context(main), "explain")
    choices = next(p for p in explain.params if p.name == "methods").type.choices
    assert tuple(choices) == NAMES + ("all",)
    from fruitkeras.webapp import METHOD_LABELS

    assert sorted(METHOD_LABELS.values()) == sorted(NAMES)
    assert list(METHODS) == list(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_each_entry_gives_options_a_file_tag_and_a_caption(name):
    method = METHOD[name]
    options = ExplainOptions()
    keywords = method.options(options, [1.0, 1.0, 1.0])
    assert isinstance(keywords, dict) and method.caption
    assert method.load() is METHODS[name]
    assert "/" not in method.tag(options) and " " not in method.tag(options)


BRIGHTNESS_MODULE = """
import numpy as np


def brightness(model, images, labels=None, gain=1.0):
    return np.asarray(images, np.float32).mean(axis=-1) * gain
"""
# The one registry line: a method with an option of its own, shown on the page too.
BRIGHTNESS_ENTRY = (
    '    Method("brightness", "brightness", "fruitkeras.explain.brightness:brightness", "mean brightness", '
    'options=lambda o, mean: {"gain": o.gain}, tag=lambda o: f"g{o.gain:g}", '
    'declares=(Option("gain", 1.0, "Brightness: its factor.", "amount", page=(0.5, 2.0, 0.5), label="gain"),)),\n')
USE_IT = """
import json, sys
from click.testing import CliRunner
from fruitkeras.cli import main
from fruitkeras.webapp import PAGE_OPTIONS
runner = CliRunner()
shown = runner.invoke(main, ["explain", "--help"]).output
made = runner.invoke(main, ["explain", sys.argv[1], "--model", sys.argv[2], "--method", "brightness", "--gain", "2",
                            "--out", sys.argv[3], "--whole-photo"])
print(json.dumps({"help": shown, "code": made.exit_code, "output": made.output,
                  "page": [option.name for option in PAGE_OPTIONS]}))
"""


def test_adding_a_method_and_its_option_is_one_module_and_one_registry_line(trained_run, tmp_path):
    """A copy of the package with one new module and one line added to the registry, nothing else edited:
    the command line offers the method and its option, and writes its maps; the page shows the option."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    from conftest import REPO

    package = shutil.copytree(REPO / "fruitkeras", tmp_path / "copy" / "fruitkeras",
                              ignore=shutil.ignore_patterns("__pycache__"))
    (package / "explain" / "brightness.py").write_text(BRIGHTNESS_MODULE)
    registry = (package / "explain" / "registry.py").read_text()
    end = registry.index(")\nMETHOD = {")
    (package / "explain" / "registry.py").write_text(registry[:end] + BRIGHTNESS_ENTRY + registry[end:])
    image = next((trained_run["data"] / "Test" / "kiwi").iterdir())
    out = tmp_path / "maps"
    result = subprocess.run([sys.executable, "-c", USE_IT, str(image), str(trained_run["run_dir"]), str(out)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=str(tmp_path / "copy"), PYTHONSAFEPATH="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert "brightness" in found["help"] and "--gain" in found["help"] and "Brightness: its factor." in found["help"]
    assert found["code"] == 0, found["output"]
    assert "gain" in found["page"]
    from fruitkeras.data import load_image

    assert sorted(path.name for path in out.glob(f"{image.stem}_brightness*")) == [
        f"{image.stem}_brightness-g2-loss.npy", f"{image.stem}_brightness-g2-loss.png"]
    written = np.load(out / f"{image.stem}_brightness-g2-loss.npy")
    np.testing.assert_allclose(written, load_image(image, (32, 32)).mean(axis=-1) * 2, rtol=1e-6)


def small_model():
    import keras

    keras.utils.set_random_seed(2)
    return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(3, 3, padding="same", activation="relu"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])


@pytest.mark.parametrize("wrapped", [gradient_x_input, gradcam, integrated_gradients])
def test_smoothgrad_wraps_any_gradient_method(wrapped):
    model = small_model()
    images = np.random.default_rng(0).random((2, 8, 8, 3)).astype(np.float32)
    plain = wrapped(model, images, [0, 2])
    np.testing.assert_allclose(smoothgrad(model, images, [0, 2], samples=3, noise=0.0, base=wrapped), plain,
                               rtol=1e-5, atol=1e-7)
    noisy = smoothgrad(model, images, [0, 2], samples=4, noise=0.2, base=wrapped)
    assert noisy.shape == plain.shape and not np.allclose(noisy, plain)


def test_cli_smooth_option_names_the_wrapped_method(trained_run, runner, tmp_path):
    image = next((trained_run["data"] / "Test" / "plum").iterdir())
    result = runner.invoke(main, ["explain", str(image), "--model", str(trained_run["run_dir"]), "--method",
                                  "smoothgrad", "--smooth", "gradcam", "--samples", "3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"{image.stem}_smoothgrad-gradcam-last-activation-n3-s0.15-logit.npy").exists()
    refused = runner.invoke(main, ["explain", str(image), "--method", "smoothgrad", "--smooth", "occlusion"])
    assert refused.exit_code == 2 and "'occlusion' is not one of" in refused.output


def test_every_caption_says_which_quantity_its_map_explains():
    """Gradient, gradient x input and occlusion explain the loss; Grad-CAM and IG the class score (the logit);
    SmoothGrad what the method it averages explains."""
    import dataclasses

    options = ExplainOptions()
    for name in ("gradient", "gradxinput", "occlusion"):
        assert METHOD[name].caption_for(options).endswith("explains the loss"), name
    assert METHOD["occlusion"].caption_for(dataclasses.replace(options, delta=True)).endswith("explains the loss")
    for name in ("gradcam", "integrated"):
        assert METHOD[name].caption_for(options).endswith("explains the class score (logit)"), name
    for smooth in ("gradient", "gradxinput", "gradcam", "integrated"):
        smoothed = METHOD["smoothgrad"].caption_for(dataclasses.replace(options, smooth=smooth))
        assert smoothed.endswith(f"explains the {METHOD[smooth].quantity}"), smooth
