"""Several devices or machines through TensorFlow's ``tf.distribute``.

``--distribute``:

* ``none``: one device, TensorFlow's default (a GPU when there is one);
* ``mirrored``: ``MirroredStrategy`` over ``--devices`` (default: every local
  GPU, else the CPU).  ``--devices CPU:0,CPU:1`` on a machine with one CPU
  device splits the CPU into logical devices, as the tests do;
* ``multi-worker``: ``MultiWorkerMirroredStrategy`` configured from
  ``TF_CONFIG``; the chief (task ``chief``, or worker 0 when there is none)
  writes the run folder, the other workers write into temporary folders.

The architecture's ``batch_size`` is the global batch: each step takes that
many images, split evenly over the replicas, so a run on N devices takes the
same steps with the same learning rate as on one.  Our BatchNorm normalises
each replica's share with that share's own statistics (as Keras's layer does
unless ``synchronized``); its moving statistics are the replicas' mean.
"""

import contextlib
import functools
import json
import os

from fruitkeras.errors import FruitkerasError

KINDS = ("none", "mirrored", "multi-worker")


def make_strategy(kind="none", devices=None):
    """The ``tf.distribute`` strategy for ``--distribute`` and ``--devices``; None for one device."""
    if kind not in KINDS:
        raise FruitkerasError(f"unknown --distribute '{kind}'; choose one of {', '.join(KINDS)}")
    if devices and kind != "mirrored":
        raise FruitkerasError("--devices goes with --distribute mirrored")
    if kind == "none":
        return None
    if kind == "mirrored":
        return _strategy(kind, tuple(local_devices(devices)))
    _check_tf_config()
    try:
        return _strategy(kind, ())
    except (ValueError, RuntimeError) as error:
        raise FruitkerasError(f"TF_CONFIG: cannot start the multi-worker strategy ({error})") from None


@functools.cache
def _strategy(kind, devices):
    """One strategy per kind and devices in a process: a second ``MirroredStrategy`` over the same CPU
    devices numbers its collectives as the first did, and its first all-reduce then meets the first
    strategy's (TensorFlow: "Shape mismatch in the collective instance")."""
    import tensorflow as tf

    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(list(devices))
    return tf.distribute.MultiWorkerMirroredStrategy()


def _check_tf_config():
    """A one-line error for a missing or malformed TF_CONFIG (TensorFlow's own would be a traceback)."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise FruitkerasError("--distribute multi-worker needs TF_CONFIG: "
                              '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}')
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        if task["type"] not in cluster or not 0 <= int(task["index"]) < len(cluster[task["type"]]):
            raise KeyError("task")
    except (ValueError, KeyError, TypeError) as error:
        raise FruitkerasError(f"TF_CONFIG is not valid ({error}); it needs 'cluster' and a 'task' "
                              "with a 'type' and 'index' found in the cluster") from None


def local_devices(devices=None):
    """Device names for MirroredStrategy: ``devices`` ('GPU:0,GPU:1', 'CPU:0,CPU:1'), else every GPU, else the CPU."""
    import tensorflow as tf

    if not devices:
        gpus = tf.config.list_logical_devices("GPU")
        return [device.name for device in gpus] or ["/device:CPU:0"]
    wanted = []
    for part in devices.split(","):
        kind, _, index = part.strip().upper().partition(":")
        if kind not in ("CPU", "GPU") or not index.isdigit():
            raise FruitkerasError(f"--devices: '{part.strip()}' is not a device such as GPU:0 or CPU:1")
        wanted.append((kind, int(index)))
    cpus = 1 + max((index for kind, index in wanted if kind == "CPU"), default=0)
    # Asked without starting the runtime (listing the logical devices would start it).
    configured = tf.config.get_logical_device_configuration(tf.config.list_physical_devices("CPU")[0])
    if cpus > max(len(configured or ()), 1):
        _split_cpu(cpus)
    names = {(device.device_type, int(device.name.rsplit(":", 1)[1])): device.name
             for kind in ("CPU", "GPU") for device in tf.config.list_logical_devices(kind)}
    missing = [f"{kind}:{index}" for kind, index in wanted if (kind, index) not in names]
    if missing:
        raise FruitkerasError(f"--devices: no {', '.join(missing)} here; this machine has "
                              + ", ".join(f"{kind}:{index}" for kind, index in sorted(names)))
    return [names[device] for device in wanted]


def _split_cpu(count):
    """Make the one physical CPU appear as ``count`` logical devices (before TensorFlow starts its runtime)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        raise FruitkerasError(f"--devices: cannot split the CPU into {count} devices once TensorFlow has "
                              "started; give --devices before anything else runs") from None


def shard_batches(dataset):
    """Each worker takes its share of every global batch.

    Every worker builds the same pipeline with the same seed, so the global
    batches agree; the default policy would look for input files to split,
    and the images are one in-memory tensor.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def build_for_fit(model, strategy, dataset):
    """Build the model, its loss, metrics and optimizer from one batch of ``dataset`` before ``fit``.

    Keras 3's ``fit`` under ``MultiWorkerMirroredStrategy`` builds them from a
    distributed batch that it reduces as one value, which fails for an
    (images, labels) pair ("Attempt to convert a value (PerReplica...)"), and
    takes that batch from the training stream.  Built here from an
    undistributed batch, ``fit`` finds nothing left to build.
    """
    import tensorflow as tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    _average_scalar_logs_across_workers()
    batch = next(iter(dataset.take(1)))
    with strategy.scope():
        model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


# The Keras versions whose internals the multi-worker work-arounds were written for and tested on.
PATCHED_KERAS = ((3, 15), (3, 16))  # from, up to (excluded)


def check_patched_keras(version=None):
    """A one-line error unless Keras is a version the multi-worker work-arounds were tested on."""
    import keras

    version = version or keras.__version__
    found = tuple(int(part) for part in version.split(".")[:2] if part.isdigit())
    low, high = PATCHED_KERAS
    if not low <= found < high:
        raise FruitkerasError(f"--distribute multi-worker patches Keras internals tested on Keras "
                              f"{low[0]}.{low[1]}.x only; this is Keras {version} (pip install 'keras>={low[0]}."
                              f"{low[1]},<{high[0]}.{high[1]}')")


def _average_scalar_logs_across_workers():
    """Keras 3 averages each step's logs (loss, metrics) over a multi-worker strategy's replicas along axis 0,
    which scalars lack ("Invalid reduction dimension 0"); average them as whole values instead."""
    import tensorflow as tf

    check_patched_keras()
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "fruitkeras", False):
        return
    keras_reduce = trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return tf.nest.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None) if isinstance(v, tf.distribute.DistributedValues)
                else v, values)
        return keras_reduce(values, strategy, reduction)

    reduce_per_replica.fruitkeras = True
    trainer.reduce_per_replica = reduce_per_replica


def replicas(strategy):
    return 1 if strategy is None else strategy.num_replicas_in_sync


def scope(strategy):
    """The strategy's scope: models and optimisers made inside it are mirrored."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def is_chief(strategy):
    """Whether this process writes the run folder: always, except on a multi-worker strategy's other workers."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def describe(strategy, kind):
    """What run.json records of the strategy."""
    if strategy is None:
        return {"strategy": "none", "replicas": 1}
    described = {"strategy": kind, "replicas": strategy.num_replicas_in_sync}
    if kind == "mirrored":
        described["devices"] = list(strategy.extended.worker_devices)
    return described
