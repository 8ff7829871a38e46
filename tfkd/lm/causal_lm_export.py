"""Causal-LM student export: `.keras`, SavedModel with `serve` and `generate`, LiteRT of the forward
pass, and a parity report on next-token logits.

    exports = export_causal_lm(student, "out", ("keras", "savedmodel", "tflite"),
                               test_split=data.test, generation=Generation(max_new_tokens=16))

SavedModel signatures (int32 tensors [batch, time]; row b's tokens are its first
sum(padding_mask[b]) entries, padding after them):
  serve     token_ids, padding_mask -> logits float32 [batch, time, V], the next-token logits
            at every position.
  generate  token_ids, padding_mask (the prompts) -> token_ids, padding_mask int32 [batch, time +
            max_new_tokens]: each prompt followed by `max_new_tokens` tokens from the in-graph
            loop of `tfkd.lm.sampling`, greedy (the most likely token; top-k of 1) or sampled
            (temperature, top-k, top-p; then the signature also takes `seed` int32 [2]). Tokens
            after a generated end token are padding. The model reads time + max_new_tokens - 1
            positions, which its position embedding must cover.
The LiteRT file is converted from the SavedModel's `serve` signature (converting Keras 3 concrete
functions directly has produced NaN models) and runs with `ai_edge_litert`'s interpreter, its
signature runner `serve` taking any batch and time.

The report (`export_report.json` / `.md`, as for image and text students) compares every format
with the Keras student on the test split's target tokens (those of weight > 0): next-token
accuracy, argmax agreement and max / mean |logit difference| (`tfkd.exporting.parity.compare`),
and the SavedModel's `generate` against the same loop run on the Keras student, token for token.
"""

import dataclasses
import json
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tfkd.atomic import atomic_path, write_text
from tfkd.exporting import formats as export_formats
from tfkd.exporting.parity import compare, size_bytes, versions
from tfkd.lm.sampling import Sampling, sample_completions

GENERATE = "generate"
INPUT_NAMES = ("token_ids", "padding_mask")
LM_FORMATS = ("keras", "savedmodel", "tflite")
SAMPLINGS = ("greedy", "sample")
REPORT_NAME, MARKDOWN_NAME = "export_report.json", "export_report.md"


@dataclasses.dataclass(frozen=True)
class Generation:
    """What the `generate` signature does: `sampling` "greedy" or "sample" (with temperature,
    top_k (0: every token) and top_p (1: every token)); `end_token_id` None never stops."""

    max_new_tokens: int = 16
    sampling: str = "greedy"
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    end_token_id: int | None = None

    def check(self):
        count = self.max_new_tokens
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"--max_new_tokens must be a positive integer, got {count!r}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(
                f"generation sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}"
            )
        return self

    def sampler(self):
        """The `Sampling` of the `generate` loop: greedy is a top-k of 1 at temperature 1."""
        greedy = self.sampling == "greedy"
        return Sampling(
            max_new_tokens=self.max_new_tokens,
            temperature=1.0 if greedy else self.temperature,
            top_k=1 if greedy else self.top_k,
            top_p=1.0 if greedy else self.top_p,
            end_token_id=self.end_token_id,
        )


def generate_tokens(model, token_ids, padding_mask, generation, seed=(0, 0)):
    """The `generate` signature's computation, in-graph: prompts int [batch, time] ->
    (token_ids, padding_mask) int32 [batch, time + max_new_tokens]."""
    token_ids = tf.cast(token_ids, tf.int32)
    padding_mask = tf.cast(padding_mask, tf.int32)
    batch = tf.shape(token_ids)[0]
    new = generation.max_new_tokens
    buffer = tf.concat([token_ids * padding_mask, tf.zeros([batch, new], tf.int32)], axis=1)
    prompt_lengths = tf.maximum(tf.reduce_sum(padding_mask, axis=1), 1)
    buffer, generated = sample_completions(
        model, buffer, prompt_lengths, generation.sampler(), seed=tf.cast(seed, tf.int32)
    )
    positions = tf.range(tf.shape(buffer)[1])[tf.newaxis, :]
    keep = tf.cast((positions < prompt_lengths[:, tf.newaxis]) | (generated > 0), tf.int32)
    return buffer * keep, keep


def save_causal_lm_saved_model(model, path, generation):
    """SavedModel of `model` with the `serve` and `generate` signatures (module docstring)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    specs = [tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUT_NAMES]

    def serve(token_ids, padding_mask):
        inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
        return {export_formats.OUTPUT_NAME: model(inputs, training=False)}

    def outputs(token_ids, padding_mask, seed=(0, 0)):
        ids, mask = generate_tokens(model, token_ids, padding_mask, generation, seed)
        return {"token_ids": ids, "padding_mask": mask}

    archive.add_endpoint(export_formats.SERVE, serve, input_signature=specs)
    if generation.sampling == "greedy":
        archive.add_endpoint(GENERATE, outputs, input_signature=specs)
    else:
        archive.add_endpoint(
            GENERATE, outputs, input_signature=[*specs, tf.TensorSpec([2], tf.int32, name="seed")]
        )
    with atomic_path(path) as temporary:
        archive.write_out(temporary, verbose=False)


def keras_logits(model, x, batch_size=64):
    return np.concatenate(
        [
            np.asarray(
                model(
                    {name: x[name][start : start + batch_size] for name in INPUT_NAMES},
                    training=False,
                ),
                np.float32,
            )
            for start in range(0, len(x["token_ids"]), batch_size)
        ]
    )


def saved_model_logits(path, x, batch_size=64):
    serve = tf.saved_model.load(path).signatures[export_formats.SERVE]
    return np.concatenate(
        [
            serve(
                **{name: tf.constant(x[name][start : start + batch_size]) for name in INPUT_NAMES}
            )[export_formats.OUTPUT_NAME].numpy()
            for start in range(0, len(x["token_ids"]), batch_size)
        ]
    )


def tflite_logits(path, x, batch_size=64, num_threads=1):
    """The LiteRT `serve` signature on (token_ids, padding_mask) -> logits float32."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path, num_threads=num_threads).get_signature_runner(
        export_formats.SERVE
    )
    return np.concatenate(
        [
            runner(**{name: x[name][start : start + batch_size] for name in INPUT_NAMES})[
                export_formats.OUTPUT_NAME
            ]
            for start in range(0, len(x["token_ids"]), batch_size)
        ]
    ).astype(np.float32)


def report_prompts(split, generation):
    """(token_ids, padding_mask) of the test split's prompts for the `generate` check: each
    sequence's first quarter, cut so that prompt and generation fit the sequence length."""
    x, _, _ = split.shifted()
    width = x["token_ids"].shape[1] + 1 - generation.max_new_tokens
    if width < 1:
        return None
    lengths = np.clip(x["padding_mask"].sum(axis=1) // 4, 1, width)
    columns = np.arange(width)[None, :]
    mask = (columns < lengths[:, None]).astype("int32")
    return x["token_ids"][:, :width] * mask, mask


def build_report(student, output_dir, exports, test_split, generation, batch_size=64):
    """Parity of every exported format with the Keras student on the test split's target
    tokens, and of the SavedModel's `generate` with the same loop on the Keras student."""
    x, y, weight = test_split.shifted()
    if not (weight > 0).any():
        raise ValueError("the test split has no target tokens: nothing to measure the exports on")
    valid = weight > 0
    labels = y[valid]
    reference = keras_logits(student, x, batch_size)[valid]
    formats = {}
    for name, predict in (("savedmodel", saved_model_logits), ("tflite", tflite_logits)):
        if name in exports:
            path = os.path.join(output_dir, exports[name])
            formats[name] = {
                "file": exports[name],
                **compare(predict(path, x, batch_size)[valid], reference, labels),
                "size_bytes": size_bytes(path),
            }
    prompts = report_prompts(test_split, generation)
    if "savedmodel" in exports and generation.sampling == "greedy" and prompts is not None:
        signature = tf.saved_model.load(os.path.join(output_dir, exports["savedmodel"]))
        exported = signature.signatures[GENERATE](
            token_ids=tf.constant(prompts[0]), padding_mask=tf.constant(prompts[1])
        )
        keras_ids, keras_mask = generate_tokens(student, *prompts, generation)
        generated = keras_mask.numpy() > 0
        formats["savedmodel"]["generate"] = {
            "prompts": int(len(prompts[0])),
            "token_agreement": float(
                np.mean(exported["token_ids"].numpy()[generated] == keras_ids.numpy()[generated])
            ),
            "same_lengths": bool(
                np.array_equal(exported["padding_mask"].numpy(), keras_mask.numpy())
            ),
        }
    keras_entry = {"accuracy": compare(reference, reference, labels)["accuracy"]}
    if "keras" in exports:
        keras_entry.update(
            file=exports["keras"], size_bytes=size_bytes(os.path.join(output_dir, exports["keras"]))
        )
    return {
        "test_sequences": int(len(y)),
        "test_tokens": int(valid.sum()),
        "inputs": "token_ids and padding_mask, int32 [batch, time]; outputs next-token logits",
        "generation": dataclasses.asdict(generation),
        "keras": keras_entry,
        "formats": formats,
        "versions": versions(),
    }


def to_markdown(report):
    lines = [
        "# Export parity report (causal LM)",
        "",
        f"{report['test_tokens']} target tokens of {report['test_sequences']} test sequences; "
        "next-token accuracy, argmax agreement and logit differences against the Keras student.",
        "",
        "| format | size (bytes) | next-token accuracy | agreement | max / mean abs logit diff |",
        "|---|---:|---:|---:|---:|",
        f"| keras | {report['keras'].get('size_bytes', '')} | "
        f"{report['keras']['accuracy']:.4f} | 1.0000 | 0 |",
    ]
    for name, entry in report["formats"].items():
        lines.append(
            f"| {name} | {entry['size_bytes']} | {entry['accuracy']:.4f} | "
            f"{entry['agreement']:.4f} | {entry['max_abs_logit_diff']:.3g} / "
            f"{entry['mean_abs_logit_diff']:.2g} |"
        )
    check = report["formats"].get("savedmodel", {}).get("generate")
    if check:
        lines += [
            "",
            f"SavedModel `generate` ({report['generation']['sampling']}, "
            f"{report['generation']['max_new_tokens']} new tokens) on {check['prompts']} test "
            f"prompts: {check['token_agreement']:.4f} of the generated tokens equal the Keras "
            f"student's; same lengths: {'yes' if check['same_lengths'] else 'no'}.",
        ]
    versions_text = ", ".join(f"{key} {value}" for key, value in report["versions"].items())
    return "\n".join([*lines, "", f"Environment: {versions_text}.", ""])


def export_causal_lm(
    student,
    output_dir,
    formats=LM_FORMATS,
    test_split=None,
    generation=None,
    overwrite=False,
):
    """Writes a causal-LM student as .keras, SavedModel (`serve`, `generate`) and/or LiteRT.

    Args:
      student: a causal LM, {"token_ids", "padding_mask"} int32 [batch, time] -> logits
        [batch, time, V].
      output_dir: folder for the files (created if missing); file names as for other students.
      formats: names from LM_FORMATS (sequence or comma string).
      test_split: optional `TokenSplit`; with it export_report.json and export_report.md.
      generation: the `Generation` of the `generate` signature (default greedy, 16 tokens).
      overwrite: replace files already in `output_dir`.
    Returns:
      {format: file name relative to output_dir, "report": the JSON report's name}.
    """
    formats = export_formats.check_formats(formats)
    unsupported = [name for name in formats if name not in LM_FORMATS]
    if unsupported:
        raise ValueError(
            f"--export: {', '.join(unsupported)} not available for causal LMs; "
            f"use {', '.join(LM_FORMATS)}"
        )
    generation = (generation or Generation()).check()
    names = export_formats.FILE_NAMES
    for name in formats:
        if os.path.exists(os.path.join(output_dir, names[name])) and not overwrite:
            raise FileExistsError(
                f"{os.path.join(output_dir, names[name])} exists; pass overwrite=True "
                "(--overwrite) to replace it"
            )
    os.makedirs(output_dir, exist_ok=True)
    exports, scratch = {}, None
    source = os.path.join(output_dir, names["savedmodel"])
    if "savedmodel" not in formats and "tflite" in formats:
        scratch = tempfile.mkdtemp(prefix="tfkd-export-")
        source = os.path.join(scratch, names["savedmodel"])
    try:
        if "keras" in formats:
            export_formats.save_keras(student, os.path.join(output_dir, names["keras"]))
            exports["keras"] = names["keras"]
        if "savedmodel" in formats or "tflite" in formats:
            save_causal_lm_saved_model(student, source, generation)
        if "savedmodel" in formats:
            exports["savedmodel"] = names["savedmodel"]
        if "tflite" in formats:
            export_formats.convert_tflite(source, os.path.join(output_dir, names["tflite"]))
            exports["tflite"] = names["tflite"]
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if test_split is not None:
        report = build_report(student, output_dir, exports, test_split, generation)
        write_text(os.path.join(output_dir, REPORT_NAME), json.dumps(report, indent=2) + "\n")
        write_text(os.path.join(output_dir, MARKDOWN_NAME), to_markdown(report))
        exports["report"] = REPORT_NAME
    return exports


def export_run_student(student, folder, formats, data, max_new_tokens):
    """A language-model run's `--export`: greedy `generate` of `max_new_tokens` (16 when 0)
    stopping at the tokenizer's end token, the report on the data's test split."""
    generation = Generation(
        max_new_tokens=max_new_tokens or Generation.max_new_tokens,
        end_token_id=data.tokenizer.end_token_id,
    )
    return export_causal_lm(
        student, folder, formats, test_split=data.test, generation=generation, overwrite=True
    )
