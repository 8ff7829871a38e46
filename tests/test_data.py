"""Tests of tfkd.data: synthetic generator, file readers, tfds loading, splits and pipelines."""

import dataclasses
import gzip
import os

import numpy as np
import pytest
import tensorflow as tf

from tfkd import data
from tfkd.data import DataConfig, DataUnavailableError, files, load, splits, synthetic, tfds_source

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


# ---------------------------------------------------------------- helpers writing tiny data sets


def write_idx(path, array):
    """Writes `array` (uint8) in idx format; gzip-compressed when `path` ends in .gz."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as handle:
        handle.write(header + array.tobytes())


def random_images(count, height, width, channels=None, seed=0):
    shape = (count, height, width) if channels is None else (count, height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def balanced_labels(count, num_classes):
    return np.arange(count, dtype=np.int64) % num_classes


def write_npz(directory, train, test):
    for name, (x, y) in (("train", train), ("test", test)):
        np.savez(directory / f"{name}.npz", x=x, y=y)


def write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(image).numpy())


# ---------------------------------------------------------------------------- synthetic data set


def test_synthetic_same_seed_same_data_and_different_seed_different_data():
    first = data.make_superclass_dataset(300, 16, 8, 2, 0.5, 3, seed=7)
    again = data.make_superclass_dataset(300, 16, 8, 2, 0.5, 3, seed=7)
    other = data.make_superclass_dataset(300, 16, 8, 2, 0.5, 3, seed=8)
    for array, repeated in zip(first, again):
        np.testing.assert_array_equal(array, repeated)
    assert not np.allclose(first[0], other[0])
    assert not np.allclose(first[2], other[2])


def test_synthetic_types_shapes_and_superclass_assignment():
    x, y, class_vectors, superclass_of = data.make_superclass_dataset(500, 12, 6, 3, 0.5, 2, seed=0)
    assert x.dtype == np.float32 and x.shape == (500, 12)
    assert y.dtype == np.int64 and y.shape == (500,)
    assert class_vectors.dtype == np.float32 and class_vectors.shape == (6, 12)
    np.testing.assert_allclose(np.linalg.norm(class_vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(superclass_of, [0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize("similarity", [0.0, 0.3, 0.9])
def test_class_vectors_have_the_requested_cosine_to_their_superclass_vector(similarity):
    rng = np.random.default_rng(3)
    class_vectors, superclass_vectors = synthetic.make_class_vectors(30, 12, 4, similarity, rng)
    np.testing.assert_allclose(superclass_vectors @ superclass_vectors.T, np.eye(4), atol=1e-12)
    cosines = class_vectors @ superclass_vectors.T  # Both sides are unit vectors.
    np.testing.assert_allclose(np.linalg.norm(class_vectors, axis=1), 1.0, atol=1e-12)
    expected = np.zeros((12, 4))
    expected[np.arange(12), np.arange(12) // 3] = similarity
    np.testing.assert_allclose(cosines, expected, atol=1e-12)


def test_difficulty_zero_is_linearly_separable_by_the_class_vectors():
    x, y, class_vectors, _ = data.make_superclass_dataset(5000, 100, 20, 4, 0.5, 0, seed=1)
    linear = np.argmax(x.astype(np.float64) @ class_vectors.astype(np.float64).T, axis=1)
    np.testing.assert_array_equal(y, linear)
    assert set(np.unique(y)) == set(range(20))


def test_positive_difficulty_makes_labels_non_linear_and_keeps_every_class():
    x, y, class_vectors, _ = data.make_superclass_dataset(5000, 100, 20, 4, 0.5, 4, seed=1)
    linear = np.argmax(x.astype(np.float64) @ class_vectors.astype(np.float64).T, axis=1)
    assert np.mean(y != linear) > 0.05
    assert set(np.unique(y)) == set(range(20))


def test_synthetic_rejects_classes_not_divisible_by_superclasses():
    with pytest.raises(ValueError, match="divisible"):
        data.make_superclass_dataset(10, 8, 10, 4, 0.5, 0, seed=0)


def test_load_synthetic_splits_80_20_then_carves_validation():
    config = DataConfig(
        "synthetic",
        synthetic_size=1000,
        synthetic_dim=10,
        synthetic_classes=6,
        synthetic_superclasses=2,
        validation_fraction=0.1,
    )
    bundle = load(config)
    assert len(bundle.train[1]) + len(bundle.validation[1]) == 800
    assert len(bundle.validation[1]) == 80
    assert len(bundle.test[1]) == 200
    assert bundle.input_shape == (10,) and bundle.num_classes == 6 and not bundle.is_image
    assert bundle.train[0].dtype == np.float32 and bundle.train[1].dtype == np.int64
    np.testing.assert_array_equal(bundle.superclass_of, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(load(config).train[0], bundle.train[0])


# ------------------------------------------------------------------------------- file sources


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_source_reads_images_as_nhwc_uint8(tmp_path, suffix):
    train_x, test_x = random_images(30, 5, 4, seed=1), random_images(10, 5, 4, seed=2)
    train_y, test_y = balanced_labels(30, 3), balanced_labels(10, 3)
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", train_x)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", train_y)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", test_x)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", test_y)
    bundle = load(DataConfig(f"idx:{tmp_path}", validation_fraction=0.0))
    assert bundle.input_shape == (5, 4, 1) and bundle.num_classes == 3 and bundle.is_image
    np.testing.assert_array_equal(bundle.train[0], train_x[..., None])
    np.testing.assert_array_equal(bundle.train[1], train_y)
    np.testing.assert_array_equal(bundle.test[0], test_x[..., None])
    assert bundle.validation[0].shape == (0, 5, 4, 1) and bundle.validation[1].shape == (0,)


def test_idx_parser_rejects_bad_magic_and_truncated_body():
    with pytest.raises(ValueError, match="magic"):
        files.parse_idx(b"\x01\x02\x08\x01\x00\x00\x00\x01\x00", source="broken")
    header = bytes([0, 0, 0x08, 1]) + np.array([5], ">u4").tobytes()
    with pytest.raises(ValueError, match="needs 5"):
        files.parse_idx(header + b"\x00\x01", source="short")


def test_idx_source_names_the_missing_file(tmp_path):
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        load(DataConfig(f"idx:{tmp_path}"))


def test_npz_source_round_trips_and_adds_a_channel_axis(tmp_path):
    train = (random_images(20, 6, 6, seed=3), balanced_labels(20, 4))
    test = (random_images(8, 6, 6, seed=4), balanced_labels(8, 4))
    write_npz(tmp_path, train, test)
    bundle = load(DataConfig(f"npz:{tmp_path}", validation_fraction=0.0))
    assert bundle.input_shape == (6, 6, 1) and bundle.num_classes == 4
    np.testing.assert_array_equal(bundle.train[0], train[0][..., None])
    np.testing.assert_array_equal(bundle.test[1], test[1])


def test_folder_source_uses_sorted_class_names_and_exact_pixels(tmp_path):
    images = random_images(6, 4, 5, 3, seed=5)
    for index, (split, class_name) in enumerate(
        [
            ("train", "dog"),
            ("train", "cat"),
            ("train", "cat"),
            ("train", "dog"),
            ("test", "cat"),
            ("test", "dog"),
        ]
    ):
        write_png(tmp_path / split / class_name / f"{index}.png", images[index])
    bundle = load(DataConfig(f"folder:{tmp_path}", validation_fraction=0.0))
    assert bundle.class_names == ["cat", "dog"] and bundle.num_classes == 2
    assert bundle.input_shape == (4, 5, 3) and bundle.train[0].dtype == np.uint8
    # Files are read class by class in name order: cat/1, cat/2, dog/0, dog/3.
    np.testing.assert_array_equal(bundle.train[0], images[[1, 2, 0, 3]])
    np.testing.assert_array_equal(bundle.train[1], [0, 0, 1, 1])
    np.testing.assert_array_equal(bundle.test[1], [0, 1])


def test_folder_source_rejects_images_of_different_sizes(tmp_path):
    write_png(tmp_path / "train" / "a" / "0.png", random_images(1, 4, 4, 3)[0])
    write_png(tmp_path / "train" / "a" / "1.png", random_images(1, 5, 4, 3)[0])
    write_png(tmp_path / "test" / "a" / "0.png", random_images(1, 4, 4, 3)[0])
    with pytest.raises(ValueError, match="share one size"):
        load(DataConfig(f"folder:{tmp_path}"))


def test_real_fashion_mnist_idx_folder():
    if not os.path.isdir(FASHION_MNIST_DIR):
        pytest.skip(f"{FASHION_MNIST_DIR} is absent")
    bundle = load(DataConfig(f"idx:{FASHION_MNIST_DIR}", train_limit=500, test_limit=100))
    assert bundle.input_shape == (28, 28, 1) and bundle.num_classes == 10
    assert len(bundle.validation[1]) == 6000
    np.testing.assert_array_equal(np.bincount(bundle.train[1]), np.full(10, 50))
    np.testing.assert_array_equal(np.bincount(bundle.test[1]), np.full(10, 10))


# ------------------------------------------------------------------------ tensorflow-datasets


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setattr(tfds_source, "internet_reachable", lambda *args, **kwargs: True)


def test_tfds_source_through_mock_data(online):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=50):
        bundle = load(DataConfig("mnist", validation_fraction=0.2))
    assert bundle.num_classes == 10 and bundle.input_shape == (28, 28, 1)
    assert bundle.train[0].dtype == np.uint8 and bundle.train[1].dtype == np.int64
    assert len(bundle.train[1]) == 40 and len(bundle.validation[1]) == 10
    assert len(bundle.test[1]) == 50
    assert bundle.class_names == [str(digit) for digit in range(10)]
    assert bundle.superclass_of is None


def test_tfds_cifar100_gets_superclasses_from_coarse_labels(online):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=1000):
        bundle = load(DataConfig("cifar100", validation_fraction=0.0, test_limit=10))
    assert bundle.num_classes == 100 and bundle.input_shape == (32, 32, 3)
    assert bundle.superclass_of.shape == (100,)
    assert bundle.superclass_of.min() >= 0 and bundle.superclass_of.max() < 20


def test_coarse_map_takes_each_fine_class_majority_and_needs_every_class():
    fine = np.array([0, 0, 1, 1, 1, 2])
    coarse = np.array([1, 1, 0, 0, 1, 1])
    np.testing.assert_array_equal(tfds_source.coarse_map(fine, coarse, 3), [1, 0, 1])
    assert tfds_source.coarse_map(fine, coarse, 4) is None


def test_tfds_offline_fails_fast_with_a_one_line_message(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "internet_reachable", lambda *args, **kwargs: False)
    with pytest.raises(DataUnavailableError, match="cifar10") as raised:
        load(DataConfig("cifar10", data_dir=str(tmp_path)))
    message = str(raised.value)
    assert "\n" not in message and "cifar10" in message and str(tmp_path) in message
    for form in ("idx:DIR", "npz:DIR", "folder:DIR", "synthetic"):
        assert form in message
    assert isinstance(raised.value, RuntimeError)


@pytest.mark.timeout(30)  # the probe gives up after its own timeout instead of hanging
def test_internet_probe_returns_false_for_a_closed_port():
    assert not tfds_source.internet_reachable("127.0.0.1", 9, timeout=1.0)


@pytest.mark.parametrize("dataset", ["no_such_dataset_name", "xml:/tmp"])
def test_unknown_dataset_names_the_flag_and_the_accepted_forms(dataset):
    with pytest.raises(ValueError, match="--dataset") as raised:
        load(DataConfig(dataset))
    message = str(raised.value)
    assert "--dataset" in message and dataset in message
    for form in ("idx:DIR", "npz:DIR", "folder:DIR", "synthetic"):
        assert form in message


# --------------------------------------------------------------------- splits, limits, labels

IMBALANCED = np.repeat(np.arange(4), [100, 50, 30, 20])


def test_stratified_choice_keeps_class_shares_and_partitions():
    chosen, rest = splits.stratified_choice(IMBALANCED, 40, seed=0)
    np.testing.assert_array_equal(np.bincount(IMBALANCED[chosen]), [20, 10, 6, 4])
    np.testing.assert_array_equal(np.sort(np.concatenate([chosen, rest])), np.arange(200))
    again, _ = splits.stratified_choice(IMBALANCED, 40, seed=0)
    other, _ = splits.stratified_choice(IMBALANCED, 40, seed=1)
    np.testing.assert_array_equal(chosen, again)
    assert not np.array_equal(chosen, other)


def test_stratified_choice_hits_the_total_when_shares_are_fractional():
    labels = np.repeat(np.arange(3), [7, 7, 7])
    chosen, _ = splits.stratified_choice(labels, 10, seed=0)
    counts = np.bincount(labels[chosen], minlength=3)
    assert counts.sum() == 10 and counts.max() - counts.min() <= 1


def test_validation_and_limits_through_load(tmp_path):
    x = random_images(200, 2, 2, 1)
    write_npz(tmp_path, (x, IMBALANCED), (x, IMBALANCED))
    bundle = load(
        DataConfig(f"npz:{tmp_path}", validation_fraction=0.2, train_limit=80, test_limit=100)
    )
    np.testing.assert_array_equal(np.bincount(bundle.validation[1]), [20, 10, 6, 4])
    np.testing.assert_array_equal(np.bincount(bundle.train[1]), [40, 20, 12, 8])
    np.testing.assert_array_equal(np.bincount(bundle.test[1]), [50, 25, 15, 10])
    whole = load(DataConfig(f"npz:{tmp_path}", validation_fraction=0.2, train_limit=0))
    assert len(whole.train[1]) == 160 and len(whole.validation[1]) == 40


def test_label_outside_range_names_the_data_set_and_value(tmp_path):
    write_npz(
        tmp_path,
        (random_images(4, 2, 2), np.array([0, 1, -3, 1])),
        (random_images(2, 2, 2), np.array([0, 1])),
    )
    with pytest.raises(ValueError, match=r"npz:.*label -3"):
        load(DataConfig(f"npz:{tmp_path}"))
    with pytest.raises(ValueError, match="'mnist': label 10 is outside"):
        splits.check_labels(np.array([3, 10]), 10, "mnist")


def test_data_config_is_frozen_and_checks_its_fields():
    config = DataConfig("synthetic")
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field .seed."):
        config.seed = 3
    with pytest.raises(ValueError, match="validation_fraction"):
        DataConfig("synthetic", validation_fraction=1.0)
    with pytest.raises(ValueError, match="train_limit"):
        DataConfig("synthetic", train_limit=-1)


# ------------------------------------------------------------------ input convention, pipeline


def test_to_float_and_stats_follow_the_image_convention():
    x = random_images(10, 3, 3, 2, seed=6)
    np.testing.assert_allclose(data.to_float(x), x.astype(np.float32) / 255.0)
    assert data.to_float(np.array([2.5], np.float64)).dtype == np.float32
    bundle = data.DataBundle(
        "toy",
        (x, np.zeros(10, np.int64)),
        (x[:0], np.zeros(0, np.int64)),
        (x, np.zeros(10, np.int64)),
        1,
        (3, 3, 2),
    )
    mean, variance = bundle.stats(chunk_size=3)
    pixels = (x.astype(np.float64) / 255.0).reshape(-1, 2)
    assert mean.dtype == np.float32 and mean.shape == (2,)
    np.testing.assert_allclose(mean, pixels.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(variance, pixels.var(axis=0), rtol=1e-5)


def test_as_dataset_converts_images_and_labels_in_order():
    x, y = random_images(10, 4, 4, 1, seed=7), balanced_labels(10, 3)
    batches = list(data.as_dataset(x, y, batch_size=4))
    assert [int(batch_x.shape[0]) for batch_x, _ in batches] == [4, 4, 2]
    batch_x, batch_y = batches[0]
    assert batch_x.dtype == tf.float32 and batch_y.dtype == tf.int32
    np.testing.assert_allclose(batch_x.numpy(), x[:4] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(batch_y.numpy(), y[:4])
    assert len(list(data.as_dataset(x, y, batch_size=4, drop_remainder=True))) == 2


def test_as_dataset_shuffle_is_a_seeded_permutation():
    x = np.arange(20, dtype=np.float32)[:, None]
    y = np.arange(20)
    labels = np.concatenate([b.numpy() for _, b in data.as_dataset(x, y, 8, shuffle=True, seed=3)])
    again = np.concatenate([b.numpy() for _, b in data.as_dataset(x, y, 8, shuffle=True, seed=3)])
    assert sorted(labels) == list(range(20)) and list(labels) != list(range(20))
    np.testing.assert_array_equal(labels, again)


@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 28, 1)])
def test_augmentation_keeps_shape_and_shifts_by_at_most_four_pixels(shape):
    x = np.full((6,) + shape, 255, np.uint8)
    dataset = data.as_dataset(x, np.zeros(6), batch_size=6, augment=True, seed=1)
    batch_x, _ = next(iter(dataset))
    assert tuple(batch_x.shape) == (6,) + shape
    values = batch_x.numpy()
    assert set(np.unique(values)) <= {0.0, 1.0}
    # A white image shifted by at most 4 pixels each way keeps a (H-4) x (W-4) white core.
    height, width, channels = shape
    assert np.all(values.sum(axis=(1, 2, 3)) >= (height - 4) * (width - 4) * channels)
    assert np.any(values == 0.0)


def test_augmentation_is_seeded_and_changes_between_epochs():
    x = random_images(4, 32, 32, 3, seed=8)
    dataset = data.as_dataset(x, np.zeros(4), batch_size=4, augment=True, seed=5)
    first_epoch = next(iter(dataset))[0].numpy()
    second_epoch = next(iter(dataset))[0].numpy()
    fresh = next(iter(data.as_dataset(x, np.zeros(4), batch_size=4, augment=True, seed=5)))
    np.testing.assert_array_equal(first_epoch, fresh[0].numpy())
    assert not np.array_equal(first_epoch, second_epoch)


def test_augmentation_leaves_vectors_unchanged():
    x = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    batch_x, _ = next(iter(data.as_dataset(x, np.zeros(5), batch_size=5, augment=True)))
    np.testing.assert_array_equal(batch_x.numpy(), x)
