"""Test set-up: two logical CPU devices so that MirroredStrategy tests run on any machine."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


import pytest  # noqa: E402


@pytest.fixture
def mirrored():
    """The process's one MirroredStrategy over the two logical CPUs (see training.make_strategy)."""
    from tfkd import training

    strategy = training.make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2
    return strategy


@pytest.fixture(autouse=True)
def _restore_global_state():
    """Seeds every test; a test that switches on op determinism (a --deterministic run) or sets
    Keras's float type or dtype policy leaves none of it to the next test: results do not depend
    on which tests ran before in the same worker."""
    import keras
    from tensorflow.python.framework import config as tf_config

    determinism = tf_config.is_op_determinism_enabled()
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    # Every test starts from the same global seeds (Python, NumPy, TensorFlow), so a `fit` that
    # shuffles or a layer built without a seed draws the same numbers in any order of tests.
    keras.utils.set_random_seed(0)
    yield
    if tf_config.is_op_determinism_enabled() != determinism:
        (tf_config.enable_op_determinism if determinism else tf_config.disable_op_determinism)()
    keras.config.set_floatx(floatx)
    keras.config.set_dtype_policy(policy)


@pytest.fixture(autouse=True)
def _unparse_flags_after_test():
    """Tests that parse absl flags leave no parsed state behind for the next one."""
    yield
    from absl import flags

    flags.FLAGS.unparse_flags()
