"""Throughput and accuracy in float32 and mixed precision, on whatever device Keras's backend runs.

Side by side in one process:

1. Training images/s of an architecture file on synthetic photos, in
   float32, ``mixed_float16`` and ``mixed_bfloat16``, each with our BatchNorm
   and with ``keras.layers.BatchNormalization`` (the peer), at each batch
   size, two ways: ``fit`` (Keras's loop, photos sent from host memory each
   step) and ``steps`` (one compiled step on batches already on the device:
   the model's own speed; no JPEG decoding or augmentation in either).
   Rounds alternate between the variants; medians are compared.
2. With ``--run`` and ``--test``: the run's trained weights computed in each
   precision on a Test folder: accuracy, agreement with float32, and
   inference images/s.

It uses Keras and ``keras.ops`` only (images are read with PIL, as
``fruitkeras.data.load_rgb`` reads them), so it also runs under
``KERAS_BACKEND=jax`` on a GPU machine that has JAX but no TensorFlow: that is
how the figures in docs/scaling-out.md were measured.

    python benchmarks/bench_accelerator.py [--architecture architectures/vgg_small.json]
        [--run runs/fruits77-vgg_small --test DATA/Test] [--batch-sizes 32,256] [--images 8192] [--policies float32,...]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bench_batchnorm import images_per_second, train_step_function, with_keras_batch_norm  # noqa: E402
from fruitkeras.architecture import build_model, load_architecture  # noqa: E402
from fruitkeras.data import PIXEL_SCALE, check_same_classes, load_rgb, relabel, scan_split  # noqa: E402
from fruitkeras.run_folder import ARCHITECTURE_COPY  # noqa: E402
from fruitkeras.runs import load_model, resolve_model_path  # noqa: E402

POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
BATCH_NORMS = ("fruitkeras BatchNorm", "keras BatchNormalization")


def device_description():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return f"JAX {jax.__version__}, {jax.devices()[0].device_kind}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"TensorFlow {tf.__version__}, " + (f"{len(gpus)} GPU(s)" if gpus else f"CPU, {os.cpu_count()} cores")
    return backend


def model_in_precision(architecture, classes, policy, batch_norm):
    """The architecture built under a global dtype policy, with our BatchNorm or Keras's."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = build_model(architecture, classes)
        return model if batch_norm == BATCH_NORMS[0] else with_keras_batch_norm(model)
    finally:
        keras.config.set_dtype_policy(previous)


def jax_train_step_function(model):
    """``bench_batchnorm.train_step_function`` for the JAX backend: one jitted step, state kept between calls."""
    import jax

    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    loss_function = keras.losses.SparseCategoricalCrossentropy()

    def loss_and_statistics(trainable, non_trainable, images, labels):
        predictions, non_trainable = model.stateless_call(trainable, non_trainable, images, training=True)
        return loss_function(labels, predictions), non_trainable

    loss_and_gradients = jax.value_and_grad(loss_and_statistics, has_aux=True)

    @jax.jit
    def update(state, images, labels):
        trainable, non_trainable, optimizer_state = state
        (loss, non_trainable), gradients = loss_and_gradients(trainable, non_trainable, images, labels)
        trainable, optimizer_state = optimizer.stateless_apply(optimizer_state, gradients, trainable)
        return loss, (trainable, non_trainable, optimizer_state)

    state = tuple([variable.value for variable in variables] for variables in
                  (model.trainable_variables, model.non_trainable_variables, optimizer.variables))

    def step(images, labels):
        nonlocal state
        loss, state = update(state, images, labels)
        return loss

    return step


def resident_step_function(model):
    return jax_train_step_function(model) if keras.backend.backend() == "jax" else train_step_function(model)


def training_rates(architecture, classes, batch_sizes, image_count, rounds, policies):
    """{(mode, policy, batch norm, batch size): [images/s of each round]}, ``image_count`` photos a round.

    Modes: ``fit`` (Keras's own loop, photos sent from host memory every step,
    as a trainer feeds them) and ``steps`` (one compiled step on batches
    already on the device: the model's own speed).
    """
    rng = np.random.default_rng(0)
    host_images = rng.random((image_count, *architecture.input_shape), dtype=np.float32)
    host_labels = rng.integers(0, classes, image_count)
    resident = {size: (keras.ops.convert_to_tensor(host_images[: 4 * size].reshape(4, size, *architecture.input_shape)),
                       keras.ops.convert_to_tensor(host_labels[: 4 * size].reshape(4, size)))
                for size in batch_sizes}
    timers = {}
    for policy in policies:
        for batch_norm in BATCH_NORMS:
            keras.utils.set_random_seed(0)
            model = model_in_precision(architecture, classes, policy, batch_norm)
            # mixed_float16: compile wraps the optimiser in loss scaling, as Keras does for that policy
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
            # a model of its own: fit donates its model's variables' buffers, which a jitted step would hold
            keras.utils.set_random_seed(0)
            step = resident_step_function(model_in_precision(architecture, classes, policy, batch_norm))
            for size in batch_sizes:
                timers["fit", policy, batch_norm, size] = (
                    lambda model=model, size=size: image_count / timed(
                        lambda: model.fit(host_images, host_labels, batch_size=size, epochs=1, shuffle=False,
                                          verbose=0)))
                timers["steps", policy, batch_norm, size] = (
                    lambda step=step, size=size: images_per_second(step, *resident[size], image_count // size))
    for timer in timers.values():  # compile every step function once, untimed
        timer()
    rates = {key: [] for key in timers}
    for _ in range(rounds):
        for key, timer in timers.items():
            rates[key].append(timer())
    return rates


def timed(work):
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def read_test(test_dir, class_names, size):
    """A Test folder's photos (uint8) and labels in the run's class order, decoded with PIL."""
    split = scan_split(test_dir)
    check_same_classes(class_names, split.class_names, "the run", str(test_dir))
    relabel(split, class_names)
    return np.stack([load_rgb(path, size) for path in split.paths]), split.labels


def precision_accuracies(run_dir, test_dir, policies, batch_size):
    """{policy: (accuracy, agreement with float32, images/s)} of the run's weights computed in each policy."""
    model_path = resolve_model_path(run_dir)
    trained, metadata = load_model(model_path, familiarity=False)
    class_names = metadata["class_names"]
    architecture = load_architecture(model_path.parent / ARCHITECTURE_COPY)
    images, labels = read_test(test_dir, class_names, tuple(metadata["input_size"]))
    images = images.astype(np.float32) * np.float32(PIXEL_SCALE)
    results, reference = {}, None
    for policy in ("float32",) + tuple(p for p in policies if p != "float32"):
        model = model_in_precision(architecture, len(class_names), policy, BATCH_NORMS[0])
        model.set_weights(trained.get_weights())
        model.predict(images[:batch_size], batch_size=batch_size, verbose=0)  # compile, untimed
        started = time.perf_counter()
        predicted = np.argmax(model.predict(images, batch_size=batch_size, verbose=0), axis=1)
        rate = len(images) / (time.perf_counter() - started)
        reference = predicted if reference is None else reference
        results[policy] = (float(np.mean(predicted == labels)), float(np.mean(predicted == reference)), rate)
    return results, len(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", default="architectures/vgg_small.json")
    parser.add_argument("--classes", type=int, default=77)
    parser.add_argument("--batch-sizes", default="32,256", help="comma-separated training batch sizes")
    parser.add_argument("--images", type=int, default=8192, help="synthetic photos a timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--run", help="a run folder whose weights are evaluated in each precision")
    parser.add_argument("--test", help="its Test folder (<class>/<images>)")
    args = parser.parse_args()
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    policies = args.policies.split(",")
    if args.images < 4 * max(batch_sizes):
        parser.error("--images must be at least four of the largest batch (the steps cycle through four batches)")

    print(f"device: {device_description()}; Keras {keras.__version__}")
    architecture = load_architecture(args.architecture)
    rates = training_rates(architecture, args.classes, batch_sizes, args.images, args.rounds, policies)
    print(f"training: {args.architecture}, {args.classes} classes, {args.images} synthetic photos a round, "
          f"median of {args.rounds} rounds; fit: Keras's loop fed from host memory, steps: batches on the device")
    median = {key: statistics.median(values) for key, values in rates.items()}
    for (mode, policy, batch_norm, batch_size), value in median.items():
        rounds = ", ".join(f"{v:.0f}" for v in rates[mode, policy, batch_norm, batch_size])
        print(f"  {mode:5s} {policy:15s} {batch_norm:25s} batch {batch_size:4d}: {value:9.0f} images/s  ({rounds})")
    for mode in ("fit", "steps"):
        for batch_size in batch_sizes:
            ours = {policy: median[mode, policy, BATCH_NORMS[0], batch_size] for policy in policies}
            for policy in policies:
                if policy != "float32" and "float32" in policies:
                    print(f"ratio {policy} / float32, {mode}, our BatchNorm, batch {batch_size}: "
                          f"{ours[policy] / ours['float32']:.2f}")
                print(f"ratio our BatchNorm / keras BatchNormalization, {mode}, {policy}, batch {batch_size}: "
                      f"{ours[policy] / median[mode, policy, BATCH_NORMS[1], batch_size]:.2f}")

    if args.run and args.test:
        results, count = precision_accuracies(args.run, args.test, policies, max(batch_sizes))
        print(f"the weights of {args.run} on {count} photos of {args.test}, predict fed from host memory, "
              f"batch {max(batch_sizes)}:")
        for policy, (accuracy, agreement, rate) in results.items():
            print(f"  {policy:15s} accuracy {accuracy:.4%}  same top class as float32 {agreement:.4%}  "
                  f"{rate:9.0f} images/s")


if __name__ == "__main__":
    main()
