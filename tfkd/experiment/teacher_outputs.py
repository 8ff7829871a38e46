"""How teacher outputs reach one run's batches: the source (`tfkd.teacher.output_sources`)
picked from the RunConfig, and what the teaching settings change (teaching mode, out-of-domain
data, options).

  --teacher_cache=none    online: the distiller runs the (served) teacher on every batch
  --teaching=fixed        fixed: the logits once, on the clean inputs (memory, or disk with
                          --teacher_cache=disk)
  --teacher_cache=memory  the cache: outputs once per split, kept with the run (or, with disk,
  --teacher_cache=disk    under --cache_dir across runs)
  --teacher_cache=replay  the teacher's top-k on stored augmented views

Whatever the source, the distiller reads the batches one way (`tfkd.teacher.batch_format`).
"""

import dataclasses
import json
import os
import time

import numpy as np

from tfkd import data
from tfkd.data import DataBundle
from tfkd.distillers import Distiller
from tfkd.experiment import validation
from tfkd.experiment.validation import NONE, PLAIN_CACHES, REPLAY
from tfkd.models import FEATURES
from tfkd.settings import ConfigError
from tfkd.teacher import cache, fingerprint, fixed, output_sources, replay, teaching

# The folder (in the run's checkpoints, removed when the run finishes) of a memory cache, so a
# resumed run reads what its first attempt computed.
MEMORY_FOLDER = "teacher_cache"
CACHE_PHASE = "teacher_cache"  # the phase record: mode, key, built


class TeachingRun:
    """Built from the config before the teacher (so bad settings fail fast); then
    `distill_bundle` gives the data the student learns from, `attach` sets the teaching mode on
    the distiller, `extras` and `stream` build the source of teacher outputs (`source`) whose
    batches the run trains on.

    Args:
      config: the RunConfig; method: its registered Method; options: the method's options.
    """

    def __init__(self, config, method, options, bundle):
        settings = config.teaching
        self.mode = None if settings.mode == NONE else settings.mode
        self.distill_dataset = settings.distill_dataset
        self.options = dict(options)
        self.method = method
        self.teaching = None  # RunConfig refused the settings that do not go together
        if self.mode is not None:
            self.teaching = teaching.Teaching(
                self.mode,
                mixup_alpha=settings.mixup_alpha,
                mixup_partners=settings.mixup_partners,
                crop_scale=(settings.crop_min_scale, 1.0),
                flip=settings.flip,
                seed=config.seed,
            )
        self.other = None
        if self.distill_dataset:
            other_config = dataclasses.replace(
                config.data, dataset=self.distill_dataset, validation_fraction=0.0, test_limit=None
            )
            self.other = fixed.match_input_shape(
                data.load(other_config).train[0], bundle.input_shape
            )
        # Labels go unused under function matching and out of domain: KL only, unless --alpha.
        if (
            (self.mode == "function_matching" or self.other is not None)
            and "alpha" in self.options
            and "alpha" not in config.method.options
        ):
            self.options["alpha"] = 1.0
        self.cache_settings = config.cache
        self.cache_mode = self._cache_mode(config, method, bundle)
        self.cache_record = None
        self.validation_extras = None  # set by extras()
        self.source = None  # set by extras() and stream()
        self.serving = None  # what teacher_setup.serve_teacher made of the teacher(s)
        self.examples = len(bundle.train[1])

    def _cache_mode(self, config, method, bundle):
        """The cache this run uses (None, "memory", "disk" or "replay"); refuses settings under
        which cached outputs would not be the teacher's outputs on what the student sees."""
        settings, mode = config.cache, config.cache.mode  # combinations: RunConfig checks
        if self.mode == "fixed":  # fixed teaching is the cache: logits once, on clean inputs
            return "disk" if mode == "disk" else "memory"
        if mode in PLAIN_CACHES:
            return mode
        if mode == REPLAY:
            if len(bundle.input_shape) != 3:
                raise ValueError(
                    f"--teacher_cache=replay stores image views, but --dataset="
                    f"{bundle.name} has inputs of shape "
                    f"{tuple(bundle.input_shape)}"
                )
            if settings.replay_topk > bundle.num_classes:
                raise ConfigError(
                    "cache.replay_topk",
                    f"`cache.replay_topk` must be in [1, "
                    f"{bundle.num_classes}] for {bundle.num_classes} classes, got "
                    f"{settings.replay_topk}",
                )
            return REPLAY
        return None

    def distill_bundle(self, bundle, teacher):
        """`bundle`, or out of domain the other data set's images labelled with the teacher's
        predictions (a stand-in only read by a cross-entropy term or the train accuracy) and
        `bundle`'s validation and test splits."""
        if self.other is None:
            return bundle
        logits = fixed.teacher_predictions(teacher, self.other)
        pseudo_labels = np.argmax(logits, axis=-1).astype(np.int64)
        self.examples = len(pseudo_labels)
        return DataBundle(
            name=f"{self.distill_dataset}->{bundle.name}",
            train=(self.other, pseudo_labels),
            validation=bundle.validation,
            test=bundle.test,
            num_classes=bundle.num_classes,
            input_shape=bundle.input_shape,
            superclass_of=bundle.superclass_of,
            class_names=bundle.class_names,
        )

    # ---- the teacher-output cache ----------------------------------------------------------------
    def cache_key(self, config, teachers, split="train", extra=None):
        """`tfkd.teacher.fingerprint.cache_key` of the served teachers on this run's training inputs: the data
        set's identity (every data setting but the subset and seed, or --distill_dataset), the
        split, the subset (--train_limit, --validation_fraction), the seed and the preprocessing
        (--teacher_input_scale, the to_float convention, `extra`)."""
        settings = dataclasses.asdict(config.data)
        subset = {name: settings.pop(name) for name in ("train_limit", "validation_fraction")}
        seed = settings.pop("seed")
        settings.pop("test_limit")
        if settings.get("data_dir"):
            settings["data_dir"] = os.path.abspath(os.path.expanduser(settings["data_dir"]))
        if self.distill_dataset:
            settings["dataset"], subset = self.distill_dataset, {"distill_dataset": True}
        preprocessing = {
            "input_scale": config.teacher.input_scale,
            "inputs": "to_float",
            **(extra or {}),
        }
        return fingerprint.cache_key(
            teachers, json.dumps(settings, sort_keys=True), split, subset, seed, preprocessing
        )

    @staticmethod
    def _inputs_identity(bundle, inputs):
        """The inputs' shape and a digest of their bytes: data files changed on disk under the
        same name make another key (rebuilt), never a stale entry."""
        return {
            "input_shape": list(bundle.input_shape),
            "inputs": fingerprint.inputs_fingerprint(inputs),
        }

    def extras(
        self, bundle, teacher, distiller=None, work=None, config=None, options=None, verbose=1
    ):
        """Computes (or reads) the stored teacher outputs of fixed teaching or a plain cache and
        makes `source` the `StoredSource` whose batches carry them; a plain cache also holds the
        validation split's (then `validation_extras`: the validation pass runs no teacher).

        Args:
          bundle: the data the student learns from; teacher: the served teacher (a list for
            multi-teacher methods); distiller: the built method (tells whether features are
            needed); work: the run's WorkDir; config: the RunConfig.
        Returns:
          None: the batches come from `stream`.
        """
        self.validation_extras = None
        self.source = output_sources.OnlineSource(
            bundle.train, bundle.validation, bool(config and config.augment)
        )
        if self.cache_mode not in PLAIN_CACHES:
            return None
        teachers = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
        reads_features = bool(getattr(distiller, "reads_teacher_features", False))
        feature_layer = (options or {}).get("mkd_feature_layer", FEATURES)
        outputs = ("logits", "features") if reads_features else ("logits",)
        private = self.cache_mode == "memory"
        if private and (work is None or not work.write):
            store = cache.TeacherCache("memory", verbose=verbose)
        else:
            folder = work.file("checkpoints", MEMORY_FOLDER) if private else self.cache_settings.dir
            store = cache.TeacherCache("disk", folder, verbose=verbose)
        single = not isinstance(teacher, (list, tuple))
        earlier = (work.done(CACHE_PHASE) if work is not None else None) or {}

        def carried(x, name, label):
            key = self.cache_key(
                config, teachers, split=name, extra=self._inputs_identity(bundle, x)
            )
            if name == "train":  # one line: the validation split's key changes alike
                announce_changed_teacher(earlier.get("key"), key)
            print(
                f"Teacher outputs ({self.cache_mode} cache, key {key}) on {len(x)} {label} "
                "examples",
                flush=True,
            )
            cached = store.outputs(teachers, x, key, outputs=outputs, feature_layer=feature_layer)
            return output_sources.outputs_of(cached, single, in_memory=private), key, cached

        start = time.time()
        train, key, cached = carried(bundle.train[0], "train", "training")
        # Fixed teaching validates with the teacher; the other modes on the cache.
        record = {
            "mode": self.cache_mode,
            "key": key,
            "built": cached.built,
            "path": None if private else cached.path,
            "outputs": list(outputs),
        }
        if self.mode != "fixed" and len(bundle.validation[1]):
            self.validation_extras, validation_key, validation = carried(
                bundle.validation[0], "validation", "validation"
            )
            record.update(
                validation_key=validation_key, validation_path=None if private else validation.path
            )
        self._record(work, {**record, "seconds": time.time() - start})
        self.source = output_sources.StoredSource(
            "fixed" if self.mode == "fixed" else self.cache_mode,
            bundle.train,
            train,
            bundle.validation,
            self.validation_extras,
            bool(config.augment),
        )
        return None

    def stream(self, bundle, teacher, options, work, config, verbose=1):
        """`make(orders, first_epoch, batch_size, seed) -> (dataset, steps)`: the training
        batches of the source holding stored outputs (fixed, cache, replay: for replay built
        here); None for the online source (the run's own pipeline, the teacher running)."""
        if self.cache_mode == REPLAY:
            self.source = self._replay_source(bundle, teacher, options, work, config, verbose)
        if self.source is None or not self.source.stores_outputs:
            return None
        return self.source.training_batches

    def _replay_source(self, bundle, teacher, options, work, config, verbose):
        settings = self.cache_settings
        temperature = float(validation.option(self.method, options, "temperature", undeclared=1.0))
        recipe = {
            "replay_views": settings.replay_views,
            "replay_topk": settings.replay_topk,
            "temperature": temperature,
            "crop_scale": [self.teaching.crop_scale[0], self.teaching.crop_scale[1]],
            "crop_ratio": list(self.teaching.crop_ratio),
            "flip": self.teaching.flip,
            "mixup_alpha": self.teaching.mixup_alpha if self.mode == "function_matching" else None,
        }
        identity = self._inputs_identity(bundle, bundle.train[0])
        key = self.cache_key(config, [teacher], extra={**recipe, **identity})
        earlier = (work.done(CACHE_PHASE) if work is not None else None) or {}
        announce_changed_teacher(earlier.get("key"), key)
        start = time.time()
        print(f"Replay views (key {key}): {settings.replay_views} per training image", flush=True)
        storage, path, built = replay.cached_replay(
            teacher,
            bundle.train[0],
            key,
            settings.dir,
            views=settings.replay_views,
            topk=settings.replay_topk,
            temperature=temperature,
            crop_scale=tuple(recipe["crop_scale"]),
            crop_ratio=tuple(recipe["crop_ratio"]),
            flip=recipe["flip"],
            mixup_alpha=recipe["mixup_alpha"],
            seed=config.seed,
            verbose=verbose,
        )
        self._record(
            work,
            {
                "mode": REPLAY,
                "key": key,
                "built": built,
                "path": path,
                "views": settings.replay_views,
                "topk": settings.replay_topk,
                "bytes_per_image": int(storage.bytes_per_image),
                "seconds": time.time() - start,
            },
        )
        return output_sources.ReplaySource(storage, bundle.train, bundle.validation, temperature)

    def _record(self, work, record):
        earlier = work.done(CACHE_PHASE) if work is not None else None
        if earlier is not None and earlier.get("key") == record["key"]:
            # Built by an earlier attempt of this run counts as built by this run.
            record = {
                **record,
                "built": bool(earlier["built"] or record["built"]),
                "reused_on_resume": not record["built"],
            }
        self.cache_record = record
        if work is not None:
            work.finish(CACHE_PHASE, record)

    def cache_summary(self, work=None):
        """What results.json records of the cache: mode, key, built (True when this run computed
        it, False when it was read from an earlier run's disk entry), path, seconds."""
        if self.cache_mode is None:
            return {"mode": NONE}
        record = self.cache_record
        if record is None and work is not None:
            record = work.done(CACHE_PHASE)
        return record or {"mode": self.cache_mode}

    def serving_summary(self, work=None):
        """The served teacher's precision, folded batch norms and checked difference."""
        if self.serving is None and work is not None:
            return (work.done("distill") or {}).get("serving")
        return self.serving

    def check_distiller(self, distiller):
        """Raises one ValueError when the method's distiller cannot read stored outputs."""
        if self.cache_mode is None or self.mode == "fixed":
            return
        flag = f"--teacher_cache={self.cache_settings.mode}"
        if not isinstance(distiller, Distiller):
            raise ValueError(
                f"{flag} needs a tfkd Distiller, the method built a {type(distiller).__name__}"
            )
        if not getattr(type(distiller).teacher_logits, "logits_only", False):
            raise ValueError(
                f"{flag} carries only the teacher's logits, but "
                f"{type(distiller).__name__} needs more from the teacher; use "
                "--teacher_cache=none"
            )

    def attach(self, distiller):
        """Sets the teaching mode on the distiller. A source of stored outputs (cache, replay)
        needs none: the distiller reads what the batches carry (validation batches without
        them run the teacher); fixed teaching augments the student's view."""
        if self.cache_mode is not None and self.mode != "fixed":
            self.check_distiller(distiller)
            distiller.teaching = None
            return
        if self.teaching is None:
            return
        if not isinstance(distiller, Distiller):
            raise ValueError(
                f"--teaching needs a tfkd Distiller, the method built a {type(distiller).__name__}"
            )
        distiller.teaching = self.teaching

    def summary(self):
        return {
            "teaching": self.mode or NONE,
            "distill_dataset": self.distill_dataset,
            "distill_examples": self.examples,
            "options": self.options,
            **({"augmentation": dataclasses.asdict(self.teaching)} if self.teaching else {}),
        }


def announce_changed_teacher(earlier_key, key):
    """One line when a resumed run's teacher outputs are keyed otherwise than its first attempt's
    (the teacher file, or its inputs, replaced in between): the stored outputs are rebuilt."""
    if earlier_key and earlier_key != key:
        print(
            "teacher outputs: the teacher changed since the stored outputs were written "
            f"(key {earlier_key} -> {key}); rebuilding the cache",
            flush=True,
        )
