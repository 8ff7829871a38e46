"""The student's phases: distilled with the method's distiller (in the order --curriculum says)
and, with --baseline, trained alone with the same schedule; each once, resuming."""

import os
import time

import numpy as np

from tfkd import curriculum, training
from tfkd.callbacks import BatchValueRecorder, TestMonitor
from tfkd.experiment import fitting, teacher_setup, workdir
from tfkd.teacher import loading


def training_orders(config, teacher, bundle, work):
    """int [epochs, N]: the examples of each epoch, for --curriculum (None: a seeded shuffle)."""
    settings, seed = config.curriculum, config.seed
    if settings.order == "none":
        return None
    if settings.order == "random":
        order = curriculum.curriculum_order("random", num_examples=len(bundle.train[1]), seed=seed)
    else:
        if teacher is None:
            raise ValueError(
                f"--curriculum={settings.order} needs a teacher to score the data, "
                "but this method uses none"
            )
        saved = work.file("curriculum.npz")
        if os.path.isfile(saved):
            order = np.load(saved)["order"]
        else:
            print(f"Scoring {len(bundle.train[1])} training examples with the teacher", flush=True)
            scores = curriculum.training_scores(teacher, bundle, verbose=config.output.verbose)
            order = curriculum.curriculum_order(settings.order, scores)
            if work.write:
                correct, confidence, labels = scores
                curriculum.plot_confidence_profile(
                    correct, confidence, labels, work.file("curriculum.png")
                )
                np.savez_compressed(
                    saved, order=order, correct=correct, confidence=confidence, labels=labels
                )
    return curriculum.epoch_orders(
        order,
        config.schedule.epochs,
        settings.pacing,
        settings.pacing_start,
        settings.pacing_epochs,
        seed,
    )


def distill(method, config, options, teacher, bundle, strategy, work, teaching_run):
    """Builds the student and the method's distiller and fits it (resuming); returns
    (student, history). A resumed run whose distillation finished loads the student."""
    saved = work.file("checkpoints", "student.keras")
    if work.done("distill") is not None:
        workdir.announce_reuse("the student distilled by this run")
        with strategy.scope():
            return loading.load_model(saved, "student"), work.done("distill")["history"]
    schedule, seed = config.schedule, config.seed
    served, serving = teacher_setup.serve_teacher(teacher, config, options, bundle, strategy)
    teaching_run.serving = serving
    print(f"Distilling {config.student} with {options} for {schedule.epochs} epochs", flush=True)
    # Seeded here, so the student starts alike whether the teacher was trained or loaded.
    fitting.seed_everything(seed)
    student = fitting.build_model(config.student, bundle, strategy, schedule.precision)
    orders = training_orders(config, served, bundle, work)
    steps = -(-len(bundle.train[1]) // schedule.batch_size)
    with strategy.scope():
        distiller = method.build(student, served, bundle, options)
        teaching_run.attach(distiller)
        distiller.compile(optimizer=training.make_optimizer(schedule, steps), metrics=["accuracy"])
    progress = 1 if config.output.verbose else 0
    extras = teaching_run.extras(bundle, served, distiller, work, config, options, progress)
    stream = teaching_run.stream(bundle, served, options, work, config, progress)
    callbacks = []
    if config.teaching.test_every:
        callbacks.append(TestMonitor(student, bundle.test, config.teaching.test_every, teacher))
    if getattr(distiller, "batch_values", ()) and work.write:
        callbacks.append(BatchValueRecorder(work.file("batch_values.csv")))
    fit = fitting.Fit(
        "distill",
        bundle,
        schedule,
        seed,
        verbose=config.output.verbose,
        orders=orders,
        augment=config.augment,
        extras=extras,
        callbacks=tuple(callbacks),
        write=work.write,
        stream=stream,
        validation_extras=teaching_run.validation_extras,
    )
    history = fitting.fit_resumable(distiller, work, fit)
    student = fitting.in_float32(student, config.student, bundle, strategy)
    fitting.save_trained(student, history, work, saved, "history.csv")
    work.finish("distill", {"history": history, "serving": serving})
    return student, history


def baseline(config, bundle, strategy, work):
    """The student alone with the distillation schedule, trained once in `work` (a WorkDir);
    returns (model, seconds of training)."""
    saved = work.file("checkpoints", "baseline.keras")
    record = work.done("baseline")
    if record is not None:
        with strategy.scope():
            return loading.load_model(saved, "baseline"), record["seconds"]
    start = time.time()
    fit = fitting.Fit(
        "baseline",
        bundle,
        config.schedule,
        config.seed,
        verbose=config.output.verbose,
        augment=config.augment,
    )
    model, history = fitting.train_classifier(config.student, fit, strategy, work)
    seconds = time.time() - start
    fitting.save_trained(model, history, work, saved, "baseline.csv")
    work.finish("baseline", {"seconds": seconds})
    return model, seconds
