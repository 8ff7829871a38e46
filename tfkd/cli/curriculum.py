"""Curriculum flags and the training data they select; per-batch value recording for `fit`.

`define_flags()` adds --curriculum, --pacing, --pacing_start and --pacing_epochs;
`training_data(...)` returns the usual shuffled data set unless a curriculum is requested.
"""
import os

import numpy as np
from absl import flags

from tfkd import curriculum, methods
from tfkd.callbacks import BatchValueRecorder

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_enum("curriculum", "none", curriculum.CURRICULA,
                      "Training order: none (shuffled), teacher (teacher-scored, easy to hard, "
                      "class-stratified), inverse (hard to easy) or random (a fixed random "
                      "order: the control for teacher).")
    flags.DEFINE_enum("pacing", "none", curriculum.PACINGS,
                      "Curriculum pacing: none keeps the fixed order every epoch; linear, step "
                      "and exponential draw early epochs from a shuffled easiest prefix.")
    flags.DEFINE_float("pacing_start", 0.2, "Fraction of the curriculum used in the first epoch.")
    flags.DEFINE_integer("pacing_epochs", 5,
                         "Pacing growth: the epoch from which the whole training set is in use.")


def check_flags():
    """Raises a ValueError naming the flag for a bad curriculum setting (before any training)."""
    if not _requested():
        return
    if FLAGS.curriculum == "none":
        raise ValueError(f"--pacing={FLAGS.pacing} paces a curriculum; pass "
                         "--curriculum=teacher, inverse or random")
    curriculum.check_pacing(FLAGS.pacing, FLAGS.pacing_start, FLAGS.pacing_epochs)
    if FLAGS.curriculum != "random" and "method" in FLAGS and FLAGS.method in methods.METHODS:
        if not methods.METHODS.get(FLAGS.method).needs_teacher:
            raise ValueError(f"--curriculum={FLAGS.curriculum} needs a teacher to score the "
                             f"data, but --method={FLAGS.method} uses none")


def _requested():
    return "curriculum" in FLAGS and (FLAGS.curriculum != "none" or FLAGS.pacing != "none")


def training_data(default, teacher, bundle, config, augment, seed, verbose, work_dir):
    """(training data set, steps_per_epoch for fit): `default` and None without a curriculum.

    With one, the teacher scores the training split (once: the scores are cached for methods
    that need them too), the order and its confidence profile are written to `work_dir`, and
    all epochs are laid out in one pipeline that `fit` reads with `steps_per_epoch`.
    """
    if not _requested():
        return default, None
    check_flags()
    orders = curriculum.epoch_orders(_order(teacher, bundle, verbose, seed, work_dir),
                                     config.epochs, FLAGS.pacing, FLAGS.pacing_start,
                                     FLAGS.pacing_epochs, seed)
    return curriculum.curriculum_dataset(*bundle.train, orders, config.batch_size, augment, seed)


def _order(teacher, bundle, verbose, seed, work_dir):
    """The --curriculum order; a teacher-scored one is saved with its scores and Fig. 1 plot."""
    if FLAGS.curriculum == "random":
        return curriculum.curriculum_order("random", num_examples=len(bundle.train[1]), seed=seed)
    if teacher is None:
        raise ValueError(f"--curriculum={FLAGS.curriculum} needs a teacher to score the data, "
                         "but this method uses none")
    print(f"Scoring {len(bundle.train[1])} training examples with the teacher", flush=True)
    scores = curriculum.training_scores(teacher, bundle, verbose=verbose)
    indices = curriculum.curriculum_order(FLAGS.curriculum, scores)
    if work_dir is not None:
        correct, confidence, labels = scores
        np.savez_compressed(os.path.join(work_dir, "curriculum.npz"), order=indices,
                            correct=correct, confidence=confidence, labels=labels)
        curriculum.plot_confidence_profile(correct, confidence, labels,
                                           os.path.join(work_dir, "curriculum.png"))
    return indices


def callbacks(model, work_dir):
    """A `BatchValueRecorder` for a model that exposes per-batch values (kd_sr's lambda)."""
    if work_dir is None or not getattr(model, "batch_values", ()):
        return []
    return [BatchValueRecorder(os.path.join(work_dir, "batch_values.csv"))]
