"""Seconds from a cold ``fruitkeras train`` command to Test >= 97% and >= 99%, counted as MLPerf counts.

The clock runs on the wall, from just before the process is started (imports
and all) to the moment the epoch line that first shows the threshold is
printed.  The real CLI runs in a subprocess, one run at a time, never two at
once:

1. the live recipe once with an empty decoded cache (the first run ever);
2. the live recipe for each of ``--seeds`` with the cache warm;
3. the shipped recipe (``vgg_small.json``), stopped once its Test passes 99%
   (its cache warmed first, untimed, so that both recipes start alike).

Then it prints each run's seconds to 97% and 99%, its final Test accuracy,
the command's whole time (to "saved") and its start-up (to the "training"
line, just before the first step), the worst case over the seeds, the ratio
shipped / live, and the achieved training FLOP/s against the matmul of the
precision the runs computed in, measured in this process after the runs.

``--isa CAP`` runs every child, and this process's matmul, with oneDNN capped
at ``CAP`` (``ONEDNN_MAX_CPU_ISA``): ``AVX2`` stands in for a laptop without
AVX-512, ``AVX512_CORE_VNNI`` for an AVX-512 CPU without bfloat16.  The live
file's ``"auto"`` precision honours the cap, as it would choose on such a CPU.

Usage:
  python benchmarks/time_to_accuracy.py --data ../shared/data/fruits-360-77class
  python benchmarks/time_to_accuracy.py --data DIR --isa AVX2 --no-shipped
  python benchmarks/time_to_accuracy.py --data DIR --seeds 11 12 --no-shipped --set training.batch_size=256
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before this process imports TensorFlow (the FLOP counts)
REPO = Path(__file__).resolve().parent.parent
THRESHOLDS = (0.97, 0.99)
TEST_ACCURACY = re.compile(r"^epoch (\d+)/\d+ .*test_accuracy (\d\.\d+)")


def command(architecture, data, run_dir, seed, overrides):
    found = shutil.which("fruitkeras")
    start = [found] if found else [sys.executable, "-c", "from fruitkeras.cli import main; main()"]
    sets = [part for text in overrides for part in ("--set", text)]
    return start + ["train", str(architecture), "--data", str(data), "--run-dir", str(run_dir), "--seed", str(seed),
                    *sets]


def timed_run(architecture, data, run_dir, seed, cache, overrides=(), stop_at=None, log=None):
    """Run one training; returns its timings.  ``stop_at``: end the process once Test reaches it."""
    environment = dict(os.environ, FRUITKERAS_CACHE=str(cache), PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    started = time.perf_counter()
    process = subprocess.Popen(command(architecture, data, run_dir, seed, overrides), cwd=REPO, env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result = {"seed": seed, "reached": {}, "epochs": 0, "final": None, "saved": None, "started": None,
              "stopped": False}
    for line in process.stdout:
        now = time.perf_counter() - started
        if log:
            log.write(f"{now:7.1f}  {line}")
            log.flush()
        match = TEST_ACCURACY.match(line)
        if match:
            epoch, accuracy = int(match[1]), float(match[2])
            result["epochs"], result["final"] = epoch, accuracy
            for threshold in THRESHOLDS:
                if accuracy >= threshold and threshold not in result["reached"]:
                    result["reached"][threshold] = (now, epoch)
            if stop_at and accuracy >= stop_at:
                process.terminate()
                result["stopped"] = True
        if line.startswith("saved "):
            result["saved"] = now
        if line.startswith("training "):
            result["started"] = now
    code = process.wait()
    if code and not result["stopped"]:
        raise SystemExit(f"error: the run of seed {seed} exited {code}; its output is in the log")
    result["history"] = str(Path(run_dir) / "history.csv")
    result["precision"] = json.loads((Path(run_dir) / "run.json").read_text())["precision"]
    return result


def training_flops(architecture, data, compute, overrides=()):
    """(FLOPs of one epoch: its training steps, validation and Test passes; forward FLOPs of one image).

    Forward FLOPs per image are 2 x the multiply-adds of each convolution and
    dense layer; a training step counts 3 x forward (the backward pass costs
    twice the forward), an evaluation 1 x.
    """
    import keras

    from fruitkeras import data as datalib
    from fruitkeras.architecture import build_model, for_precision, load_architecture

    parsed = for_precision(load_architecture(architecture), compute, overrides)  # as the runs trained it
    train = datalib.scan_split(Path(data) / datalib.TRAIN_SPLIT)
    test = datalib.scan_split(Path(data) / datalib.TEST_SPLIT)
    model = build_model(parsed, len(train.class_names))
    forward = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            height, width, filters = layer.output.shape[1:]
            kernel = layer.kernel.shape
            forward += 2 * height * width * filters * kernel[0] * kernel[1] * kernel[2]
        elif isinstance(layer, keras.layers.Dense):
            forward += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    settings = parsed.training
    validation = int(round(len(train) * settings["validation_split"]))
    trained = (len(train) - validation) // settings["batch_size"] * settings["batch_size"]
    return forward * (3 * trained + validation + len(test)), forward


def matmul_flops(dtype="float32", size=2048, rounds=20):
    """TensorFlow's matmul in ``dtype`` on this machine, FLOP/s (the best of ``rounds``)."""
    import tensorflow as tf

    a = tf.cast(tf.random.stateless_normal((size, size), seed=(1, 2)), dtype)
    b = tf.cast(tf.random.stateless_normal((size, size), seed=(3, 4)), dtype)
    tf.linalg.matmul(a, b).numpy()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def describe_cpu():
    """The CPU's model, the flags that decide its kind (AVX2, AVX-512, bfloat16) and the oneDNN cap."""
    from fruitkeras.precision import BFLOAT16_FLAGS, cpu_flags, isa_cap

    model = "?"
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    flags = cpu_flags() or set()
    shown = [flag for flag in ("avx2", "avx512f", "avx512_vnni", *BFLOAT16_FLAGS) if flag in flags]
    return (f"CPU: {model}, {os.cpu_count()} cores; flags: {' '.join(shown) or '?'}; "
            f"oneDNN cap: {isa_cap() or 'none'}")


def epoch_seconds(history):
    import csv

    with open(history, newline="") as file:
        return [float(row["epoch_seconds"]) for row in csv.DictReader(file)]


def reached(result, threshold):
    found = result["reached"].get(threshold)
    return f"{found[0]:6.1f} s (epoch {found[1]})" if found else "    not reached"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--live", default=str(REPO / "architectures" / "live.json"))
    parser.add_argument("--shipped", default=str(REPO / "architectures" / "vgg_small.json"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[170, 171, 172, 173, 174],
                        help="the warm-cache seeds (the defaults were not used while choosing the recipe)")
    parser.add_argument("--cold-seed", type=int, default=175)
    parser.add_argument("--shipped-seed", type=int, default=0, help="the seed of the shipped run (0)")
    parser.add_argument("--no-shipped", action="store_true", help="skip the shipped recipe (no ratio)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="FIELD=VALUE for the live recipe, as fruitkeras train --set")
    parser.add_argument("--work", help="folder for the runs, the cache and the log (default: a temporary one)")
    parser.add_argument("--isa", help="cap oneDNN at this ISA (ONEDNN_MAX_CPU_ISA) in every run and in the matmul, "
                                      "e.g. AVX2 or AVX512_CORE_VNNI")
    args = parser.parse_args()
    if args.isa:  # before this process imports TensorFlow: oneDNN reads it once
        os.environ["ONEDNN_MAX_CPU_ISA"] = args.isa
    print(describe_cpu(), flush=True)

    work = Path(args.work or tempfile.mkdtemp(prefix="time-to-accuracy-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    print(f"runs, cache and every output line: {work} (log.txt)", flush=True)
    rows = []
    with open(work / "log.txt", "a") as log:
        def run(label, architecture, seed, overrides=(), stop_at=None):
            run_dir = work / f"{label}-{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            log.write(f"=== {label} seed {seed}\n")
            result = timed_run(architecture, args.data, run_dir, seed, cache, overrides, stop_at, log)
            result["label"] = label
            rows.append(result)
            print(f"{label:12} seed {seed:4}: 97% at {reached(result, 0.97)}, 99% at {reached(result, 0.99)}, "
                  f"final Test {result['final']:.4f} after {result['epochs']} epochs"
                  + (f", saved at {result['saved']:.1f} s" if result["saved"] else ", stopped")
                  + f"; first step after {result['started']:.1f} s; {result['precision']['compute']}", flush=True)
            return result

        run("live-cold", args.live, args.cold_seed, args.overrides)
        warm = [run("live", args.live, seed, args.overrides) for seed in args.seeds]
        shipped = None
        if not args.no_shipped:
            from fruitkeras import data as datalib
            from fruitkeras.architecture import load_architecture
            from fruitkeras.decoded_cache import decode_cached

            os.environ["FRUITKERAS_CACHE"] = str(cache)
            size = load_architecture(args.shipped).input_size
            for split in (datalib.TRAIN_SPLIT, datalib.TEST_SPLIT):  # untimed: both recipes start from a warm cache
                decode_cached(datalib.scan_split(Path(args.data) / split), size)
            shipped = run("shipped", args.shipped, args.shipped_seed, stop_at=0.99)

    print()
    print(describe_cpu())
    print(f"precision chosen: {warm[0]['precision']['compute']} ({warm[0]['precision']['reason']})")
    print("| run | seed | precision | start-up | 97% at | 99% at | final Test | command to saved |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for result in rows:
        saved = f"{result['saved']:.1f} s" if result["saved"] else "stopped at 99%"
        print(f"| {result['label']} | {result['seed']} | {result['precision']['compute']} | {result['started']:.1f} s | "
              f"{reached(result, 0.97).strip()} | {reached(result, 0.99).strip()} | {result['final']:.4f} | {saved} |")
    worst = {}
    for threshold in THRESHOLDS:
        times = [r["reached"][threshold][0] if threshold in r["reached"] else float("inf") for r in warm]
        worst[threshold] = max(times)
        print(f"worst of {len(warm)} warm seeds to {threshold:.0%}: "
              + (f"{worst[threshold]:.1f} s" if worst[threshold] < float("inf") else "not reached by every seed"))
    if shipped:
        for threshold in THRESHOLDS:
            if threshold not in shipped["reached"]:
                continue
            seconds = shipped["reached"][threshold][0]
            print(f"shipped recipe to {threshold:.0%}: {seconds:.1f} s, " + (
                f"{seconds / worst[threshold]:.2f}x the live recipe's worst seed" if worst[threshold] < float("inf")
                else "no ratio: not every live seed reached it"))

    # After the runs: this process computed nothing while they ran.
    # bfloat16 only where a run computed in it: emulated (under an AVX2 cap, say) it takes minutes and says nothing.
    dtypes = {"float32"} | {"bfloat16" for result in rows if result["precision"]["compute"] != "float32"}
    matmul = {dtype: matmul_flops(dtype) for dtype in sorted(dtypes)}
    for label, architecture, results in (("live", args.live, warm), ("shipped", args.shipped, [shipped] if shipped else [])):
        if not results:
            continue
        # Against the matmul of the precision the run computed in (run.json), as the peak it could reach.
        dtype = "float32" if results[0]["precision"]["compute"] == "float32" else "bfloat16"
        per_epoch, forward = training_flops(architecture, args.data, results[0]["precision"]["compute"],
                                            args.overrides if label == "live" else ())
        seconds = [s for result in results for s in epoch_seconds(result["history"])]
        achieved = per_epoch * len(seconds) / sum(seconds)
        print(f"{label}: {forward / 1e6:.1f} MFLOP forward per image, {per_epoch / 1e12:.2f} TFLOP an epoch "
              f"(training, validation and Test), {achieved / 1e9:.0f} GFLOP/s over {len(seconds)} epochs in {dtype}",
              end="")
        print(f"; {dtype} matmul 2048x2048 here: {matmul[dtype] / 1e9:.0f} GFLOP/s, so {achieved / matmul[dtype]:.0%} "
              "of it (" + ", ".join(f"{name} {value / 1e9:.0f}" for name, value in matmul.items()) + " GFLOP/s)")
    summary = {"rows": rows, "worst": {str(k): v for k, v in worst.items()}}
    (work / "summary.json").write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
