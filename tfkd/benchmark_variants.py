"""The variants `bin/bench` times (`tfkd.benchmarks`): the same student and teacher
architectures on the same random uint8 images, trained (or, for teacher_forward, run) each
way a batch can get its teacher outputs, with `run_variant` timing steps after a warm-up."""

import gc
import os
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

import tfkd
from tfkd import training
from tfkd.teacher import cache, fingerprint, replay, replay_batches, serving

VARIANTS = (
    "plain_fit",
    "teacher_forward",
    "online_kd",
    "online_kd_fast_teacher",
    "cached_kd",
    "replay_kd",
    "multi_teacher_k1_online",
    "multi_teacher_k2_online",
    "multi_teacher_k4_online",
    "multi_teacher_k1_cached",
    "multi_teacher_k2_cached",
    "multi_teacher_k4_cached",
    "keras_distiller",
    "plain_fit_mixed_bfloat16",
    "cached_kd_mixed_bfloat16",
)
TEMPERATURE, ALPHA = 4.0, 0.9


class Bench:
    """Builds the shared data and models, and each variant's runner."""

    def __init__(self, args):
        self.args = args
        rng = np.random.default_rng(0)
        shape = (args.image_size, args.image_size, 3)
        self.x = rng.integers(0, 256, (args.training_images, *shape), dtype=np.uint8)
        self.y = rng.integers(0, args.num_classes, args.training_images).astype(np.int32)
        self.shape = shape
        self.cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="tfkd-bench-")
        self.setup_seconds = {}
        self._teachers = {}

    def teacher(self, k):
        """Teacher k (seeded, so every process builds the same weights and cache keys)."""
        if k not in self._teachers:
            self._teachers[k] = tfkd.models.build(
                self.args.teacher, self.shape, self.args.num_classes, seed=k + 1
            )
        return self._teachers[k]

    def student(self, precision="float32"):
        with training.precision_policy(precision):
            return tfkd.models.build(self.args.student, self.shape, self.args.num_classes, seed=100)

    def optimizer(self):
        return keras.optimizers.SGD(0.01, momentum=0.9)

    def plain_dataset(self):
        return tfkd.data.as_dataset(
            self.x, self.y, self.args.batch_size, shuffle=True, seed=0, drop_remainder=True
        ).repeat()

    def cached(self, count):
        teachers = [self.teacher(k) for k in range(count)]
        key = fingerprint.cache_key(
            teachers, "bench-random", "train", subset=len(self.x), seed=0, preprocessing="uint8/255"
        )
        start = time.perf_counter()
        outputs = cache.TeacherCache("disk", cache_dir=self.cache_dir, verbose=0).outputs(
            teachers, self.x, key, batch_size=256
        )
        if outputs.built:
            self.setup_seconds[f"teacher_cache_k{count}"] = time.perf_counter() - start
        return cache.cached_dataset(
            self.x, self.y, outputs, self.args.batch_size, shuffle=True, seed=0, drop_remainder=True
        ).repeat()

    def replay_storage(self):
        path = os.path.join(
            self.cache_dir, f"replay-{self.args.replay_views}-{self.args.replay_topk}.npz"
        )
        if os.path.isfile(path):
            return replay.ReplayStorage.load(path)
        start = time.perf_counter()
        storage = replay.build_replay(
            self.teacher(0),
            self.x,
            views=self.args.replay_views,
            topk=min(self.args.replay_topk, self.args.num_classes),
            temperature=TEMPERATURE,
            verbose=0,
        )
        storage.save(path)
        self.setup_seconds["replay_storage"] = time.perf_counter() - start
        return storage

    # ---- variants: each returns (model to fit, dataset) or a callable for teacher_forward -------
    def build(self, name):
        precision = "mixed_bfloat16" if name.endswith("_mixed_bfloat16") else "float32"
        name = name.removesuffix("_mixed_bfloat16")
        if name == "teacher_forward":
            return self._forward_runner(self.teacher(0))
        if name == "plain_fit":
            model = self.student(precision)
            model.compile(
                self.optimizer(), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            )
            return model, self.plain_dataset()
        if name == "keras_distiller":
            model = keras.distillation.Distiller(
                teacher=self.teacher(0),
                student=self.student(),
                distillation_losses=keras.distillation.LogitsDistillation(
                    temperature=TEMPERATURE, loss=keras.losses.KLDivergence()
                ),
                student_loss_weight=1.0 - ALPHA,
            )
            model.compile(
                optimizer=self.optimizer(),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            )
            return model, self.plain_dataset()
        if name in ("online_kd", "online_kd_fast_teacher", "cached_kd", "replay_kd"):
            teacher = self.teacher(0)
            if name == "online_kd_fast_teacher":
                start = time.perf_counter()
                teacher = serving.fast_teacher(teacher, self.args.fast_precision)
                self.setup_seconds["fast_teacher"] = time.perf_counter() - start
            model = tfkd.Distiller(
                self.student(precision), teacher, temperature=TEMPERATURE, alpha=ALPHA
            )
            dataset = self.plain_dataset()
            if name == "cached_kd":
                dataset = self.cached(1)  # the batches carry the logits
            elif name == "replay_kd":
                dataset = replay_batches.replay_dataset(
                    self.replay_storage(),
                    self.x,
                    self.y,
                    self.args.batch_size,
                    seed=0,
                    drop_remainder=True,
                ).repeat()
            model.compile(optimizer=self.optimizer())
            return model, dataset
        if name.startswith("multi_teacher_k"):
            count = int(name.split("_k")[1].split("_")[0])
            teachers = [self.teacher(k) for k in range(count)]
            online = name.endswith("_online")
            model = tfkd.MultiTeacherDistiller(
                self.student(), teachers, weighting="aver", temperature=TEMPERATURE, lambda2=0.0
            )
            model.compile(optimizer=self.optimizer())
            return model, self.plain_dataset() if online else self.cached(count)
        raise ValueError(f"unknown variant {name!r}")

    def _forward_runner(self, teacher):
        forward = tf.function(lambda inputs: teacher(inputs, training=False))
        return forward, self.plain_dataset()


class Window(keras.callbacks.Callback):
    """Times batches 1..end of one fit call (batch 0 starts the input pipeline)."""

    def __init__(self):
        super().__init__()
        self.start = self.stop = None

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 1:
            self.start = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, batch, logs=None):
        self.stop = (time.perf_counter(), time.process_time())


def run_variant(runner, steps):
    """(wall seconds, CPU seconds) of `steps` timed steps after one untimed step."""
    gc.collect()
    target, dataset = runner
    if callable(target) and not hasattr(target, "fit"):
        iterator = iter(dataset)
        target(next(iterator)[0]).numpy()
        start = (time.perf_counter(), time.process_time())
        for _ in range(steps):
            target(next(iterator)[0]).numpy()
        stop = (time.perf_counter(), time.process_time())
    else:
        window = Window()
        target.fit(dataset, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[window])
        start, stop = window.start, window.stop
    return stop[0] - start[0], stop[1] - start[1]
