"""What bit-for-bit reproducible training costs per epoch.

Times training steps of vgg_small with the recipe's augmentation, side by side
in one process, alternating rounds:

* deterministic (ours): the stateless pipeline (``fruitkeras.augmentation``:
  every draw keyed on seed, epoch and batch; flip, rotation and zoom as one
  affine resampling) and dropout keyed on the step (``StepKeyedRandomness``);
* peer: the previous, not reproducible pipeline: Keras's own random
  preprocessing layers (RandomFlip, RandomRotation, RandomZoom, each with its
  own resampling) drawing from stateful seed generators in tf.data's threads,
  and plain Keras dropout.  Colour jitter (brightness) is the same code in both.

Both use the same model, batches and epoch structure; only the randomness
differs.  Prints seconds per epoch-equivalent (the 77-class set's steps) and
the ratio deterministic / peer (goal: <= 1.10).

Usage: python benchmarks/bench_determinism.py --data ../shared/data/fruits-360-77class
"""

import argparse
import statistics
import time

STEPS_PER_77_CLASS_EPOCH = 1023  # 32,740 training images / batch 32


def keras_layers_augmenter(settings, seed):
    """The previous release's augmentation: Keras preprocessing layers on one stateful seed each."""
    import keras
    import tensorflow as tf

    geometry = keras.Sequential([
        keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
        keras.layers.RandomRotation(settings["rotation"], fill_mode="constant", fill_value=1.0, seed=seed + 1),
        keras.layers.RandomZoom(settings["zoom"], fill_mode="constant", fill_value=1.0, seed=seed + 2),
    ])

    def augment(batch, key):
        batch = geometry(batch, training=True)
        shift = tf.random.uniform((tf.shape(batch)[0], 1, 1, 1), -settings["brightness"], settings["brightness"])
        return tf.clip_by_value(batch + shift, 0.0, 1.0)

    return augment


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset folder (default: $FRUITKERAS_DATA, then ./data)")
    parser.add_argument("--limit-per-class", type=int, default=120, help="training images decoded per class")
    parser.add_argument("--steps", type=int, default=150, help="training steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from fruitkeras.cli import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras

    from fruitkeras import data as datalib
    from fruitkeras.architecture import build_model, load_architecture
    from fruitkeras.augmentation import make_augmenter
    from fruitkeras.callbacks import StepKeyedRandomness
    from fruitkeras.training import _loss, _optimizer

    architecture = load_architecture("architectures/vgg_small.json")
    settings = architecture.training
    root = datalib.resolve_data_dir(args.data)
    split = datalib.read_split(root / datalib.TRAIN_SPLIT, architecture.input_size, args.limit_per_class)
    variants = {
        "deterministic": (make_augmenter(settings["augmentation"]), [StepKeyedRandomness()]),
        "peer (Keras layers)": (keras_layers_augmenter(settings["augmentation"], 0), []),
    }
    models, streams = {}, {}
    for name, (augmenter, _) in variants.items():
        keras.utils.set_random_seed(0)
        model = build_model(architecture, len(split.class_names))
        model.compile(optimizer=_optimizer(settings, args.steps, args.rounds + 1),
                      loss=_loss(settings["label_smoothing"], len(split.class_names)), metrics=["accuracy"])
        models[name] = model
        streams[name] = datalib.make_dataset(split, settings["batch_size"], shuffle=True, seed=0, augmenter=augmenter,
                                             repeat=True)
    seconds = {name: [] for name in variants}
    for round_number in range(args.rounds + 1):  # round 0 traces and warms up: not counted
        for name, (_, callbacks) in variants.items():
            started = time.perf_counter()
            models[name].fit(streams[name], epochs=round_number + 1, initial_epoch=round_number,
                             steps_per_epoch=args.steps, verbose=0, callbacks=callbacks)
            if round_number:
                seconds[name].append((time.perf_counter() - started) / args.steps * STEPS_PER_77_CLASS_EPOCH)
    print(f"{len(split)} images, {args.steps} steps a round, {args.rounds} rounds after a warm-up; "
          "seconds per 77-class epoch (1,023 steps, training only):")
    for name, values in seconds.items():
        print(f"  {name:<20} median {statistics.median(values):6.1f} s  (rounds: "
              + ", ".join(f"{v:.1f}" for v in values) + ")")
    ratio = statistics.median(seconds["deterministic"]) / statistics.median(seconds["peer (Keras layers)"])
    print(f"ratio deterministic / peer: {ratio:.3f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
