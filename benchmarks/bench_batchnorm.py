"""Training-step throughput: our BatchNorm vs keras.layers.BatchNormalization.

Both models are the same architecture file with the same weights; only the
batch-norm layers differ.  They are timed alternately in one process, several
rounds each, and the median images/s of each is compared.

    python benchmarks/bench_batchnorm.py [--architecture architectures/vgg_small.json]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from fruitkeras.architecture import build_model, load_architecture  # noqa: E402
from fruitkeras.layers import BatchNorm  # noqa: E402


def with_keras_batch_norm(model):
    """The same model with every BatchNorm replaced by Keras's layer (same settings, same weights)."""

    def clone(layer):
        if isinstance(layer, BatchNorm):
            return keras.layers.BatchNormalization(momentum=layer.momentum, epsilon=layer.epsilon)
        return layer.__class__.from_config(layer.get_config())

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())  # gamma, beta, moving mean, moving variance: same order
    return twin


def train_step_function(model):
    import tensorflow as tf  # here, not above: bench_accelerator.py borrows with_keras_batch_norm on machines without it

    optimizer = keras.optimizers.Adam(1e-3)
    loss_function = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            loss = loss_function(labels, model(images, training=True))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return step


def images_per_second(step, images, labels, steps):
    started = time.perf_counter()
    for index in range(steps):
        loss = step(images[index % len(images)], labels[index % len(labels)])
    float(loss)  # waits for the last step, on any backend
    return steps * images.shape[1] / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="architectures/vgg_small.json")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--classes", type=int, default=4)
    args = parser.parse_args()
    import tensorflow as tf

    architecture = load_architecture(args.architecture)
    keras.utils.set_random_seed(0)
    ours = build_model(architecture, args.classes)
    theirs = with_keras_batch_norm(ours)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.random((4, args.batch_size, *architecture.input_shape), dtype=np.float32))
    labels = tf.constant(rng.integers(0, args.classes, (4, args.batch_size)), dtype=tf.int32)

    steps = {"fruitkeras BatchNorm": train_step_function(ours), "keras BatchNormalization": train_step_function(theirs)}
    for step in steps.values():  # trace and warm up
        images_per_second(step, images, labels, 3)
    rates = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            rates[name].append(images_per_second(step, images, labels, args.steps))

    print(f"architecture: {args.architecture}, batch {args.batch_size}, {args.rounds} rounds x {args.steps} steps, "
          f"TensorFlow {tf.__version__}, Keras {keras.__version__}")
    for name, values in rates.items():
        print(f"  {name:26s} median {statistics.median(values):7.1f} images/s  (rounds: {', '.join(f'{v:.0f}' for v in values)})")
    ratio = statistics.median(rates["fruitkeras BatchNorm"]) / statistics.median(rates["keras BatchNormalization"])
    print(f"ratio ours / keras: {ratio:.3f}  (target >= 0.9: {'met' if ratio >= 0.9 else 'NOT met'})")


if __name__ == "__main__":
    main()
