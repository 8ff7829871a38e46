"""What the teaching settings change in one run: the teaching mode, out-of-domain data, options."""
import dataclasses

import numpy as np

from tfkd import data, teaching
from tfkd.data import DataBundle
from tfkd.distillers import Distiller

NONE = "none"


class TeachingRun:
    """Built from the config before the teacher (so bad settings fail fast); then
    `distill_bundle` gives the data the student learns from, `extras` what fixed teaching carries
    with each example, `attach` sets the teaching mode on the distiller.

    Args:
      config: the RunConfig; method: its registered Method; options: the method's options.
    """

    def __init__(self, config, method, options, bundle):
        settings = config.teaching
        name = config.method.name
        self.mode = None if settings.mode == NONE else settings.mode
        self.distill_dataset = settings.distill_dataset
        self.options = dict(options)
        if settings.test_every < 0:
            raise ValueError("--test_every must be an integer >= 0")
        if self.mode is not None and config.augment:
            raise ValueError("--augment cannot be combined with --teaching: the teaching mode "
                             "does its own augmentation, in-graph")
        if (self.mode is not None or self.distill_dataset) and method.multi_teacher:
            raise ValueError(f"--teaching and --distill_dataset work with single-teacher methods, "
                             f"not --method={name}")
        self.teaching = None
        if self.mode is not None:
            if not method.needs_teacher:
                raise ValueError(f"--teaching: method {name!r} uses no teacher")
            self.teaching = teaching.Teaching(
                self.mode, mixup_alpha=settings.mixup_alpha,
                mixup_partners=settings.mixup_partners, crop_scale=(settings.crop_min_scale, 1.0),
                flip=settings.flip, seed=config.seed)
        self.other = None
        if self.distill_dataset:
            if not method.needs_teacher:
                raise ValueError(f"--distill_dataset: method {name!r} uses no teacher")
            other_config = dataclasses.replace(config.data, dataset=self.distill_dataset,
                                               validation_fraction=0.0, test_limit=None)
            self.other = teaching.match_input_shape(data.load(other_config).train[0],
                                                    bundle.input_shape)
        # Labels go unused under function matching and out of domain: KL only, unless --alpha.
        if (self.mode == "function_matching" or self.other is not None) and \
                "alpha" in self.options and "alpha" not in config.method.options:
            self.options["alpha"] = 1.0
        self._logits = None
        self.examples = len(bundle.train[1])

    def distill_bundle(self, bundle, teacher):
        """`bundle`, or out of domain the other data set's images labelled with the teacher's
        predictions (a stand-in only read by a cross-entropy term or the train accuracy) and
        `bundle`'s validation and test splits."""
        if self.other is None:
            return bundle
        self._logits = teaching.teacher_predictions(teacher, self.other)
        pseudo_labels = np.argmax(self._logits, axis=-1).astype(np.int64)
        self.examples = len(pseudo_labels)
        return DataBundle(name=f"{self.distill_dataset}->{bundle.name}",
                          train=(self.other, pseudo_labels), validation=bundle.validation,
                          test=bundle.test, num_classes=bundle.num_classes,
                          input_shape=bundle.input_shape, superclass_of=bundle.superclass_of,
                          class_names=bundle.class_names)

    def extras(self, bundle, teacher):
        """Per-example arrays the training batches carry: fixed teaching's teacher logits."""
        if self.mode != "fixed":
            return None
        logits = self._logits if self._logits is not None else \
            teaching.teacher_predictions(teacher, bundle.train[0])
        return {teaching.TEACHER_LOGITS: logits}

    def attach(self, distiller):
        if self.teaching is None:
            return
        if not isinstance(distiller, Distiller):
            raise ValueError(f"--teaching needs a tfkd Distiller, the method built a "
                             f"{type(distiller).__name__}")
        if self.mode == "fixed":
            teaching.check_logit_based(distiller)
        distiller.teaching = self.teaching

    def summary(self):
        return {"teaching": self.mode or NONE, "distill_dataset": self.distill_dataset,
                "distill_examples": self.examples, "options": self.options,
                **({"augmentation": dataclasses.asdict(self.teaching)} if self.teaching else {})}
