"""Test set-up: two logical CPU devices so that MirroredStrategy tests run on any machine."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])


import pytest  # noqa: E402


@pytest.fixture
def mirrored():
    """The process's one MirroredStrategy over the two logical CPUs (see training.make_strategy)."""
    from tfkd import training

    strategy = training.make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2
    return strategy


@pytest.fixture(autouse=True)
def _unparse_flags_after_test():
    """Tests that parse absl flags leave no parsed state behind for the next one."""
    yield
    from absl import flags

    flags.FLAGS.unparse_flags()
