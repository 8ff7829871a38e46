"""The causal-LM job: what `tfkd.experiment.run` (`tfkd distill`) does with language-model data.

    tfkd distill --config=lm                               # the stdlib recipe
    tfkd distill --dataset=lm:corpus/ --teacher=preset:DIR --student=gpt_tiny --epochs=2

data -> teacher (trained here by name, or loaded) -> the teacher's top-k store (with
`--teacher_cache=disk`) -> distillation -> the student alone (`--baseline`) -> report, in the
run's `<output_dir>.partial/` until everything succeeded; every phase resumes (`tfkd.lm.resumable_fit`).
results.json holds per-token NLL and perplexity on the validation and test splits of teacher,
student and student alone (`results[role]["perplexity"]` on test), the store's bytes per token,
CPU seconds per phase and a few sampled completions; history.csv the student's epochs; the
folder also holds student.keras (and teacher.keras when the teacher was trained here).
"""

import gc
import json
import re
import time

import keras

from tfkd import checkpoint, methods, training
from tfkd.atomic import atomic_path, write_text
from tfkd.data import language_modeling as lm_data
from tfkd.lm import evaluation
from tfkd.lm import multi_teacher_distiller as multi_teacher
from tfkd.lm.causal_lm_export import export_run_student
from tfkd.lm.distiller import CausalLMDistiller, check_vocabularies, vocabulary_size
from tfkd.lm.resumable_fit import Phase, fit_resumable
from tfkd.lm.sampling import Sampling
from tfkd.lm.store import TopKStore
from tfkd.models import gpt
from tfkd.settings import ConfigError

# The flags the data and model readers name in their errors, and the fields behind them.
FIELDS = {
    "dataset": "data.dataset",
    "sequence_length": "data.sequence_length",
    "split_by": "lm.split_by",
    "prompt_column": "lm.prompt_column",
    "completion_column": "lm.completion_column",
}
FLAG = re.compile(r"--(\w+)")


def as_config_error(error, field):
    """`error` of a reader as a ConfigError: the first flag it names (else `field`) is the field,
    every flag it names written as its field."""
    text = str(error)
    named = [FIELDS[name] for name in FLAG.findall(text) if name in FIELDS]
    message = FLAG.sub(lambda m: f"`{FIELDS[m.group(1)]}`" if m.group(1) in FIELDS else m[0], text)
    return ConfigError(named[0] if named else field, message)


def data_seed(config):
    return config.seed if config.lm.data_seed < 0 else config.lm.data_seed


def load_data(config, folder):
    """The run's LMData; `--dataset=stdlib` writes its corpus to `folder`/corpus.txt first."""
    dataset = config.data.dataset
    if dataset == lm_data.STDLIB:
        path = f"{folder}/corpus.txt"
        lm_data.build_stdlib_corpus(path, seed=data_seed(config), max_bytes=config.lm.corpus_bytes)
    else:
        path = dataset[len(lm_data.LM_PREFIX) :]
    try:
        return lm_data.load_lm(
            path,
            config.data.sequence_length,
            split_by=config.lm.split_by,
            validation_fraction=config.data.validation_fraction,
            test_fraction=config.lm.test_fraction,
            seed=data_seed(config),
            prompt_column=config.lm.prompt_column or None,
            completion_column=config.lm.completion_column or None,
        )
    except ValueError as error:
        raise as_config_error(error, "data.dataset") from None


def load_model(spec, field, data, config, seed, strategy):
    """The causal LM `spec` names: built (seeded) for the data's vocabulary when it is a zoo
    name, else loaded as it is; ConfigError naming `field`."""
    size = data.vocabulary_size if spec in gpt.CAUSAL_LMS else None
    try:
        with strategy.scope():
            return gpt.load_causal_lm(
                spec, size, data.sequence_length, seed=seed, dropout=config.lm.dropout
            )
    except ValueError as error:
        raise ConfigError(field, f"`{field}`: {error}") from None


def loaded_models(config, data, strategy):
    """The teacher and student files (zoo names are built for the data later), loaded and
    checked before any training: one vocabulary shared with each other and with the data's
    tokenizer. Returns the loaded teacher, or None for a zoo name."""
    loaded = {
        field: load_model(spec, field, data, config, None, strategy)
        for field, spec in (("teacher.spec", config.teacher.spec), ("student", config.student))
        if spec not in gpt.CAUSAL_LMS
    }
    if len(loaded) == 2:
        try:
            check_vocabularies(loaded["student"], loaded["teacher.spec"])
        except ValueError as error:
            raise ConfigError("teacher.spec", f"`teacher.spec` and `student`: {error}") from None
    for field, model in loaded.items():
        size = model.output_shape[-1]
        if size != data.vocabulary_size:
            raise ConfigError(
                field,
                f"`{field}` {model.name!r} has a vocabulary of {size} tokens; the data's "
                f"tokenizer has {data.vocabulary_size}",
            )
    return loaded.get("teacher.spec")


def several_teachers(config, context):
    """aver, ebkd and ca_mkd: the `--teachers`, each trained here by name (teacher_<k>.keras)
    or loaded, sharing one vocabulary with the data. Returns (models, CPU seconds)."""
    _, data, strategy, _ = context
    models, seconds = [], 0.0
    for index, spec in enumerate(config.teacher.specs):
        if spec in gpt.CAUSAL_LMS:
            schedule = config.teacher_schedule()
            model, record = train_alone(
                spec, f"teacher_{index}", schedule, config.seed + 1 + index, context
            )
            seconds += record["cpu_seconds"]
        else:
            model = load_model(spec, "teacher.specs", data, config, None, strategy)
        models.append(model)
    try:
        multi_teacher.check_shared_vocabulary(models)
    except ValueError as error:
        raise ConfigError("teacher.specs", f"`teacher.specs`: {error}") from None
    if vocabulary_size(models[0]) != data.vocabulary_size:
        raise ConfigError(
            "teacher.specs",
            f"`teacher.specs` {models[0].name!r} has a vocabulary of "
            f"{vocabulary_size(models[0])} tokens; the data's tokenizer has {data.vocabulary_size}",
        )
    return models, seconds


def save_model(model, path):
    with atomic_path(path, suffix=".keras") as temporary:
        model.save(temporary)


def fit_phase(model, name, schedule, data, config, work, batches, validation):
    """Fits `model` (a CausalLMDistiller) resumably for `schedule`; returns the epoch logs."""
    steps = -(-len(data.train) // schedule.batch_size)
    model.compile(optimizer=training.make_optimizer(schedule, steps))
    phase = Phase(
        name,
        schedule.epochs,
        steps,
        batches,
        validation,
        write=work.write,
        verbose=config.output.verbose,
    )
    return fit_resumable(model, work, phase)


def data_batches(data, schedule, seed):
    def batches(first_epoch):
        orders = lm_data.shuffled_orders(len(data.train), schedule.epochs, seed, first_epoch)
        return data.dataset("train", schedule.batch_size, orders=orders)

    return batches


def train_alone(spec, name, schedule, seed, context):
    """`spec` trained alone on the data's per-token cross-entropy (a teacher or the baseline),
    saved as `name`.keras in the run's folder once: a resumed run loads it. Returns
    (model, {"cpu_seconds", "history"})."""
    config, data, strategy, work = context
    # A teacher trained here stays beside the results, for later runs (--teacher=PATH).
    saved = (
        work.file(f"{name}.keras")
        if name == "teacher"
        else work.file("checkpoints", f"{name}.keras")
    )
    record = work.done(name)
    if record is not None:
        with strategy.scope():
            return gpt.load_causal_lm(saved), record
    start = time.process_time()
    model = load_model(
        spec, "student" if name == "baseline" else "teacher.spec", data, config, seed, strategy
    )
    with strategy.scope():
        trainer = CausalLMDistiller(model, None, alpha=0.0)
    validation = data.dataset("validation", schedule.batch_size)
    history = fit_phase(
        trainer,
        name,
        schedule,
        data,
        config,
        work,
        data_batches(data, schedule, config.seed),
        validation,
    )
    record = {"cpu_seconds": time.process_time() - start, "history": history}
    if work.write:
        save_model(model, saved)
        write_text(work.file(f"{name}.csv"), checkpoint.history_csv(history))
    work.finish(name, record)
    return model, record


def build_store(config, data, teacher):
    """The teacher's top-k stores of the training and validation splits (reused when complete):
    (train store, validation store, the results' "store" record)."""
    k = config.lm.cache_topk
    stores = [
        TopKStore.open_or_build(config.cache.dir, teacher, data.split(split), k)
        for split in ("train", "validation")
    ]
    record = {
        "k": k,
        "bytes_per_token": stores[0].bytes_per_token,
        "size_bytes": sum(store.size_bytes for store in stores),
        "reused": not stores[0].built,
        "directory": stores[0].directory,
    }
    return stores, record


def several_stores(config, data, teachers):
    """One top-k store per teacher, read together (`multi_teacher.StackedStores`)."""
    built = [build_store(config, data, model) for model in teachers]
    records = [record for _, record in built]
    record = {
        **records[0],
        "size_bytes": sum(entry["size_bytes"] for entry in records),
        "reused": all(entry["reused"] for entry in records),
        "directory": [entry["directory"] for entry in records],
    }
    stores = [multi_teacher.StackedStores([pair[index] for pair, _ in built]) for index in (0, 1)]
    return stores, record


def distill(config, options, teacher, stores, context):
    """The student distilled from `teacher` (or from `stores`), resumably; (student, record)."""
    _, data, strategy, work = context
    saved = work.file("student.keras")
    record = work.done("distill")
    if record is not None:
        with strategy.scope():
            return gpt.load_causal_lm(saved), record
    start = time.process_time()
    schedule, lm = config.schedule, config.lm
    keras.utils.set_random_seed(config.seed)
    student = load_model(config.student, "student", data, config, config.seed + 2, strategy)
    on_policy = dict(
        on_policy_fraction=lm.on_policy_fraction,
        sampling=Sampling(
            max_new_tokens=lm.max_new_tokens,
            temperature=lm.sampling_temperature,
            top_k=lm.sampling_top_k,
            top_p=lm.sampling_top_p,
            end_token_id=data.tokenizer.end_token_id,
            seed=config.seed,
        ),
    )
    with strategy.scope():
        if config.method.name in multi_teacher.METHODS:
            distiller = multi_teacher.run_distiller(
                student, teacher, config.method.name, options, **on_policy
            )
        else:
            distiller = CausalLMDistiller(
                student,
                teacher,
                divergence=options["divergence"],
                temperature=options["temperature"],
                alpha=options["alpha"],
                jsd_beta=options["jsd_beta"],
                **on_policy,
            )
    if stores is None:
        batches = data_batches(data, schedule, config.seed)
        validation = data.dataset("validation", schedule.batch_size)
    else:

        def batches(first_epoch):
            orders = lm_data.shuffled_orders(
                len(data.train), schedule.epochs, config.seed, first_epoch
            )
            return stores[0].dataset(data.train, schedule.batch_size, orders=orders)

        validation = stores[1].dataset(data.validation, schedule.batch_size)
    history = fit_phase(distiller, "distill", schedule, data, config, work, batches, validation)
    record = {"cpu_seconds": time.process_time() - start, "history": history}
    if work.write:
        save_model(student, saved)
        write_text(work.file("history.csv"), checkpoint.history_csv(history))
    work.finish("distill", record)
    return student, record


def run(config, strategy, work):
    """Runs `config` (a `RunConfig` on language-model data) in `work` (its opened WorkDir);
    returns the results it writes to results.json."""
    options = methods.METHODS.get(config.method.name).resolve(config.method.options, "kd")
    data = load_data(config, work.path)
    context = (config, data, strategy, work)
    batch_size = config.schedule.batch_size
    spec = config.teacher.spec
    several = config.method.name in multi_teacher.METHODS
    if several:  # the best of the teachers on validation perplexity stands as "teacher"
        teacher, spent = several_teachers(config, context)
        record = {"cpu_seconds": spent} if spent else None
        teachers = [
            {"arch": name, **evaluation.evaluate(model, data, batch_size)}
            for name, model in zip(config.teacher.specs, teacher)
        ]
        best = min(teachers, key=lambda entry: entry["validation"]["perplexity"])
    else:
        teacher, record = loaded_models(config, data, strategy), None
        if teacher is None:
            teacher, record = train_alone(
                spec, "teacher", config.teacher_schedule(), config.seed + 1, context
            )
        best = {"arch": spec, **evaluation.evaluate(teacher, data, batch_size)}
    seconds = {"teacher": record["cpu_seconds"]} if record else {}
    results = {
        "dataset": config.data.dataset,
        "method": config.method.name,
        "options": options,
        "data": {
            **{
                split: {
                    "sequences": len(data.split(split)),
                    "target_tokens": data.split(split).num_target_tokens,
                }
                for split in lm_data.SPLITS
            },
            "vocabulary_size": data.vocabulary_size,
        },
        "teacher": best,
        **({"teachers": teachers} if several else {}),
    }
    stores = None
    if config.cache.mode == "disk":
        start = time.process_time()
        stores, results["store"] = (several_stores if several else build_store)(
            config, data, teacher
        )
        seconds["store"] = time.process_time() - start
        teacher = None  # distillation reads the store only
        gc.collect()
    student, record = distill(config, options, teacher, stores, context)
    seconds["student"] = record["cpu_seconds"]
    results["student"] = {
        "arch": config.student,
        **evaluation.evaluate(student, data, batch_size),
        "history": evaluation.history_columns(record["history"]),
    }
    if config.lm.samples and config.lm.max_new_tokens:
        results["samples"] = evaluation.completions(
            student, data, config.lm.samples, config.lm, config.seed
        )
    if set(config.output.export) - {"keras"} and work.write:
        results["exports"] = export_run_student(
            student, work.path, config.output.export, data, config.lm.max_new_tokens
        )
    if config.output.baseline:
        alone, record = train_alone(
            config.student, "baseline", config.schedule, config.seed + 2, context
        )
        seconds["baseline"] = record["cpu_seconds"]
        results["baseline"] = evaluation.evaluate(alone, data, batch_size)
    results.update(
        cpu_seconds=seconds,
        flags=config.flag_values(),
        deterministic=config.deterministic,
        resumed=work.resumed,
    )
    if work.write:
        write_text(work.file("report.md"), evaluation.report_markdown(results))
    work.commit(results)
    summary = {role: results[role]["perplexity"] for role in evaluation.ROLES if role in results}
    print(json.dumps({"test_perplexity": summary, "cpu_seconds": seconds}), flush=True)
    print(f"Results: {work.output_dir}/results.json", flush=True)
    return results
