"""Super-class maps: the super-class of each class, from a JSON file or the data set's own
(CIFAR-100 coarse labels, the synthetic data set's groups); KD-rel's targets read them."""

import json
import os

import numpy as np


def read_superclass_map(path, num_classes, class_names=None):
    """Reads a super-class map from JSON: either a list with the super-class of each class, or an
    object {super-class name: [class index or class name, ...]} covering every class once.

    Returns:
      int64 [num_classes].
    """
    flag = "--superclass_map"
    if not os.path.isfile(path):
        raise ValueError(f"{flag}: {path} does not exist")
    try:
        with open(path) as handle:
            content = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{flag}: {path} is not valid JSON ({error})") from None
    if isinstance(content, dict):
        lookup = {name: index for index, name in enumerate(class_names or [])}
        mapping = np.full(num_classes, -1, np.int64)
        for group, (_, members) in enumerate(content.items()):
            for member in members:
                index = lookup.get(member, member) if isinstance(member, str) else member
                if not isinstance(index, int) or not 0 <= index < num_classes:
                    raise ValueError(
                        f"{flag}: {path}: {member!r} is not a class index in "
                        f"[0, {num_classes}) or a class name of the data set"
                    )
                if mapping[index] >= 0:
                    raise ValueError(f"{flag}: {path}: class {member!r} is listed twice")
                mapping[index] = group
        missing = np.flatnonzero(mapping < 0)
        if missing.size:
            raise ValueError(f"{flag}: {path} gives no super-class to classes {missing.tolist()}")
        return mapping
    if (
        isinstance(content, list)
        and len(content) == num_classes
        and all(isinstance(value, int) for value in content)
    ):
        return np.asarray(content, np.int64)
    raise ValueError(
        f"{flag}: {path} must hold a list of {num_classes} integers (the "
        "super-class of each class) or an object {super-class: [classes]}"
    )


def superclass_map(bundle, path, num_classes):
    """The super-class of each class from `path` (JSON) if given, else the data set's own."""
    if path:
        return read_superclass_map(path, num_classes, getattr(bundle, "class_names", None))
    superclass_of = getattr(bundle, "superclass_of", None)
    if superclass_of is None:
        name = getattr(bundle, "name", "this data set")
        raise ValueError(
            f"--method=kd_rel needs a super-class map: data set {name!r} has none; "
            "pass --superclass_map=FILE.json"
        )
    if len(superclass_of) != num_classes:
        raise ValueError(
            f"the super-class map has {len(superclass_of)} entries for {num_classes} classes"
        )
    return np.asarray(superclass_of, np.int64)
