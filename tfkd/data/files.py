"""Readers for data sets stored as local files: idx (MNIST format), npz and class folders."""

import gzip
import os

import numpy as np

from tfkd.data.bundle import SourceData

# idx type byte -> big-endian NumPy dtype ("THE IDX FILE FORMAT", yann.lecun.com/exdb/mnist).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# Below this many files decoding takes a few seconds at most, not worth a progress bar.
_PROGRESS_MIN_FILES = 2000


def _check_directory(directory, form):
    if not os.path.isdir(directory):
        raise ValueError(f"{form}: directory {directory!r} does not exist")


def parse_idx(data, source="idx data"):
    """Decodes the bytes of one idx file into an array of its stored shape and type.

    Raises:
      ValueError naming `source` when the magic number or the size is wrong.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{source}: not an idx file (bad magic number)")
    rank = data[3]
    header_size = 4 + 4 * rank
    if len(data) < header_size:
        raise ValueError(f"{source}: idx header is truncated")
    shape = tuple(int(size) for size in np.frombuffer(data, ">u4", count=rank, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header_size != expected:
        raise ValueError(
            f"{source}: idx body has {len(data) - header_size} bytes, "
            f"shape {shape} needs {expected}"
        )
    array = np.frombuffer(data, dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _find_idx_file(directory, stem):
    # Both the hyphenated (Fashion-MNIST) and the dotted (original MNIST) names are in use.
    names = [stem, stem.replace("-idx", ".idx")]
    for name in names:
        for candidate in (name, name + ".gz"):
            path = os.path.join(directory, candidate)
            if os.path.isfile(path):
                return path
    raise ValueError(f"idx:{directory}: no {stem} or {stem}.gz in {directory!r}")


def read_idx_file(path):
    """Reads one idx file, gzip-compressed when its name ends in .gz."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        return parse_idx(handle.read(), source=path)


def _idx_split(directory, prefix):
    images_path = _find_idx_file(directory, f"{prefix}-images-idx3-ubyte")
    labels_path = _find_idx_file(directory, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx_file(images_path), read_idx_file(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise ValueError(
            f"idx:{directory}: expected images [N, H, W] and labels [N], got "
            f"{images.shape} and {labels.shape}"
        )
    if len(images) != len(labels):
        raise ValueError(f"idx:{directory}: {len(images)} {prefix} images but {len(labels)} labels")
    if images.dtype != np.uint8:
        images = images.astype(np.float32)
    return images[..., None], labels


def read_idx(directory):
    """Reads train-/t10k-{images-idx3,labels-idx1}-ubyte[.gz] into NHWC images with C=1."""
    _check_directory(directory, "idx:DIR")
    return SourceData(train=_idx_split(directory, "train"), test=_idx_split(directory, "t10k"))


def _npz_split(directory, filename):
    path = os.path.join(directory, filename)
    if not os.path.isfile(path):
        raise ValueError(f"npz:{directory}: no {filename} in {directory!r}")
    with np.load(path, allow_pickle=False) as arrays:
        missing = {"x", "y"} - set(arrays.files)
        if missing:
            raise ValueError(f"{path}: missing arrays {sorted(missing)}; expected 'x' and 'y'")
        x, y = arrays["x"], arrays["y"]
    if len(x) != len(y):
        raise ValueError(f"{path}: x has {len(x)} examples but y has {len(y)}")
    if x.dtype == np.uint8:
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise ValueError(
                f"{path}: uint8 x must be images [N, H, W, C] or [N, H, W], got shape {x.shape}"
            )
    elif np.issubdtype(x.dtype, np.floating) and x.ndim >= 2:
        x = x.astype(np.float32)
    else:
        raise ValueError(
            f"{path}: x must be uint8 images or floating-point features, "
            f"got {x.dtype} with shape {x.shape}"
        )
    return x, y


def read_npz(directory):
    """Reads train.npz and test.npz, each holding `x` (uint8 NHWC, or float features) and `y`."""
    _check_directory(directory, "npz:DIR")
    return SourceData(
        train=_npz_split(directory, "train.npz"), test=_npz_split(directory, "test.npz")
    )


def _list_class_folders(split_directory):
    return sorted(
        name
        for name in os.listdir(split_directory)
        if os.path.isdir(os.path.join(split_directory, name))
    )


def _list_images(split_directory, class_names):
    """Returns [(path, class index)] for every image file, in class then file-name order."""
    files = []
    for index, class_name in enumerate(class_names):
        class_directory = os.path.join(split_directory, class_name)
        if not os.path.isdir(class_directory):
            continue
        for name in sorted(os.listdir(class_directory)):
            if name.lower().endswith(_IMAGE_EXTENSIONS):
                files.append((os.path.join(class_directory, name), index))
    return files


def _decode_images(files, description):
    import tensorflow as tf  # Imported here so the other sources do not pay for it.

    progress = None
    if len(files) >= _PROGRESS_MIN_FILES:
        import keras

        print(f"Decoding {len(files)} {description} images")
        progress = keras.utils.Progbar(len(files))
    images = []
    for position, (path, _) in enumerate(files):
        image = tf.io.decode_image(tf.io.read_file(path), expand_animations=False).numpy()
        if images and image.shape != images[0].shape:
            raise ValueError(
                f"folder: all images must share one size; {files[0][0]} is "
                f"{images[0].shape} but {path} is {image.shape}"
            )
        images.append(image)
        if progress is not None and (position + 1) % 500 == 0:
            progress.update(position + 1)
    if progress is not None:
        progress.update(len(files))
    return images


def read_folder(directory):
    """Reads DIR/train/<class>/*.png|jpg and DIR/test/<class>/... into uint8 NHWC arrays.

    Class indices follow the sorted train folder names; every test folder must also exist
    under train.
    """
    _check_directory(directory, "folder:DIR")
    split_directories = {split: os.path.join(directory, split) for split in ("train", "test")}
    for split, split_directory in split_directories.items():
        if not os.path.isdir(split_directory):
            raise ValueError(f"folder:{directory}: missing {split}/ subdirectory")
    class_names = _list_class_folders(split_directories["train"])
    if not class_names:
        raise ValueError(f"folder:{directory}: train/ has no class subdirectories")
    unknown = sorted(set(_list_class_folders(split_directories["test"])) - set(class_names))
    if unknown:
        raise ValueError(f"folder:{directory}: test classes {unknown} do not exist in train/")
    splits = {}
    for split, split_directory in split_directories.items():
        files = _list_images(split_directory, class_names)
        if not files:
            raise ValueError(
                f"folder:{directory}: no {'/'.join(_IMAGE_EXTENSIONS)} images under {split}/"
            )
        images = _decode_images(files, split)
        splits[split] = (np.stack(images), np.array([index for _, index in files], np.int64))
    train_shape, test_shape = splits["train"][0].shape[1:], splits["test"][0].shape[1:]
    if train_shape != test_shape:
        raise ValueError(
            f"folder: all images must share one size; train images are "
            f"{train_shape} but test images are {test_shape}"
        )
    return SourceData(
        train=splits["train"],
        test=splits["test"],
        num_classes=len(class_names),
        class_names=class_names,
    )
