"""Occlusion speed: our incremental engine vs a batched peer and a naive one-forward-pass-per-position loop.

Ours is timed compiled with XLA (the default) and without (``--no-xla``); the peer at its fastest of 256 or 512 copies
per call, with and without XLA.

Same model, same image, same patch and fill, in one run.  The batched peer
works as tf-explain and Captum (``perturbations_per_eval``) do: the occluded
copies are built in NumPy, --batch-size at a time, and sent through one
compiled ``model(x, training=False)`` per batch; the loss comes from the
probabilities.  The naive loop is
what one writes first: for every position, copy the image, paint the square,
call the model on that one image.  By default it is timed on a sample of
positions spread over the image and scaled to the full map (--naive-positions
0 times all of them); the two maps are compared on the sampled positions.

    python benchmarks/bench_occlusion.py [--model runs/fruits77-vgg_small] [--image photo.jpg]
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from fruitkeras.architecture import build_model, load_architecture  # noqa: E402
from fruitkeras.data import load_image  # noqa: E402
from fruitkeras.explain.fill import parse_fill  # noqa: E402
from fruitkeras.explain.occlusion import occlusion  # noqa: E402
from fruitkeras.explain.class_scores import loss_function  # noqa: E402
from fruitkeras.runs import load_model  # noqa: E402

DEFAULT_MODEL = Path("runs/fruits77-vgg_small/model.keras")
DEFAULT_IMAGE = Path("samples/Apple_Braeburn_1.jpg")


def naive_losses(model, image, label, positions, patch, fill):
    """One eager forward pass (the same loss as ours) per position."""
    loss = loss_function(model)
    labels = tf.constant([label])
    results = []
    for row, column in positions:
        occluded = image.copy()
        top, left = row - patch // 2, column - patch // 2
        occluded[max(top, 0) : max(top + patch, 0), max(left, 0) : max(left + patch, 0)] = fill
        results.append(float(loss(occluded[None], labels)[0]))
    return np.asarray(results)


def batched_peer_losses(predict, image, label, positions, patch, fill, batch_size):
    """The peer: NumPy-made occluded copies, one compiled model call per batch, cross-entropy from probabilities.

    ``predict`` is the peer's compiled ``model(x, training=False)``, made once (traced by the warm-up call)."""
    results = []
    for start in range(0, len(positions), batch_size):
        chunk = positions[start : start + batch_size]
        copies = np.repeat(image[None], len(chunk), axis=0)
        for copy, (row, column) in zip(copies, chunk):
            top, left = row - patch // 2, column - patch // 2
            copy[max(top, 0) : max(top + patch, 0), max(left, 0) : max(left + patch, 0)] = fill
        probabilities = predict(copies).numpy()
        results.append(-np.log(np.maximum(probabilities[:, label], 1e-7)))
    return np.concatenate(results)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="model file; if missing, an untrained model from --architecture (same speed)")
    parser.add_argument("--architecture", default="architectures/vgg_small.json")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="if missing, a random image")
    parser.add_argument("--patch", type=int, default=10)
    parser.add_argument("--fill", default="white")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="timed full maps with our engine (median)")
    parser.add_argument("--naive-positions", type=int, default=1000, help="0: all positions")
    args = parser.parse_args()

    if args.model.exists():
        model, metadata = load_model(args.model)
        size, source = tuple(metadata["input_size"]), str(args.model)
    else:
        architecture = load_architecture(args.architecture)
        model, size, source = build_model(architecture, 4), architecture.input_size, f"untrained {args.architecture}"
    if args.image.exists():
        image, image_source = load_image(args.image, size), str(args.image)
    else:
        image, image_source = np.random.default_rng(0).random((*size, 3), dtype=np.float32), "random pixels"
    fill = parse_fill(args.fill)
    label = int(model(image[None], training=False).numpy().argmax())

    def timed(incremental, xla=False):
        started = time.perf_counter()
        occlusion(model, image[None], [label], patch=args.patch, fill=fill, batch_size=args.batch_size,
                  incremental=incremental, xla=xla)  # trace (and compile)
        first = time.perf_counter() - started
        runs = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = occlusion(model, image[None], [label], patch=args.patch, fill=fill, batch_size=args.batch_size,
                               incremental=incremental, xla=xla)[0]
            runs.append(time.perf_counter() - started)
        return result, runs, first

    ours, times, ours_first = timed(True, xla=True)
    ours_seconds = float(np.median(times))
    uncompiled, uncompiled_times, uncompiled_first = timed(True)
    uncompiled_seconds = float(np.median(uncompiled_times))
    plain, plain_times, _ = timed(False)
    plain_seconds = float(np.median(plain_times))

    height, width = size
    every = np.stack(np.meshgrid(np.arange(height), np.arange(width), indexing="ij"), -1).reshape(-1, 2)
    if args.naive_positions and args.naive_positions < len(every):
        chosen = np.linspace(0, len(every) - 1, args.naive_positions).astype(int)
    else:
        chosen = np.arange(len(every))
    peer_results = {}  # the peer at its best batch size and compilation, so that it is the strongest it can be
    for peer_xla in (False, True):
        predict = tf.function(lambda x: model(x, training=False), jit_compile=True if peer_xla else None)
        for peer_batch in (256, 512):
            batched_peer_losses(predict, image, label, every[:peer_batch], args.patch, fill, peer_batch)  # trace
            peer_times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                peer = batched_peer_losses(predict, image, label, every, args.patch, fill, peer_batch)
                peer_times.append(time.perf_counter() - started)
            peer_results[peer_batch, peer_xla] = (float(np.median(peer_times)), peer_times, peer)
    (peer_batch, peer_xla) = min(peer_results, key=lambda key: peer_results[key][0])
    peer_seconds, peer_times, peer = peer_results[peer_batch, peer_xla]
    naive_losses(model, image, label, every[:5], args.patch, fill)  # warm up
    started = time.perf_counter()
    naive = naive_losses(model, image, label, every[chosen], args.patch, fill)
    naive_seconds = (time.perf_counter() - started) * len(every) / len(chosen)
    difference = float(np.max(np.abs(naive - ours.reshape(-1)[chosen])))

    print(f"model: {source}; image: {image_source}; {height}x{width}, patch {args.patch}, fill {args.fill}, "
          f"stride 1 ({len(every)} positions); {os.cpu_count()} CPUs, TensorFlow {tf.__version__}, Keras {keras.__version__}")
    print(f"  ours (incremental, XLA, batch {args.batch_size}): {ours_seconds:.2f} s per map "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)}); first map with the compilation {ours_first:.1f} s")
    print(f"  ours (incremental, --no-xla): {uncompiled_seconds:.2f} s per map "
          f"(runs: {', '.join(f'{t:.2f}' for t in uncompiled_times)}); first map with the tracing "
          f"{uncompiled_first:.1f} s; maps differ by up to {float(np.max(np.abs(uncompiled - ours))):.2e}")
    print(f"  ours without the shortcut (every copy in full, compiled): {plain_seconds:.2f} s per map; "
          f"maps differ by up to {float(np.max(np.abs(plain - ours))):.2e}")
    measured = "all" if len(chosen) == len(every) else f"{len(chosen)} sampled"
    others = ", ".join(f"{s:.2f} s at {b}{' with XLA' if x else ''}" for (b, x), (s, _, _) in peer_results.items())
    print(f"  batched peer (NumPy copies, one compiled call per {peer_batch}{' with XLA' if peer_xla else ''}, "
          f"its fastest of: {others}): "
          f"{peer_seconds:.2f} s per map "
          f"(runs: {', '.join(f'{t:.2f}' for t in peer_times)}); its map differs from ours by up to "
          f"{float(np.max(np.abs(peer - ours.reshape(-1)))):.2e} (its loss is rounded in float32 probabilities)")
    print(f"  naive (one forward pass per position, {measured} positions): {naive_seconds:.1f} s per map")
    print(f"  largest difference between the naive map and ours: {difference:.2e}")
    print(f"ratio batched peer / ours: {peer_seconds / ours_seconds:.2f}x with XLA, "
          f"{peer_seconds / uncompiled_seconds:.2f}x without  (target >= 2x: "
          f"{'met' if peer_seconds / ours_seconds >= 2 else 'NOT met'})")
    print(f"seconds per map: {ours_seconds:.2f} with XLA, {uncompiled_seconds:.2f} without  (target <= 0.5 s: "
          f"{'met' if ours_seconds <= 0.5 else 'NOT met'})")
    ratio = naive_seconds / ours_seconds
    print(f"ratio naive / ours: {ratio:.1f}x  (target >= 10x: {'met' if ratio >= 10 else 'NOT met'}); "
          f"seconds per map: {ours_seconds:.2f} (target <= 5 s: {'met' if ours_seconds <= 5 else 'NOT met'})")


if __name__ == "__main__":
    main()
