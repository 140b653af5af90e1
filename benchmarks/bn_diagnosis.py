"""Why do batch-norm moving statistics go stale?  Test accuracy of one trained
model with its batch-norm statistics taken four ways:

1. the moving averages as training left them;
2. re-estimated from clean (un-augmented) training batches (precise BN),
   from as many batches as momentum 0.9 effectively averages (19) and from 60;
3. re-estimated from augmented training batches, as training sees them;
4. the precise statistics, then one small batch (the last, partial batch of an
   epoch) pushed through a training-mode update with the layers' momentum.

Usage: python benchmarks/bn_diagnosis.py RUN_DIR --data ../shared/data/fruits-360-77class
"""

import argparse
from pathlib import Path

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--small-batch", type=int, default=4)
    args = parser.parse_args()

    from fruitkeras import data as datalib
    from fruitkeras.architecture import load_architecture
    from fruitkeras.evaluation import loss_and_accuracy
    from fruitkeras.precise_bn import batchnorm_layers, recompute_batchnorm_statistics
    from fruitkeras.runs import load_model

    model, metadata = load_model(args.run / "model.keras")
    settings = load_architecture(args.run / "architecture.json").training
    size = tuple(metadata["input_size"])
    train = datalib.read_split(args.data / "Training", size)
    test = datalib.read_split(args.data / "Test", size)
    test_data = datalib.make_dataset(test, 256)
    batch = settings["batch_size"]
    clean = datalib.make_dataset(train, batch, shuffle=True, seed=1)
    augmented = datalib.make_dataset(train, batch, shuffle=True, seed=1,
                                     augmenter=datalib.make_augmenter(settings["augmentation"], 1))
    # (All of Training/: the diagnosis asks about the statistics, not about held-out data.)
    norms = batchnorm_layers(model)

    def report(what):
        loss, accuracy = loss_and_accuracy(model, test_data)
        print(f"{what:<58} test accuracy {accuracy:.4f}  loss {loss:.4f}", flush=True)

    report("1. moving statistics from training")
    moving = [(n.moving_mean.numpy(), n.moving_variance.numpy()) for n in norms]
    window = 19  # (1 + m) / (1 - m) batches: the effective sample of a momentum-0.9 average
    recompute_batchnorm_statistics(model, clean, window)
    report(f"2a. re-estimated, {window} clean batches of {batch}")
    recompute_batchnorm_statistics(model, clean, args.batches)
    precise = [(n.moving_mean.numpy(), n.moving_variance.numpy()) for n in norms]
    report(f"2b. re-estimated, {args.batches} clean batches of {batch}")
    for layer, (m, v), (pm, pv) in zip(norms, moving, precise):
        print(f"   {layer.name:<22} |moving - precise| mean {np.abs(m - pm).mean():.4f}  "
              f"variance ratio moving/precise median {np.median(v / pv):.3f}")
    recompute_batchnorm_statistics(model, augmented, args.batches)
    report(f"3. re-estimated, {args.batches} augmented batches of {batch}")
    recompute_batchnorm_statistics(model, clean, args.batches)
    images, _ = next(iter(datalib.make_dataset(train, args.small_batch, shuffle=True, seed=7)))
    model(images, training=True)  # one update of the moving statistics, as a last partial batch makes
    report(f"4. precise, then one training-mode batch of {args.small_batch}")


if __name__ == "__main__":
    main()
