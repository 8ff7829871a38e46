"""`bin/distill` flags for teaching modes, out-of-domain data and test-split monitoring.

    --teaching=fixed|independent|consistent|function_matching   (tfkd.teaching)
    --distill_dataset=B   the student learns from B's images (labels unused), the teacher was
                          trained on --dataset A, and the student is evaluated on A's test split
    --test_every=N        student test accuracy every N epochs, as column test_accuracy of
                          history.csv (a patience curve from one run)
"""
import dataclasses

import numpy as np
from absl import flags

from tfkd import augment, data, teaching
from tfkd.callbacks import TestMonitor
from tfkd.data import DataBundle
from tfkd.distillers import Distiller

FLAGS = flags.FLAGS
NONE = "none"


def define_flags():
    flags.DEFINE_enum("teaching", NONE, (NONE, *teaching.MODES),
                      "What teacher and student see of a training batch: none (the batch as it "
                      "comes, to both), fixed (teacher logits computed once on un-augmented "
                      "images), independent (two augmented views), consistent (one augmented "
                      "view), function_matching (consistent plus mixup; KL only unless --alpha "
                      "is given).")
    flags.DEFINE_float("mixup_alpha", 1.0, "Beta(a, a) parameter of the mixup weight.")
    flags.DEFINE_enum("mixup_partners", "permutation", augment.PARTNERS,
                      "Mixup partner of each example: a random permutation without fixed "
                      "points, or the next example in the batch (roll).")
    flags.DEFINE_float("crop_min_scale", 0.08,
                       "Smallest area fraction of the inception crop used by --teaching.")
    flags.DEFINE_boolean("teaching_flip", True, "Random horizontal flips in --teaching.")
    flags.DEFINE_string("distill_dataset", None,
                        "Out-of-domain distillation: the student learns from this data set's "
                        "train images (resized to --dataset's input shape, labels unused) and is "
                        "evaluated on --dataset's test split.")
    flags.DEFINE_integer("test_every", 0,
                         "Every N epochs record the student's test accuracy as history column "
                         "test_accuracy (0 = never).")


class TeachingRun:
    """What the teaching flags change in one `bin/distill` run.

    Built from flags before the teacher (so bad flags fail fast); then `distill_bundle` gives the
    data the student learns from, `train_dataset` its batches, `attach` sets the teaching mode
    on the distiller and `callbacks` the test-split monitor.
    """

    def __init__(self, method_name, method, options, bundle, data_config):
        self.mode = None if FLAGS.teaching == NONE else FLAGS.teaching
        self.options = dict(options)
        self.test = bundle.test
        if FLAGS.test_every < 0:
            raise ValueError("--test_every must be an integer >= 0")
        if self.mode is not None and FLAGS.augment:
            raise ValueError("--augment cannot be combined with --teaching: the teaching mode "
                             "does its own augmentation, in-graph")
        self.teaching = None
        if (self.mode is not None or FLAGS.distill_dataset) and method.multi_teacher:
            raise ValueError(f"--teaching and --distill_dataset work with single-teacher methods, "
                             f"not --method={method_name}")
        if self.mode is not None:
            if not method.needs_teacher:
                raise ValueError(f"--teaching: method {method_name!r} uses no teacher")
            self.teaching = teaching.Teaching(
                self.mode, mixup_alpha=FLAGS.mixup_alpha, mixup_partners=FLAGS.mixup_partners,
                crop_scale=(FLAGS.crop_min_scale, 1.0), flip=FLAGS.teaching_flip,
                seed=FLAGS.seed)
        self.other = None
        if FLAGS.distill_dataset:
            if not method.needs_teacher:
                raise ValueError(f"--distill_dataset: method {method_name!r} uses no teacher")
            config = dataclasses.replace(data_config, dataset=FLAGS.distill_dataset,
                                         validation_fraction=0.0, test_limit=None)
            other = data.load(config)
            self.other = teaching.match_input_shape(other.train[0], bundle.input_shape)
        # Labels go unused under function matching and out of domain: KL only, unless --alpha.
        if (self.mode == "function_matching" or self.other is not None) and \
                "alpha" in self.options and not FLAGS["alpha"].present:
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
        return DataBundle(name=f"{FLAGS.distill_dataset}->{bundle.name}",
                          train=(self.other, pseudo_labels), validation=bundle.validation,
                          test=bundle.test, num_classes=bundle.num_classes,
                          input_shape=bundle.input_shape, superclass_of=bundle.superclass_of,
                          class_names=bundle.class_names)

    def train_dataset(self, train, bundle, teacher, batch_size, seed):
        """The student's training batches; fixed teaching carries the teacher's logits."""
        if self.mode != "fixed":
            return train
        x, y = bundle.train
        logits = self._logits if self._logits is not None else \
            teaching.teacher_predictions(teacher, x)
        return teaching.fixed_dataset(x, y, logits, batch_size, shuffle=True, seed=seed)

    def attach(self, distiller):
        if self.teaching is None:
            return
        if not isinstance(distiller, Distiller):
            raise ValueError(f"--teaching needs a tfkd Distiller, the method built a "
                             f"{type(distiller).__name__}")
        if self.mode == "fixed":
            teaching.check_logit_based(distiller)
        distiller.teaching = self.teaching

    def callbacks(self, student, teacher=None):
        if not FLAGS.test_every:
            return []
        return [TestMonitor(student, self.test, FLAGS.test_every, teacher)]

    def summary(self):
        return {"teaching": self.mode or NONE, "distill_dataset": FLAGS.distill_dataset,
                "distill_examples": self.examples, "options": self.options,
                **({"augmentation": dataclasses.asdict(self.teaching)} if self.teaching else {})}
