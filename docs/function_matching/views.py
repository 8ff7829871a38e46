"""Draws what the student sees under function matching: clean images, their inception-cropped
and flipped views, and the mixup of those views (views.png next to this file).

    python docs/function_matching/views.py

$FASHION_MNIST is the folder of the Fashion-MNIST idx files (default: where Debian's
dataset-fashion-mnist package puts them).
"""

import os

import matplotlib
import tensorflow as tf

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from tfkd import augment, data  # noqa: E402
from tfkd.teacher import teaching  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

FASHION_MNIST = os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
bundle = data.load(
    data.DataConfig("idx:" + FASHION_MNIST, validation_fraction=0.0, train_limit=5000)
)
clean = tf.constant(data.to_float(bundle.train[0][:8]))
mode = teaching.Teaching("function_matching", crop_scale=(0.25, 1.0))
views = mode.view(clean, tf.constant([0, 3], tf.int64))
mixed = augment.mixup(views, tf.constant([1, 2], tf.int64), mode.mixup_alpha)[0]
figure, axes = plt.subplots(3, 8, figsize=(9, 3.6))
for row, (title, images) in enumerate(
    (("clean", clean), ("crop + flip", views), ("+ mixup", mixed))
):
    axes[row, 0].set_title(title, fontsize=8, loc="left")
    for column in range(8):
        axes[row, column].imshow(images[column, :, :, 0], cmap="gray", vmin=0, vmax=1)
        axes[row, column].axis("off")
figure.tight_layout()
figure.savefig(os.path.join(HERE, "views.png"), dpi=60)
