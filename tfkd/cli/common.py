"""Steps shared by the command-line tools: output folders, training, evaluation, errors."""
import contextlib
import math
import os
import shutil
import sys

import keras
import numpy as np
import tensorflow as tf
from absl import app, logging

from tfkd import data, models, training
from tfkd.cli import curriculum as curriculum_cli
from tfkd.io import replace

USER_ERRORS = (ValueError, FileExistsError, FileNotFoundError, data.DataUnavailableError)


def app_run(main):
    """absl's app.run, with user errors shown as one line on stderr (TFKD_DEBUG=1 re-raises)."""
    def guarded(argv):
        logging.set_verbosity(logging.WARNING)
        tf.get_logger().setLevel("ERROR")
        try:
            return main(argv)
        except USER_ERRORS as error:
            if os.environ.get("TFKD_DEBUG"):
                raise
            message = " ".join(str(error).split())
            print(f"{os.path.basename(argv[0])}: error: {message}", file=sys.stderr)
            sys.exit(2)
    app.run(guarded)


def no_positional_arguments(argv):
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])} (flags start with --)")


def check_output_dir(path, overwrite):
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise FileExistsError(f"--output_dir {path} exists and is not empty; pass --overwrite "
                              "to replace it")
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"--output_dir {path} exists and is not a folder")


@contextlib.contextmanager
def staging_dir(output_dir):
    """A sibling folder that becomes `output_dir` only when the job succeeds."""
    output_dir = os.path.abspath(output_dir)
    staging = f"{output_dir}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        yield staging
        replace(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def seed_everything(seed):
    keras.utils.set_random_seed(seed)


def datasets(bundle, batch_size, augment, seed):
    train = data.as_dataset(*bundle.train, batch_size, shuffle=True, augment=augment, seed=seed)
    validation = None
    if len(bundle.validation[1]):
        validation = data.as_dataset(*bundle.validation, batch_size)
    steps = math.ceil(len(bundle.train[1]) / batch_size)
    return train, validation, steps


def build_model(arch, bundle, strategy):
    mean, variance = bundle.stats()
    with strategy.scope():
        return models.build(arch, input_shape=bundle.input_shape, num_classes=bundle.num_classes,
                            mean=mean, variance=variance)


def callbacks(work_dir, name):
    if work_dir is None:
        return []
    return [keras.callbacks.CSVLogger(os.path.join(work_dir, f"{name}.csv")),
            keras.callbacks.TensorBoard(os.path.join(work_dir, "logs", name))]


def train_classifier(arch, bundle, strategy, config, name, verbose, augment, seed,
                     work_dir=None):
    """Trains `arch` alone with cross-entropy (teachers and baselines)."""
    print(f"Training {name} {arch} for {config.epochs} epochs", flush=True)
    model = build_model(arch, bundle, strategy)
    train, validation, steps = datasets(bundle, config.batch_size, augment, seed)
    with strategy.scope():
        training.compile_classifier(model, config, steps)
    model.fit(train, validation_data=validation, epochs=config.epochs, verbose=verbose, shuffle=False,
              callbacks=callbacks(work_dir, name))
    return model


def distill(method, student_arch, teacher, bundle, strategy, config, options, work_dir,
            verbose, augment, seed, teaching=None):
    """Builds the student and the method's distiller, fits it, returns the student.

    `teaching` (a tfkd.cli.teaching.TeachingRun, optional) sets the teaching mode, the
    training batches and extra callbacks.
    """
    print(f"Distilling {student_arch} with {options} for {config.epochs} epochs", flush=True)
    # Seeded here, so the student starts alike whether the teacher was trained or loaded (and
    # a bin/tune trial, which builds its student the same way, is reproduced by bin/distill).
    seed_everything(seed)
    student = build_model(student_arch, bundle, strategy)
    train, validation, steps = datasets(bundle, config.batch_size, augment, seed)
    # Curriculum (tfkd/cli/curriculum.py): teacher-ordered, paced data when --curriculum asks.
    train, steps_per_epoch = curriculum_cli.training_data(train, teacher, bundle, config, augment,
                                                          seed, verbose, work_dir)
    extra_callbacks = []
    if teaching is not None:
        train = teaching.train_dataset(train, bundle, teacher, config.batch_size, seed)
        extra_callbacks = teaching.callbacks(student, teacher)
    with strategy.scope():
        distiller = method.build(student, teacher, bundle, options)
        if teaching is not None:
            teaching.attach(distiller)
        distiller.compile(optimizer=training.make_optimizer(config, steps), metrics=["accuracy"])
    distiller.fit(train, validation_data=validation, epochs=config.epochs, shuffle=False,
                  steps_per_epoch=steps_per_epoch, verbose=verbose,
                  callbacks=extra_callbacks + callbacks(work_dir, "distill")
                  + curriculum_cli.callbacks(distiller, work_dir))
    if work_dir is not None:
        os.replace(os.path.join(work_dir, "distill.csv"), os.path.join(work_dir, "history.csv"))
    return student


def accuracy(model, split, batch_size=256):
    x, y = split
    logits = model.predict(data.to_float(x), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(y)))


def print_summary(results, output_dir):
    rows = [(role, results[role]) for role in ("teacher", "student") if role in results]
    print(f"\ntfkd {results['method']} on {results['dataset']}")
    for role, entry in rows:
        print(f"  {role:<9}{entry['arch']:<28}accuracy {entry['accuracy']:.4f}   "
              f"params {entry['params']:,}")
    if "baseline" in results:
        print(f"  {'baseline':<9}{'(student alone)':<28}accuracy "
              f"{results['baseline']['accuracy']:.4f}")
    exports = results.get("exports", {})
    files = [v for k, v in exports.items() if k in ("keras", "savedmodel", "tflite")]
    print(f"  output   {output_dir}: results.json, history.csv" +
          "".join(f", {f}" for f in files))
    if "tflite_agreement" in exports:
        print(f"  tflite   accuracy {exports['tflite_accuracy']:.4f}, agreement with Keras "
              f"{100 * exports['tflite_agreement']:.2f}%")
