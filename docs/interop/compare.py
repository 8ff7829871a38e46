"""What keras.distillation computes next to tfkd, on the same logits and the same batch.

  .venv/bin/python docs/interop/compare.py     # writes docs/interop/compare.json

1. The value of `LogitsDistillation(temperature=T)` (its default `loss="kl_divergence"`), of
   `LogitsDistillation(temperature=T, loss=keras.losses.KLDivergence())`, of
   `tfkd.interop.TargetDistillation(temperature=T)` and Hinton's T^2 KL in NumPy (float64).
2. Whether `keras.distillation.Distiller` scales its loss for replicas: one SGD step on the same
   global batch with MirroredStrategy over two logical CPUs against one device; the ratio of the
   weight updates is 1 when the step is the same and 2 when the gradient is counted per replica.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)

import keras  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import tfkd  # noqa: E402
from tfkd.interop import TargetDistillation  # noqa: E402

OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "compare.json")
TEMPERATURES = (1.0, 4.0)
BATCH, CLASSES, INPUTS = 16, 10, 6


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _hinton(teacher_logits, student_logits, temperature):
    p_t, p_s = _softmax(teacher_logits / temperature), _softmax(student_logits / temperature)
    return float(np.mean(temperature**2 * np.sum(p_t * (np.log(p_t) - np.log(p_s)), -1)))


def _keras_default_by_hand(teacher_logits, student_logits, temperature):
    """keras.losses.kl_divergence applied to the scaled logits themselves (no softmax, no T^2):
    both clipped to [1e-7, 1], sum y_true * log(y_true / y_pred), batch mean."""
    y_true = np.clip(teacher_logits / temperature, 1e-7, 1.0)
    y_pred = np.clip(student_logits / temperature, 1e-7, 1.0)
    return float(np.mean(np.sum(y_true * np.log(y_true / y_pred), -1)))


def compare_logits():
    rng = np.random.default_rng(0)
    teacher_logits, student_logits = rng.normal(size=(2, BATCH, CLASSES)) * 3.0
    rows = []
    for temperature in TEMPERATURES:
        zt, zs = teacher_logits.astype("float32"), student_logits.astype("float32")
        rows.append(
            {
                "temperature": temperature,
                "keras_LogitsDistillation_default": float(
                    keras.distillation.LogitsDistillation(temperature).compute_loss(zt, zs)
                ),
                "keras_default_by_hand_kl_of_clipped_logits": _keras_default_by_hand(
                    teacher_logits, student_logits, temperature
                ),
                "keras_LogitsDistillation_KLDivergence_instance": float(
                    keras.distillation.LogitsDistillation(
                        temperature, loss=keras.losses.KLDivergence()
                    ).compute_loss(zt, zs)
                ),
                "tfkd_TargetDistillation": float(
                    TargetDistillation(temperature=temperature).compute_loss(zt, zs)
                ),
                "hinton_T2_KL_numpy_float64": _hinton(teacher_logits, student_logits, temperature),
            }
        )
    return {
        "batch": BATCH,
        "classes": CLASSES,
        "logits": "standard normal x 3, seed 0 (teacher and student independent)",
        "rows": rows,
    }


def _model(seed, softmax=False):
    init = keras.initializers.GlorotUniform(seed=seed)
    layers = [
        keras.Input((INPUTS,)),
        keras.layers.Dense(16, activation="relu", kernel_initializer=init),
        keras.layers.Dense(CLASSES, kernel_initializer=init),
    ]
    if softmax:
        layers.append(keras.layers.Softmax())
    return keras.Sequential(layers)


CASES = {
    "keras: LogitsDistillation(KLDivergence()) only (student_loss_weight=0)": dict(
        kind="keras", distillation="logits", student_loss_weight=0.0
    ),
    "keras: LogitsDistillation() default only (student_loss_weight=0)": dict(
        kind="keras", distillation="logits_default", student_loss_weight=0.0
    ),
    "keras: student loss 'sparse_categorical_crossentropy' string only (weight=1)": dict(
        kind="keras", distillation="logits", student_loss_weight=1.0, loss="string"
    ),
    "keras: student loss SparseCategoricalCrossentropy() instance only (weight=1)": dict(
        kind="keras", distillation="logits", student_loss_weight=1.0, loss="instance"
    ),
    "keras: tfkd TargetDistillation only (student_loss_weight=0)": dict(
        kind="keras", distillation="target", student_loss_weight=0.0
    ),
    "tfkd.Distiller(alpha=0.9)": dict(kind="tfkd"),
}


def _one_step(strategy, case, x, y, weights):
    with strategy.scope():
        softmax = case.get("loss") == "string"  # the string loss expects probabilities
        student, teacher = _model(1, softmax), _model(2, softmax)
        student.set_weights(weights["student"])
        teacher.set_weights(weights["teacher"])
        if case["kind"] == "tfkd":
            distiller = tfkd.Distiller(student, teacher, temperature=4.0, alpha=0.9)
            distiller.compile(optimizer=keras.optimizers.SGD(0.1))
        else:
            distillation = {
                "logits": keras.distillation.LogitsDistillation(
                    4.0, loss=keras.losses.KLDivergence()
                ),
                "logits_default": keras.distillation.LogitsDistillation(4.0),
                "target": TargetDistillation(temperature=4.0),
            }[case["distillation"]]
            student_loss = (
                "sparse_categorical_crossentropy"
                if case.get("loss") == "string"
                else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            )
            distiller = keras.distillation.Distiller(
                teacher, student, distillation, student_loss_weight=case["student_loss_weight"]
            )
            distiller.compile(optimizer=keras.optimizers.SGD(0.1), loss=student_loss)
        history = distiller.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    delta = np.concatenate(
        [
            (after - before).ravel()
            for after, before in zip(student.get_weights(), weights["student"])
        ]
    )
    return delta, {name: float(values[0]) for name, values in history.history.items()}


def compare_replicas():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(BATCH, INPUTS)).astype("float32")
    y = rng.integers(0, CLASSES, BATCH).astype("int32")
    devices = [device.name for device in tf.config.list_logical_devices("CPU")][:2]
    one_device = tf.distribute.OneDeviceStrategy(devices[0])
    mirrored = tf.distribute.MirroredStrategy(devices)
    results = {}
    for name, case in CASES.items():
        softmax = case.get("loss") == "string"
        weights = {
            "student": _model(1, softmax).get_weights(),
            "teacher": _model(2, softmax).get_weights(),
        }
        delta_one, logs_one = _one_step(one_device, case, x, y, weights)
        delta_two, logs_two = _one_step(mirrored, case, x, y, weights)
        ratio = float(delta_two @ delta_one / (delta_one @ delta_one))
        results[name] = {
            "update_ratio_2_replicas_over_1": ratio,
            "max_abs_update_difference": float(np.abs(delta_two - delta_one).max()),
            "logs_1_replica": logs_one,
            "logs_2_replicas": logs_two,
        }
    return {
        "global_batch": BATCH,
        "replicas": 2,
        "optimizer": "SGD(0.1), one step",
        "temperature": 4.0,
        "cases": results,
    }


def main():
    report = {
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "logits": compare_logits(),
        "replicas": compare_replicas(),
    }
    with open(OUTPUT, "w") as handle:
        json.dump(report, handle, indent=2)
        handle.write("\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
