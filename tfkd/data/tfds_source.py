"""Loads a tensorflow-datasets data set into NumPy arrays, never hanging when offline."""

import socket
import threading

import numpy as np

from tfkd.data.bundle import DataUnavailableError, SourceData

LOCAL_ALTERNATIVES = "idx:DIR, npz:DIR, folder:DIR or synthetic"
_PROBE_HOST = "storage.googleapis.com"
# Chunk size for pulling a split out of tf.data; any size works, this one keeps memory spikes small.
_CHUNK = 8192


def internet_reachable(host=_PROBE_HOST, port=443, timeout=3.0):
    """True when a TCP connection to host:port opens within `timeout` seconds.

    The connect runs in a daemon thread because a DNS lookup ignores socket timeouts and can
    stall for much longer on a machine without a network.
    """
    reachable = []

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                reachable.append(True)
        except OSError:
            reachable.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return bool(reachable and reachable[0])


def _base_name(name):
    # "cifar10:3.0.2" and "mnist/config" name the same registered builder as "cifar10"/"mnist".
    return name.split(":")[0].split("/")[0]


def is_tfds_name(name):
    """True when `name` (optionally with /config or :version) is a tensorflow-datasets builder."""
    import tensorflow_datasets as tfds

    return _base_name(name) in tfds.list_builders(with_community_datasets=False)


def _prepare(builder, name):
    if builder.is_prepared():
        return
    where = builder.data_dir
    if not internet_reachable():
        raise DataUnavailableError(
            f"data set {name!r} is not prepared in {where} and {_PROBE_HOST} is unreachable; "
            f"prepare it there on a machine with internet or use a local form: "
            f"{LOCAL_ALTERNATIVES}"
        )
    try:
        builder.download_and_prepare()
    except Exception as error:  # tfds raises many types (manual download, checksum, network).
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DataUnavailableError(
            f"data set {name!r} could not be prepared in {where}: {first_line}; "
            f"use a local form instead: {LOCAL_ALTERNATIVES}"
        ) from error


def _split_arrays(builder, split, keys):
    """Returns {key: array [N, ...]} for one split.

    Pulled out in chunks rather than with as_dataset(batch_size=-1): that form batches by the
    recorded split size, which is unknown (so sys.maxsize) for data sets mocked in tests.
    """
    import tensorflow_datasets as tfds

    dataset = builder.as_dataset(split=split, shuffle_files=False)
    dataset = dataset.map(lambda example: {key: example[key] for key in keys}).batch(_CHUNK)
    chunks = list(tfds.as_numpy(dataset))
    features = builder.info.features
    result = {}
    for key in keys:
        if chunks:
            result[key] = np.concatenate([chunk[key] for chunk in chunks])
        else:
            result[key] = np.zeros(
                (0,) + tuple(features[key].shape), np.dtype(features[key].np_dtype)
            )
    return result


def coarse_map(fine_labels, coarse_labels, num_classes):
    """Maps each fine class to its most frequent coarse label in the given examples.

    Returns:
      int64 [num_classes], or None when some fine class has no example to decide from.
    """
    mapping = np.full(num_classes, -1, np.int64)
    for fine in range(num_classes):
        coarse = coarse_labels[fine_labels == fine]
        if coarse.size == 0:
            return None
        mapping[fine] = np.bincount(coarse).argmax()
    return mapping


def read_tfds(name, data_dir=None):
    """Loads the train and test splits of a tensorflow-datasets data set.

    Raises:
      DataUnavailableError: not prepared locally and cannot be downloaded now.
      ValueError: the data set has variable-size inputs or lacks a train or test split.
    """
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    _prepare(builder, name)
    info = builder.info
    input_key, label_key = (info.supervised_keys or ("image", "label"))[:2]
    features = info.features
    input_shape = tuple(features[input_key].shape)
    if any(size is None for size in input_shape):
        raise ValueError(
            f"data set {name!r} has variable-size inputs {input_shape}; "
            f"resize it offline and load it as folder:DIR or npz:DIR"
        )
    available = list(info.splits.keys())
    # Mocked data sets record no splits, so only a non-empty listing can be trusted.
    if available and not {"train", "test"} <= set(available):
        raise ValueError(f"data set {name!r} needs 'train' and 'test' splits, has {available}")
    keys = [input_key, label_key]
    has_coarse = "coarse_label" in features
    if has_coarse:
        keys.append("coarse_label")
    num_classes = int(features[label_key].num_classes)
    splits = {}
    superclass_of = None
    for split in ("train", "test"):
        arrays = _split_arrays(builder, split, keys)
        x = arrays[input_key]
        if x.dtype != np.uint8:
            x = x.astype(np.float32)
        splits[split] = (x, arrays[label_key])
        if split == "train" and has_coarse:
            superclass_of = coarse_map(arrays[label_key], arrays["coarse_label"], num_classes)
    return SourceData(
        train=splits["train"],
        test=splits["test"],
        num_classes=num_classes,
        superclass_of=superclass_of,
        class_names=list(features[label_key].names),
    )
