"""DIST (Huang et al., 2022): Pearson correlations between the teacher's and the student's
probabilities within each example (inter-class) and within each class over the batch
(intra-class); a statistic of a whole batch, hence `replica_scaled`."""

from keras import ops

PEARSON_EPSILON = 1e-8


def _mean_pearson_rows(a, b, weights=None):
    """Mean over rows of the Pearson correlation of rows of `a` and `b` [rows, n] -> scalar;
    `weights` [rows] (None: every row counts once) weigh the rows in the mean."""
    a = a - ops.mean(a, axis=1, keepdims=True)
    b = b - ops.mean(b, axis=1, keepdims=True)
    norms = ops.sqrt(ops.sum(ops.square(a), axis=1)) * ops.sqrt(ops.sum(ops.square(b), axis=1))
    correlations = ops.sum(a * b, axis=1) / (norms + PEARSON_EPSILON)
    if weights is None:
        return ops.mean(correlations)
    return ops.divide_no_nan(ops.sum(weights * correlations), ops.sum(weights))


def _mean_pearson_columns(a, b, weights=None):
    """Mean over columns of the Pearson correlation of columns of `a` and `b` [rows, n], each
    column's correlation taken over the rows of nonzero weight -> scalar."""
    if weights is None:
        return _mean_pearson_rows(ops.transpose(a), ops.transpose(b))
    weights = ops.expand_dims(weights, -1)
    count = ops.sum(weights)
    a = (a - ops.divide_no_nan(ops.sum(weights * a, axis=0, keepdims=True), count)) * weights
    b = (b - ops.divide_no_nan(ops.sum(weights * b, axis=0, keepdims=True), count)) * weights
    norms = ops.sqrt(ops.sum(ops.square(a), axis=0)) * ops.sqrt(ops.sum(ops.square(b), axis=0))
    return ops.mean(ops.sum(a * b, axis=0) / (norms + PEARSON_EPSILON))


def _rows(values):
    """[..., K] -> [rows, K], one row per element of the leading shape."""
    if len(values.shape) == 2:
        return values
    classes = values.shape[-1] if values.shape[-1] is not None else ops.shape(values)[-1]
    return ops.reshape(values, (-1, classes))


def dist_loss(
    student_logits,
    teacher_logits,
    temperature: float = 1.0,
    inter_weight: float = 1.0,
    intra_weight: float = 1.0,
    weights=None,
):
    """DIST: relations between the predictions instead of their exact values -> scalar.

    T^2 * (inter_weight * (1 - mean over rows of Pearson(p_s[i, :], p_t[i, :]))
           + intra_weight * (1 - mean over classes of Pearson(p_s[:, k], p_t[:, k]))),
    p = softmax(z / T). The intra-class term correlates each class's probabilities across the
    rows of the batch, so it is a statistic of the whole batch, not a sum over elements: the
    function returns a scalar, not a [batch] vector.

    The rows are the elements of the leading shape: [batch, K] logits give one row per example,
    [batch, time, K] logits one row per token (the leading axes are flattened), so on sequences
    DIST reduces over tokens, every valid token of the batch counting once in both terms.
    `weights` (0/1 per element, e.g. the padding mask) leave rows out: a row of weight 0 is in
    neither mean nor in the per-class correlations.

    Matches the official code (hunto/image_classification_sota, lib/models/losses/dist_kd.py):
    Pearson(a, b) = <a - mean a, b - mean b> / (||a - mean a|| * ||b - mean b|| + 1e-8), the
    epsilon added to the product of the norms; inter_weight and intra_weight are its beta and
    gamma, temperature its tau. No difference in the formula.

    The function reads the batch it is given: under tf.distribute the distiller gathers the
    global batch first (`tfkd.global_batch.gather_global_batch`) and differentiates
    `replica_scaled(dist_loss(...))`, so that 2 replicas take the step 1 replica takes.

    Args:
      student_logits, teacher_logits: float [..., K]; at least 2 rows and K >= 2 for the
        correlations to be defined.
      temperature: T > 0; inter_weight (beta), intra_weight (gamma): >= 0.
      weights: None, or float [...] in {0, 1}: the rows that count.
    Returns:
      float scalar.

    References:
      Huang, You, Wang, Qian, Xu, "Knowledge Distillation from A Stronger Teacher",
      NeurIPS 2022.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if inter_weight < 0 or intra_weight < 0:
        raise ValueError(
            f"inter_weight and intra_weight must be >= 0, got {inter_weight} and {intra_weight}"
        )
    student_logits = ops.convert_to_tensor(student_logits)
    teacher_logits = ops.cast(ops.convert_to_tensor(teacher_logits), student_logits.dtype)
    student_probs = _rows(ops.softmax(student_logits / temperature, axis=-1))
    teacher_probs = _rows(ops.softmax(teacher_logits / temperature, axis=-1))
    if weights is not None:
        weights = ops.reshape(ops.cast(weights, student_probs.dtype), (-1,))
    inter = 1.0 - _mean_pearson_rows(student_probs, teacher_probs, weights)
    intra = 1.0 - _mean_pearson_columns(student_probs, teacher_probs, weights)
    return temperature**2 * (inter_weight * inter + intra_weight * intra)


def replica_scaled(batch_loss):
    """A scalar computed on the global batch (e.g. `dist_loss`), divided by the replica count.

    Keras sums gradients across replicas; a batch-level loss that every replica computes in
    full would otherwise count num_replicas_in_sync times.
    """
    import tensorflow as tf

    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return batch_loss / replicas if replicas > 1 else batch_loss
