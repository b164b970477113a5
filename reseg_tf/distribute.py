"""tf.distribute strategies for `reseg train --strategy`.

All distribution is TensorFlow's own: this module only picks and configures a strategy.
`ReSegModel` carries the two Keras 3.15 work-arounds that make `model.fit` run under
`MultiWorkerMirroredStrategy` (see `ReSegModel._maybe_symbolic_build`).
"""
import json
import os

import tensorflow as tf

from reseg_tf.options import STRATEGIES


def make_strategy(name="default", tpu_address=None):
    """Returns the `tf.distribute.Strategy` called `name`.

    Args:
        name: `"default"` (one device: the GPU if there is one, else the CPU), `"mirrored"`
            (all local GPUs, or all logical CPU devices when there is no GPU), `"multiworker"`
            (synchronous data parallelism across the machines listed in `TF_CONFIG`, one
            process per machine) or `"tpu"` (a Cloud TPU / Colab TPU; `tpu_address` or the
            environment's default).
        tpu_address: TPU name or grpc address for `"tpu"`; `None` lets the resolver find it.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}.")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices)
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy multiworker needs the TF_CONFIG environment variable describing the "
                'cluster, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}.'
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as error:
            raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def is_chief(strategy):
    """True in the process that should write artifacts (always true without multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    cluster = resolver.cluster_spec().as_dict()
    if task_type == "chief":
        return True
    # Without an explicit chief, worker 0 acts as chief (TensorFlow's convention).
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def distribute_options(dataset):
    """Shards in-memory/generated datasets by batch elements across workers (not by file)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def configure_logical_cpus(count):
    """Splits the CPU into `count` logical devices (call before TensorFlow touches a device).

    Lets `MirroredStrategy` run data-parallel replicas on one CPU machine, e.g. to test a
    distributed set-up before paying for GPUs.
    """
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )
