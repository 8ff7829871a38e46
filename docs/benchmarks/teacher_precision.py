"""Measures how far a folded / bfloat16 teacher's soft targets move on a trained resnet20.

Trains resnet20 on Fashion-MNIST (Debian's dataset-fashion-mnist, offline) for a short
schedule, then reports `tfkd.teacher.serving.soft_target_difference` (max |softmax(z / T) -
softmax(z' / T)| over every test example and class) and the largest relative logit error for the
folded float32 and the folded bfloat16 teacher, at T = 1 and T = 4. Writes teacher_precision.json.

    .venv/bin/python docs/benchmarks/teacher_precision.py [--epochs=2] [--train_limit=20000]
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfkd  # noqa: E402
from tfkd.teacher import serving  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="idx:/usr/share/datasets/fashion-mnist")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train_limit", type=int, default=20000)
    parser.add_argument("--test_limit", type=int, default=5000)
    parser.add_argument(
        "--output", default=os.path.join(os.path.dirname(__file__), "teacher_precision.json")
    )
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    bundle = tfkd.data.load(
        tfkd.data.DataConfig(args.dataset, train_limit=args.train_limit, test_limit=args.test_limit)
    )
    mean, variance = bundle.stats()
    model = tfkd.models.build(
        args.model, bundle.input_shape, bundle.num_classes, mean, variance, seed=0
    )
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(
        tfkd.data.as_dataset(*bundle.train, batch_size=128, shuffle=True),
        epochs=args.epochs,
        verbose=2,
    )
    x_test = tfkd.data.to_float(bundle.test[0])
    accuracy = float(model.evaluate(x_test, bundle.test[1], verbose=0)[1])
    reference = model.predict(x_test, batch_size=256, verbose=0)
    report = {
        "model": args.model,
        "dataset": args.dataset,
        "epochs": args.epochs,
        "train_examples": int(len(bundle.train[1])),
        "test_examples": int(len(x_test)),
        "test_accuracy": accuracy,
        "train_seconds": time.perf_counter() - start,
        "measure": "max over test examples and classes of |softmax(z_ref / T) - "
        "softmax(z_fast / T)|; logit error relative to max |z_ref|",
        "precisions": {},
    }
    for precision in serving.PRECISIONS:
        fast = serving.fast_teacher(model, precision)
        logits = fast.predict(x_test, batch_size=256, verbose=0)
        report["precisions"][precision] = {
            "relative_logit_error": float(
                np.abs(logits - reference).max() / np.abs(reference).max()
            ),
            "agreement": float(np.mean(logits.argmax(-1) == reference.argmax(-1))),
            "soft_target_difference": {
                f"T={t:g}": serving.soft_target_difference(reference, logits, t) for t in (1.0, 4.0)
            },
        }
    with open(args.output, "w") as handle:
        json.dump(report, handle, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
