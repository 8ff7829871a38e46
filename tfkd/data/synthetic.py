"""The super-class synthetic data set of Tang et al., "Understanding and Improving Knowledge
Distillation" (arXiv:2002.03532), section 5.1 and appendix 7.2.

Classes come in groups (super-classes) whose class vectors share a common direction, so a
teacher's soft labels carry which classes are alike; `difficulty` adds sinusoidal terms that
make the decision boundaries non-linear.
"""

import numpy as np


def _check(num_examples, dim, num_classes, num_superclasses, class_similarity, difficulty):
    if num_examples < 0:
        raise ValueError(f"num_examples must be >= 0, got {num_examples}")
    if num_classes < 1 or num_superclasses < 1:
        raise ValueError(
            f"num_classes and num_superclasses must be >= 1, "
            f"got {num_classes} and {num_superclasses}"
        )
    if num_classes % num_superclasses:
        raise ValueError(
            f"num_classes ({num_classes}) must be divisible by "
            f"num_superclasses ({num_superclasses})"
        )
    if dim <= num_superclasses:
        raise ValueError(
            f"dim must be greater than num_superclasses ({num_superclasses}), got {dim}"
        )
    if not 0.0 <= class_similarity < 1.0:
        raise ValueError(f"class_similarity must be in [0, 1), got {class_similarity}")
    if difficulty < 0:
        raise ValueError(f"difficulty must be >= 0, got {difficulty}")


def make_class_vectors(dim, num_classes, num_superclasses, class_similarity, rng):
    """Samples unit class vectors grouped around orthonormal super-class vectors.

    Each class vector is u_c = s * v_S(c) + sqrt(1 - s^2) * w_c with s = class_similarity and w_c a
    random unit vector orthogonal to all super-class vectors, so cos(u_c, v_S(c)) = s exactly
    and cos(u_c, v_other) = 0.

    Returns:
      (class_vectors [num_classes, dim], superclass_vectors [num_superclasses, dim]), float64.
    """
    basis, _ = np.linalg.qr(rng.standard_normal((dim, num_superclasses)))
    superclass_vectors = basis.T
    per_superclass = num_classes // num_superclasses
    superclass_of = np.arange(num_classes) // per_superclass
    noise = rng.standard_normal((num_classes, dim))
    noise -= (noise @ basis) @ basis.T
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    class_vectors = (
        class_similarity * superclass_vectors[superclass_of]
        + np.sqrt(1.0 - class_similarity**2) * noise
    )
    return class_vectors, superclass_vectors


def label_scores(x, class_vectors, amplitudes, phases):
    """Per-class scores z_c + sum_m sin(a_m * z_c + b_m), with z_c = u_c . x.

    Args:
      x: [N, dim]; class_vectors: [C, dim]; amplitudes, phases: [M] (M = difficulty).
    Returns:
      [N, C] float64; the label is the argmax over the last axis.
    """
    projections = x @ class_vectors.T
    waves = np.sin(projections[..., None] * amplitudes + phases).sum(axis=-1)
    return projections + waves


def make_superclass_dataset(
    num_examples, dim, num_classes, num_superclasses, class_similarity, difficulty, seed
):
    """Generates the super-class data set; the same arguments always give the same arrays.

    x ~ N(0, I_dim); y = argmax_c [u_c . x + sum_{m=1..difficulty} sin(a_m * u_c . x + b_m)]
    with a_m ~ U[1, 3) and b_m ~ U[0, 2 pi) fixed by the seed. difficulty 0 gives a linearly
    separable problem. Class vectors and a_m, b_m come from their own seed streams, so they
    do not change with num_examples, and the first rows of x do not change with difficulty.

    Returns:
      x: float32 [num_examples, dim].
      y: int64 [num_examples], classes in [0, num_classes).
      class_vectors: float32 [num_classes, dim], unit rows.
      superclass_of: int64 [num_classes], class c belongs to super-class
        c // (num_classes // num_superclasses).
    """
    _check(num_examples, dim, num_classes, num_superclasses, class_similarity, difficulty)
    vector_seed, wave_seed, input_seed = np.random.SeedSequence(seed).spawn(3)
    class_vectors, _ = make_class_vectors(
        dim, num_classes, num_superclasses, class_similarity, np.random.default_rng(vector_seed)
    )
    # One (a_m, b_m) row per term, so raising difficulty adds terms and keeps the earlier ones.
    waves = np.random.default_rng(wave_seed).uniform(size=(difficulty, 2))
    # Every class shares the score function f(z) = z + sum sin(a_m z + b_m); with all a_m < 1
    # f would stay increasing and the argmax linear, so a_m starts at 1.
    amplitudes = 1.0 + 2.0 * waves[:, 0]
    phases = 2.0 * np.pi * waves[:, 1]
    x = np.random.default_rng(input_seed).standard_normal((num_examples, dim))
    # Labels come from the float32 values that are returned, so anyone recomputing them from
    # the returned arrays gets the same argmax, even for points next to a boundary.
    x = x.astype(np.float32)
    class_vectors = class_vectors.astype(np.float32)
    scores = label_scores(
        x.astype(np.float64), class_vectors.astype(np.float64), amplitudes, phases
    )
    y = np.argmax(scores, axis=-1).astype(np.int64)
    superclass_of = np.arange(num_classes, dtype=np.int64) // (num_classes // num_superclasses)
    return x, y, class_vectors, superclass_of
