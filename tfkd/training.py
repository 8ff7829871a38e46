"""Optimisers, learning-rate schedules, precision, strategies and plain classifier training."""

import contextlib
import dataclasses
import functools
import socket

import keras
import tensorflow as tf

from tfkd.settings import TEACHER, ConfigError, check, setting

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")
STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
# mixed_bfloat16: bfloat16 compute, float32 weights (and float32 logits from the zoo's classifier).
PRECISIONS = ("float32", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The schedule of one training: epochs, batch size, optimizer, learning rate, precision."""

    epochs: int = setting(10, group="training", minimum=1, help="Distillation epochs.")
    batch_size: int = setting(
        128, group="training", role=TEACHER, minimum=1, help="Global batch size."
    )
    optimizer: str = setting(
        "sgd", group="training", role=TEACHER, choices=OPTIMIZERS, help="Optimizer."
    )
    learning_rate: float = setting(
        0.05,
        group="training",
        role=TEACHER,
        minimum=0,
        open_minimum=True,
        help="Peak learning rate.",
    )
    lr_schedule: str = setting(
        "cosine", group="training", role=TEACHER, choices=SCHEDULES, help="Learning-rate schedule."
    )
    warmup_epochs: float = setting(
        0.0, group="training", role=TEACHER, help="Linear warm-up (cosine only)."
    )
    weight_decay: float = setting(
        5e-4, group="training", role=TEACHER, minimum=0, help="Decoupled weight decay."
    )
    momentum: float = 0.9
    precision: str = setting(
        "float32",
        group="training",
        role=TEACHER,
        choices=PRECISIONS,
        help="Compute precision of the models trained here: float32, or mixed_bfloat16 "
        "(bfloat16 compute, float32 weights and logits; saved and exported models compute "
        "in float32).",
    )

    def __post_init__(self):
        check(self)
        if not 0 <= self.warmup_epochs < self.epochs:
            raise ConfigError(
                "warmup_epochs",
                f"`warmup_epochs` must be in [0, `epochs`), got {self.warmup_epochs!r}",
            )


@contextlib.contextmanager
def precision_policy(precision):
    """Layers created inside compute in `precision` (one of PRECISIONS); the global Keras dtype
    policy is restored on exit."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def learning_rate(config, steps_per_epoch):
    """The schedule named by `config.lr_schedule`, with optional linear warm-up for cosine."""
    total = max(1, config.epochs * steps_per_epoch)
    if config.lr_schedule == "constant":
        return config.learning_rate
    if config.lr_schedule == "step":
        boundaries = [int(total * 0.5), int(total * 0.75)]
        values = [config.learning_rate * f for f in (1.0, 0.1, 0.01)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            0.0, total - warmup, warmup_target=config.learning_rate, warmup_steps=warmup
        )
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, total)


def make_optimizer(config, steps_per_epoch):
    rate = learning_rate(config, steps_per_epoch)
    decay = config.weight_decay or None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(
            rate, momentum=config.momentum, nesterov=True, weight_decay=decay
        )
    if config.optimizer == "adam":
        return keras.optimizers.Adam(rate, weight_decay=decay)
    return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)


def make_strategy(name, tpu=None):
    """The tf.distribute strategy `name`; `tpu` names the TPU for "tpu" (TPUClusterResolver)."""
    if name not in STRATEGIES:
        raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if name == "mirrored":
        return _mirrored_strategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        return _tpu_strategy(tpu)
    return tf.distribute.get_strategy()


def _check_reachable(address, seconds=5.0):
    """Fails within `seconds` for a grpc://host:port nobody answers (TF would wait forever)."""
    host, _, port = address[len("grpc://") :].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except (OSError, ValueError) as error:
        raise ValueError(
            f"--strategy=tpu: no TPU answers at --tpu={address} "
            f"({getattr(error, 'strerror', None) or error})"
        ) from None


def _tpu_strategy(tpu):
    if tpu and tpu.startswith("grpc://"):
        _check_reachable(tpu)
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, OSError, tf.errors.OpError) as error:
        where = f"--tpu={tpu}" if tpu else "no --tpu given and none found in the environment"
        raise ValueError(
            f"--strategy=tpu: no TPU could be reached ({where}: {str(error).splitlines()[0][:160]})"
        ) from None
    return tf.distribute.TPUStrategy(resolver)


@functools.cache
def _mirrored_strategy():
    # One per process: several MirroredStrategy objects in one process reuse collective
    # instance keys, and their all-reduces then fail with shape mismatches.
    return tf.distribute.MirroredStrategy()


def compile_classifier(model, config, steps_per_epoch):
    model.compile(
        optimizer=make_optimizer(config, steps_per_epoch),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model
