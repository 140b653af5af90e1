"""training.mixed_precision: true and false force, "auto" lets the machine choose (``fruitkeras.precision``);
a file's by_precision changes apply to the precision chosen."""

import json

import pandas as pd
import pytest

from conftest import REPO
from fruitkeras import precision
from fruitkeras.architecture import for_precision, load_architecture, parse_architecture
from fruitkeras.errors import FruitkerasError

SAPPHIRE_RAPIDS = {"sse4_2", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile"}
ZEN_4 = {"sse4_2", "avx2", "avx512f", "avx512_vnni", "avx512_bf16"}
ICE_LAKE = {"sse4_2", "avx2", "avx512f", "avx512_vnni"}
LAPTOP = {"sse4_2", "avx2", "fma"}


@pytest.mark.parametrize("flags, cap, expected", [
    (SAPPHIRE_RAPIDS, None, "mixed_bfloat16"),
    (SAPPHIRE_RAPIDS, "AVX512_CORE_AMX", "mixed_bfloat16"),
    (SAPPHIRE_RAPIDS, "AVX512_CORE_BF16", "mixed_bfloat16"),  # AVX-512 BF16 without AMX: still bfloat16
    (SAPPHIRE_RAPIDS, "AVX512_CORE_VNNI", "float32"),  # kind (b) on the AMX machine
    (SAPPHIRE_RAPIDS, "AVX2", "float32"),  # kind (c)
    (ZEN_4, None, "mixed_bfloat16"),
    (ZEN_4, "AVX2_VNNI_2", "float32"),  # not a subset of AVX512_CORE_BF16 although listed after AVX2
    (ICE_LAKE, None, "float32"),
    (LAPTOP, None, "float32"),
])
def test_auto_resolves_from_the_cpus_flags_and_the_onednn_cap(flags, cap, expected):
    chosen = precision.choose("auto", gpu=False, flags=flags, cap=cap)
    assert chosen.policy == expected
    assert chosen.reason.startswith("auto: ")
    if cap and expected == "float32":
        assert f"ONEDNN_MAX_CPU_ISA={cap}" in chosen.reason


def test_auto_on_a_gpu_is_float16_and_true_and_false_force():
    assert precision.choose("auto", gpu=True).policy == "mixed_float16"
    assert precision.choose(True, gpu=True).policy == "mixed_float16"
    assert precision.choose(True, gpu=False, flags=SAPPHIRE_RAPIDS).policy == "mixed_bfloat16"
    forced = precision.choose(True, gpu=False, flags=LAPTOP)
    assert forced.policy == "mixed_bfloat16" and "slower here than float32" in forced.reason
    assert precision.choose(False, gpu=True).policy == "float32"
    assert precision.choose(False, gpu=False, flags=SAPPHIRE_RAPIDS).policy == "float32"


def test_the_cap_and_the_flags_are_read_from_the_machine(tmp_path, monkeypatch):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile\n\n"
                                      "processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile\n")
    assert precision.cpu_flags(tmp_path / "cpuinfo") == {"fpu", "sse2", "avx2", "avx512f", "amx_bf16", "amx_tile"}
    assert precision.cpu_flags(tmp_path / "missing") is None
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "cpuinfo")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")  # oneDNN takes either case
    assert precision.choose("auto", gpu=False).policy == "float32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert precision.choose("auto", gpu=False).policy == "mixed_bfloat16"
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "missing")
    assert precision.choose("auto", gpu=False).policy == "float32"  # cannot tell: the safe choice
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX3")
    with pytest.raises(FruitkerasError, match="ONEDNN_MAX_CPU_ISA=AVX3 is not one of oneDNN's ISA names"):
        precision.choose("auto", gpu=False, flags=SAPPHIRE_RAPIDS)


@pytest.mark.parametrize("value", [1, "yes", None, "Auto"])
def test_a_wrong_value_is_a_one_line_error_naming_the_file_and_field(runner, tmp_path, value):
    from fruitkeras.cli import main

    source = json.loads((REPO / "architectures" / "tiny.json").read_text())
    source.setdefault("training", {})["mixed_precision"] = value
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(source))
    result = runner.invoke(main, ["train", str(path), "--data", str(tmp_path)])
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        f"error: {path}: training: 'mixed_precision' must be true, false or \"auto\", got {json.dumps(value)}"]


def test_by_precision_changes_apply_to_the_chosen_precision_and_the_command_line_wins(tmp_path):
    source = json.loads((REPO / "architectures" / "tiny.json").read_text())
    source["training"]["mixed_precision"] = "auto"
    source["by_precision"] = {"float32": {"input.height": 24, "input.width": 24, "training.epochs": 3}}
    base = parse_architecture(source, tmp_path / "tiny.json")
    assert for_precision(base, "bfloat16").input_size == base.input_size
    narrow = for_precision(base, "float32")
    assert narrow.input_size == (24, 24) and narrow.training["epochs"] == 3 and narrow.overrides == ()
    overridden = for_precision(base, "float32", ["input.height=28", "input.width=28"])
    assert overridden.input_size == (28, 28) and overridden.overrides == ("input.height=28", "input.width=28")


@pytest.mark.parametrize("variants, message", [
    ([1], "'by_precision' must be a JSON object"),
    ({"float8": {}}, "by_precision: unknown precision 'float8'"),
    ({"float32": {"training.mixed_precision": False}}, "'training.mixed_precision' is not a field a precision may"),
    ({"float32": {"input.height": -1}}, "(by_precision.float32): input: 'height' must be a positive integer"),
])
def test_bad_by_precision_changes_are_named(tmp_path, variants, message):
    source = json.loads((REPO / "architectures" / "tiny.json").read_text())
    source["by_precision"] = variants
    with pytest.raises(FruitkerasError, match=None) as raised:
        parse_architecture(source, tmp_path / "tiny.json")
    assert message in str(raised.value)


def test_a_tiny_auto_run_records_its_precision_and_repeats_its_history(image_folders, tmp_path):
    """On whatever CPU runs the suite: run.json says what the model computed in, and the same seed gives the same
    history in that precision."""
    from fruitkeras.runs import describe_runs, load_model
    from fruitkeras.training import train_architecture

    tiny = REPO / "architectures" / "tiny.json"
    runs = [train_architecture(tiny, data=str(image_folders), run_dir=tmp_path / "runs" / name, epochs=2, verbose=0,
                               seed=5, overrides=["training.mixed_precision=auto"]) for name in ("one", "two")]
    recorded = json.loads((runs[0] / "run.json").read_text())["precision"]
    expected = precision.choose("auto")
    assert recorded == expected.record() and recorded["setting"] == "auto"
    model, _ = load_model(runs[0] / "model.keras")
    assert model.layers[0].compute_dtype == recorded["compute"]
    assert [row["precision"] for row in describe_runs(tmp_path / "runs")] == [recorded["compute"]] * 2
    clock = ["timestamp", "epoch_seconds"]
    first, second = (pd.read_csv(run / "history.csv").drop(columns=clock) for run in runs)
    pd.testing.assert_frame_equal(first, second, check_exact=True)


def test_the_live_file_lets_the_machine_choose():
    live = load_architecture(REPO / "architectures" / "live.json")
    assert live.training["mixed_precision"] == "auto"
