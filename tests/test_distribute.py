"""tf.distribute on this CPU: mirrored over two logical CPU devices, multi-worker over two loopback processes.

Each check runs in a fresh Python process: the CPU can be split into logical
devices only before TensorFlow's runtime starts, and the test process has
started it long before.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, make_image_folders
from fruitkeras.cli import main
from fruitkeras.runs import epochs_logged

TIMEOUT = 300
# Mirrored and single-device runs add the replicas' gradients in another order: float32 rounding only.
WEIGHT_TOLERANCE = 1e-5  # of the largest weight's magnitude


def run_python(code, env=None):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                            timeout=TIMEOUT, env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def fruitkeras(*args, env=None, **popen):
    return subprocess.Popen([sys.executable, "-m", "fruitkeras.cli", *map(str, args)], cwd=REPO,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def finish(process):
    output, _ = process.communicate(timeout=TIMEOUT)
    return process.returncode, output


TINY = REPO / "architectures" / "tiny.json"
MIRRORED_CLI = ["--distribute", "mirrored", "--devices", "CPU:0,CPU:1", "--quiet"]

# A small conv net without batch norm, dropout or augmentation: one step is a pure function of the batch.
PLAIN_ARCHITECTURE = {
    "name": "plain",
    "input": {"height": 32, "width": 32},
    "layers": [{"type": "conv", "filters": 6, "kernel_size": 3, "strides": 2},
               {"type": "activation", "activation": "relu"},
               {"type": "global_avg_pool"},
               {"type": "dense", "units": 8, "activation": "relu"}],
    "training": {"optimizer": "sgd", "learning_rate": 0.05, "batch_size": 8, "epochs": 2, "augmentation": False,
                 "validation_split": 0.2, "precise_bn_batches": 0},
}


@pytest.fixture
def plain_architecture(tmp_path):
    path = tmp_path / "plain.json"
    path.write_text(json.dumps(PLAIN_ARCHITECTURE))
    return path


@pytest.fixture(scope="module")
def mirrored_process(tmp_path_factory, trained_run):
    """One fresh process with the CPU split into two devices, for every check that needs nothing more.

    It trains mirrored and on one device, runs our batch norm under the mirrored strategy, runs
    ``eval --distribute mirrored`` and resumes a mirrored CLI run that a real Ctrl-C stopped in a process of
    its own before (four uses of the strategy in one process, as a notebook would); the tests below each check
    their part of what it did.
    """
    root = tmp_path_factory.mktemp("mirrored")
    architecture = root / "plain.json"
    architecture.write_text(json.dumps(PLAIN_ARCHITECTURE))
    data = make_image_folders(root / "fruits", train_per_class=12, test_per_class=2)
    interrupted = root / "interrupted"
    process = fruitkeras("train", TINY, "--data", data, "--run-dir", interrupted, "--epochs", 50, *MIRRORED_CLI)
    deadline = time.monotonic() + TIMEOUT
    while epochs_logged(interrupted / "history.csv") < 1:  # a real Ctrl-C once the first epoch is logged
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    code, stopped_output = finish(process)
    done = epochs_logged(interrupted / "history.csv")
    resume = ["train", str(TINY), "--run-dir", str(interrupted), "--resume", "--epochs", str(done + 1), *MIRRORED_CLI]
    output = run_python(f"""
        import json, numpy as np, keras
        from fruitkeras import distribute
        from fruitkeras.cli import main
        from fruitkeras.layers import BatchNorm
        from fruitkeras.training import train_architecture
        from fruitkeras.runs import load_model
        results = {{}}
        mirrored = train_architecture({str(architecture)!r}, data={str(data)!r}, run_dir={str(root / "mirrored")!r},
                                      distribute="mirrored", devices="CPU:0,CPU:1", verbose=0)
        single = train_architecture({str(architecture)!r}, data={str(data)!r}, run_dir={str(root / "single")!r}, verbose=0)
        a, b = (load_model(run / "model.keras")[0].get_weights() for run in (mirrored, single))
        results["training"] = {{"difference": max(float(np.abs(x - y).max()) for x, y in zip(a, b)),
                               "scale": max(float(np.abs(w).max()) for w in b)}}

        strategy = distribute.make_strategy("mirrored", "CPU:0,CPU:1")
        rng = np.random.default_rng(0)
        x = np.concatenate([rng.normal(0, 1, (4, 3)), rng.normal(5, 2, (4, 3))]).astype("float32")
        with strategy.scope():
            model = keras.Sequential([keras.Input((3,)), BatchNorm(momentum=0.5)])
            model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
        model.fit(x, np.zeros_like(x), batch_size=8, epochs=1, shuffle=False, verbose=0)
        layer = model.layers[0]
        results["batchnorm"] = {{"mean": np.asarray(layer.moving_mean).tolist(),
                                "variance": np.asarray(layer.moving_variance).tolist()}}

        try:
            main(["eval", {str(trained_run["run_dir"])!r}, "--data", {str(trained_run["data"])!r},
                  "--out", {str(root / "eval-mirrored")!r}, "--batch-size", "4", "--distribute", "mirrored",
                  "--devices", "CPU:0,CPU:1"])
        except SystemExit as exit:
            results["eval_exit"] = exit.code
        try:
            main({resume!r})
        except SystemExit as exit:
            results["resume_exit"] = exit.code
        print(json.dumps(results))
    """)
    results = json.loads(output.strip().splitlines()[-1])
    results["interrupted"] = {"exit": code, "output": stopped_output, "epochs": done, "run": str(interrupted)}
    return root, results


def test_mirrored_training_on_two_cpu_devices_equals_single_device_training(mirrored_process):
    root, results = mirrored_process
    result = results["training"]
    assert result["difference"] <= WEIGHT_TOLERANCE * result["scale"], result
    record = json.loads((root / "mirrored" / "run.json").read_text())
    assert record["distribute"]["replicas"] == 2 and record["distribute"]["strategy"] == "mirrored"
    assert len(record["distribute"]["devices"]) == 2
    assert json.loads((root / "single" / "run.json").read_text())["distribute"]["replicas"] == 1


def test_our_batchnorm_under_mirrored_uses_each_replicas_own_batch(mirrored_process):
    """Two replicas, one global batch of 8 whose halves differ: the moving statistics are the mean of each
    half's own statistics, not the statistics of the whole batch."""
    found = mirrored_process[1]["batchnorm"]
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (4, 3)), rng.normal(5, 2, (4, 3))]).astype("float32")
    halves = x[:4], x[4:]
    per_replica_mean = np.mean([h.mean(axis=0) for h in halves], axis=0)
    per_replica_variance = np.mean([h.var(axis=0) for h in halves], axis=0)
    np.testing.assert_allclose(found["mean"], 0.5 * per_replica_mean, rtol=1e-5)
    np.testing.assert_allclose(found["variance"], 0.5 + 0.5 * per_replica_variance, rtol=1e-5)
    whole_batch_variance = 0.5 + 0.5 * x.var(axis=0)
    assert np.all(np.abs(np.asarray(found["variance"]) - whole_batch_variance) > 1.0)  # the halves' means differ by 5


def test_mirrored_cli_run_is_interrupted_and_resumed(mirrored_process):
    stopped = mirrored_process[1]["interrupted"]
    assert stopped["exit"] == 130, stopped["output"]
    assert "on 2 replicas (mirrored), batch 4 each" in stopped["output"]
    assert mirrored_process[1].get("resume_exit") in (None, 0), mirrored_process[1]  # None: main returned
    run_dir, done = Path(stopped["run"]), stopped["epochs"]
    history = (run_dir / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == [str(n) for n in range(1, done + 2)]
    assert json.loads((run_dir / "run.json").read_text())["resumed"][0]["after_epoch"] == done
    assert (run_dir / "model.keras").is_file()


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for probe in sockets:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in sockets]
    for probe in sockets:
        probe.close()
    return ports


def test_two_worker_run_on_loopback_writes_one_run_folder_and_equals_single_device(tmp_path, plain_architecture):
    from fruitkeras.runs import load_model
    from fruitkeras.training import train_architecture

    data = make_image_folders(tmp_path / "fruits", train_per_class=12, test_per_class=2)
    run_dir = tmp_path / "runs" / "two-workers"
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(fruitkeras("train", plain_architecture, "--data", data, "--run-dir", run_dir,
                                    "--distribute", "multi-worker", "--quiet",
                                    env={"TF_CONFIG": json.dumps(config), "TMPDIR": str(tmp_path)}))
    results = [finish(process) for process in processes]
    for code, output in results:
        assert code == 0, output
    assert "a worker: it writes to" in results[1][1] and "a worker" not in results[0][1]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["two-workers"]
    assert len((run_dir / "history.csv").read_text().splitlines()) == 3  # header and two epochs
    assert json.loads((run_dir / "run.json").read_text())["distribute"] == {"strategy": "multi-worker", "replicas": 2,
                                                                             "mixed_precision": None}
    assert not list(tmp_path.glob("fruitkeras-worker-*"))  # the worker removed its temporary folder

    # Each worker took its half of every global batch: the same steps as one device on the whole batch.
    single = train_architecture(plain_architecture, data=data, run_dir=tmp_path / "single", verbose=0)
    a, b = (load_model(run / "model.keras")[0].get_weights() for run in (run_dir, single))
    scale = max(float(np.abs(w).max()) for w in b)
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, b)) <= WEIGHT_TOLERANCE * scale


def test_bad_distribution_options_are_one_line_errors(runner, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    arch = str(REPO / "architectures" / "tiny.json")
    for args, message in ((["--distribute", "multi-worker"], "needs TF_CONFIG"),
                          (["--devices", "GPU:0"], "--devices goes with --distribute mirrored"),
                          (["--distribute", "mirrored", "--devices", "TPU:0"], "is not a device")):
        result = runner.invoke(main, ["train", arch, "--run-dir", str(tmp_path / "never"), *args])
        assert result.exit_code == 1 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}')
    result = runner.invoke(main, ["train", arch, "--run-dir", str(tmp_path / "never"), "--distribute", "multi-worker"])
    assert result.exit_code == 1 and "TF_CONFIG is not valid" in result.output
    assert not (tmp_path / "never").exists()


def test_batchnorm_under_mixed_precision_keeps_float32_statistics():
    from fruitkeras.layers import BatchNorm

    # 1,024 values near 3 per channel: a bfloat16 sum of them (about 3,000, where bfloat16's step is 16) would be
    # off by percents; the float32 statistics see only the inputs' own bfloat16 rounding (a step of 1/64).
    x = np.random.default_rng(0).normal(3.0, 0.5, (64, 4, 4, 3)).astype("float32")
    reference = BatchNorm(momentum=0.0)
    mixed = BatchNorm(momentum=0.0, dtype="mixed_bfloat16")
    reference(x, training=True)
    output = mixed(x, training=True)
    assert mixed.moving_variance.dtype == "float32" and mixed.moving_mean.dtype == "float32"
    assert output.dtype.name == "bfloat16"
    np.testing.assert_allclose(np.asarray(mixed.moving_mean), np.asarray(reference.moving_mean), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(mixed.moving_variance), np.asarray(reference.moving_variance), rtol=1e-2)
    normalised = np.asarray(output, dtype=np.float32)
    assert abs(normalised.mean()) < 0.02 and abs(normalised.std() - 1.0) < 0.02, (normalised.mean(), normalised.std())


def test_mixed_precision_training_keeps_softmax_and_batchnorm_in_float32(runner, tmp_path):
    from fruitkeras.layers import BatchNorm
    from fruitkeras.runs import load_model

    data = make_image_folders(tmp_path / "fruits", train_per_class=8, test_per_class=2)
    # In this process: the policy is scoped to the training (test_global_state.py).
    result = runner.invoke(main, ["train", str(REPO / "architectures" / "tiny.json"), "--data", str(data),
                                  "--run-dir", str(tmp_path / "run"), "--epochs", "1", "--mixed-precision", "--quiet"])
    assert result.exit_code == 0, result.output
    # No GPU on this machine: bfloat16 (float16 is for GPUs).
    assert json.loads((tmp_path / "run" / "run.json").read_text())["distribute"]["mixed_precision"] == "mixed_bfloat16"
    model, _ = load_model(tmp_path / "run" / "model.keras")
    assert model.layers[0].compute_dtype == "bfloat16" and model.layers[-1].compute_dtype == "float32"
    [norm] = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    assert all(weight.dtype == "float32" for weight in norm.weights)
    assert model(np.zeros((1, 32, 32, 3), np.float32)).dtype == "float32"


def test_the_files_mixed_precision_field_turns_it_on_and_off(image_folders, tmp_path):
    from fruitkeras.training import train_architecture

    tiny = REPO / "architectures" / "tiny.json"
    on = train_architecture(tiny, data=str(image_folders), run_dir=tmp_path / "on", epochs=1, verbose=0,
                            overrides=["training.mixed_precision=true"])
    assert json.loads((on / "run.json").read_text())["distribute"]["mixed_precision"] == "mixed_bfloat16"
    off = train_architecture(tiny, data=str(image_folders), run_dir=tmp_path / "off", epochs=1, verbose=0)
    assert json.loads((off / "run.json").read_text())["distribute"]["mixed_precision"] is None


def test_mirrored_eval_gives_the_single_device_results(mirrored_process, trained_run, runner, tmp_path):
    root, results = mirrored_process
    assert results.get("eval_exit") in (None, 0), results
    # The single-device reference needs no fresh process.
    single = runner.invoke(main, ["eval", str(trained_run["run_dir"]), "--data", str(trained_run["data"]),
                                  "--out", str(tmp_path / "single"), "--batch-size", "4"])
    assert single.exit_code == 0, single.output
    mirrored, single = (json.loads((folder / "test_metrics.json").read_text())
                        for folder in (root / "eval-mirrored", tmp_path / "single"))
    assert mirrored["accuracy"] == single["accuracy"] and abs(mirrored["loss"] - single["loss"]) < 1e-5
    assert (root / "eval-mirrored" / "confusion_matrix.csv").read_text() == \
        (tmp_path / "single" / "confusion_matrix.csv").read_text()
