"""Seconds from a training command's start to its first training step, TensorFlow import included.

Each approach runs in a fresh Python process, one after the other:

* ours: ``fruitkeras.training.train_architecture`` as ``fruitkeras train`` runs it (file
  listing, one TensorFlow decode per image into memory, PIL only for files
  TensorFlow cannot take, Test decoded in the background), stopped at the
  first training step;
* before: the previous release's path, kept here verbatim: a scan that decodes
  every image with PIL to find unreadable ones, then a tf.data pipeline that
  decodes each image again (PIL in ``tf.numpy_function``), caches, and fills a
  shuffle buffer of the whole set before the first batch.

Usage: python benchmarks/bench_data.py --data ../shared/data/fruits-360-77class
"""

import argparse
import json
import subprocess
import sys
import time

STARTED = time.perf_counter()

OURS = r"""
import os, time, json, sys
started = time.perf_counter()
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
from fruitkeras.cli import import_tensorflow_quietly
import_tensorflow_quietly()
import keras
from fruitkeras.training import train_architecture
from fruitkeras.errors import TrainingInterrupted

class FirstStep(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)
        raise KeyboardInterrupt

try:
    train_architecture("architectures/vgg_small.json", data=sys.argv[1], run_dir=sys.argv[2], verbose=0,
                       extra_callbacks=[FirstStep()])
except TrainingInterrupted:
    pass
"""

BEFORE = r"""
import os, time, json, sys
started = time.perf_counter()
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
from fruitkeras.cli import import_tensorflow_quietly
import_tensorflow_quietly()
from pathlib import Path
import numpy as np
import tensorflow as tf
from fruitkeras.data import IMAGE_SUFFIXES, ImageError, load_rgb, read_rgb

root = Path(sys.argv[1]) / "Training"
paths, labels = [], []
for label, name in enumerate(sorted(p.name for p in root.iterdir() if p.is_dir())):
    for path in sorted((root / name).iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            read_rgb(path)  # the scan decoded every file once to find unreadable ones
        except ImageError:
            continue
        paths.append(str(path))
        labels.append(label)

def load(path, label):
    image = tf.numpy_function(lambda p: load_rgb(p.decode(), (100, 100)), [path], tf.uint8, stateful=False)
    image.set_shape((100, 100, 3))
    return image, label

dataset = tf.data.Dataset.from_tensor_slices((np.asarray(paths), np.asarray(labels, np.int32)))
dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE).cache()
dataset = dataset.shuffle(len(paths), seed=0, reshuffle_each_iteration=True).batch(32)
dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y)).prefetch(tf.data.AUTOTUNE)
next(iter(dataset))  # the first training batch: every image decoded a second time for the shuffle buffer
print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)
"""


def seconds(code, *args):
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=1200)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"benchmark run failed:\n{result.stderr[-2000:]}")
    return json.loads(lines[-1])["seconds"]


def main():
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        ours = seconds(OURS, args.data, f"{scratch}/run")
    before = seconds(BEFORE, args.data)
    print(f"start to first training step on {args.data}, TensorFlow import included:")
    print(f"  ours   {ours:6.1f} s  (target <= 8 s)")
    print(f"  before {before:6.1f} s  (PIL scan decode + second decode into a full shuffle buffer)")
    print(f"  ratio  {before / ours:6.1f}x faster")


if __name__ == "__main__":
    main()
