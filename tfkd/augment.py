"""In-graph batch augmentation for distillation: inception crop, horizontal flip and mixup.

Each augmentation comes in two halves: drawing its explicit per-example parameters from a
stateless seed (int [2]) — `crop_boxes`, `flips`, `mixup_weights`, `mixup_partners` — and
applying given parameters — `crop_and_resize`, `flip_where`, `mix`. The parameters of example i
depend only on the seed, the batch size and i, so one seed reproduces the same augmentation
bit for bit, a teacher and a student handed the output of one call see identical tensors, and
the parameters can be stored and applied again later. `random_resized_crop`, `random_flip` and
`mixup` draw and apply in one call.
"""

import math

import tensorflow as tf

PARTNERS = ("permutation", "roll")


def split_seed(seed, count):
    """`count` independent stateless seeds (each int [2]) derived from one."""
    return tf.unstack(tf.random.experimental.stateless_split(seed, count))


def _size(images, axis):
    """Static size of `axis` when known (keeps output shapes static), else the dynamic one."""
    return images.shape[axis] if images.shape[axis] is not None else tf.shape(images)[axis]


def image_size(images):
    """(height, width) of an image batch [batch, H, W, C], static where known."""
    return _size(images, 1), _size(images, 2)


def crop_boxes(batch_size, seed, height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Inception-style crop windows as normalised boxes.

    Per example the window covers a fraction s ~ U(scale) of the image area and has aspect
    ratio (width / height) r with log r ~ U(log ratio), so, as fractions of the image sides,
    h = sqrt(s * W / (r * H)) and w = sqrt(s * r * H / W); its corner is uniform over the
    positions that keep it inside the image. A side longer than the image is clipped to the
    image, where Szegedy et al.'s recipe would resample: a data-dependent loop that clipping
    avoids at the price of a slightly smaller area for extreme (s, r) pairs.

    Args:
      batch_size: int (or int scalar tensor), number of boxes.
      seed: int [2] stateless seed.
      height, width: image size in pixels (ints or int scalar tensors).
      scale: (min, max) area fraction, 0 < min <= max <= 1.
      ratio: (min, max) aspect ratio, 0 < min <= max.
    Returns:
      float32 [batch, 4] boxes (y1, x1, y2, x2) in [0, 1], as `tf.image.crop_and_resize` takes.
    """
    scale_seed, ratio_seed, offset_seed = split_seed(seed, 3)
    area = tf.random.stateless_uniform([batch_size], scale_seed, scale[0], scale[1])
    log_ratio = tf.random.stateless_uniform(
        [batch_size], ratio_seed, math.log(ratio[0]), math.log(ratio[1])
    )
    aspect = tf.exp(log_ratio)
    image_ratio = tf.cast(height, tf.float32) / tf.cast(width, tf.float32)
    box_height = tf.minimum(tf.sqrt(area / (aspect * image_ratio)), 1.0)
    box_width = tf.minimum(tf.sqrt(area * aspect * image_ratio), 1.0)
    offsets = tf.random.stateless_uniform([batch_size, 2], offset_seed)
    top = offsets[:, 0] * (1.0 - box_height)
    left = offsets[:, 1] * (1.0 - box_width)
    return tf.stack([top, left, top + box_height, left + box_width], axis=1)


def crop_and_resize(images, boxes):
    """Crops box k from image k and resizes it back (bilinear) to the image size.

    Args:
      images: float [batch, H, W, C].
      boxes: float32 [batch, 4] normalised (y1, x1, y2, x2), as from `crop_boxes`.
    Returns:
      float32 [batch, H, W, C].
    """
    batch, height, width = tf.shape(images)[0], _size(images, 1), _size(images, 2)
    return tf.image.crop_and_resize(
        tf.cast(images, tf.float32), boxes, tf.range(batch), tf.stack([height, width])
    )


def random_resized_crop(images, seed, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """Crops an inception-style window (`crop_boxes`) from each image and resizes it back
    (bilinear) to the image size.

    Args:
      images: float [batch, H, W, C].
      seed: int [2] stateless seed.
    Returns:
      float32 [batch, H, W, C].
    """
    batch, height, width = tf.shape(images)[0], _size(images, 1), _size(images, 2)
    return crop_and_resize(images, crop_boxes(batch, seed, height, width, scale, ratio))


def flips(batch_size, seed):
    """bool [batch]: which images to mirror, each with probability 1/2."""
    return tf.random.stateless_uniform([batch_size], seed) < 0.5


def flip_where(images, flip):
    """Mirrors left-right the images whose `flip` (bool [batch]) is True.

    Args:
      images: [batch, H, W, C].
    Returns:
      images' dtype, [batch, H, W, C].
    """
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)


def random_flip(images, seed):
    """Mirrors each image left-right with probability 1/2.

    Args:
      images: [batch, H, W, C].
      seed: int [2] stateless seed.
    Returns:
      images' dtype, [batch, H, W, C]; each image is its input or its mirror.
    """
    return flip_where(images, flips(tf.shape(images)[0], seed))


def sample_beta(shape, seed, alpha):
    """Beta(alpha, alpha) samples as G1 / (G1 + G2) with G1, G2 ~ Gamma(alpha, 1) independent.

    Args:
      shape: output shape.
      seed: int [2] stateless seed.
      alpha: float > 0.
    Returns:
      float32 `shape`, in [0, 1]. When both gammas underflow to 0 (possible for alpha << 1)
      the sample is 1/2 rather than 0/0.
    """
    first_seed, second_seed = split_seed(seed, 2)
    first = tf.random.stateless_gamma(shape, first_seed, alpha)
    second = tf.random.stateless_gamma(shape, second_seed, alpha)
    total = first + second
    return tf.where(total > 0, first / tf.where(total > 0, total, 1.0), 0.5)


def mixup_partners(batch_size, seed, partners="permutation"):
    """The example each example is mixed with.

    "permutation": the batch is put in a random order and every example paired with the one
    `shift` places further along the cycle, shift uniform in [1, batch - 1]: a random
    permutation with no fixed point. "roll": example i is paired with example i + 1 (mod
    batch), enough when batches arrive shuffled. Neither reverses the batch, which would pair
    i with batch-1-i and j with i, using each pair twice.

    Args:
      batch_size: int scalar (tensor), >= 1.
      seed: int [2] stateless seed (unused by "roll").
      partners: "permutation" or "roll".
    Returns:
      int32 [batch] partner indices, a permutation of range(batch) with partner[i] != i when
      batch > 1.
    """
    if partners not in PARTNERS:
        raise ValueError(f"partners must be one of {', '.join(PARTNERS)}, got {partners!r}")
    indices = tf.range(batch_size)
    if partners == "roll":
        return tf.roll(indices, shift=-1, axis=0)
    order_seed, shift_seed = split_seed(seed, 2)
    order = tf.argsort(tf.random.stateless_uniform([batch_size], order_seed))
    spread = tf.cast(batch_size - 1, tf.float32) * tf.random.stateless_uniform([], shift_seed)
    shift = 1 + tf.minimum(tf.cast(tf.floor(spread), tf.int32), batch_size - 2)
    # order[j] is paired with order[j + shift]: partner[order[j]] = rolled[j].
    rolled = tf.roll(order, shift=-shift, axis=0)
    return tf.scatter_nd(order[:, None], rolled, [batch_size])


def mixup_weights(batch_size, seed, alpha=1.0):
    """float32 [batch] mixup weights: Beta(alpha, alpha) folded onto [1/2, 1] (see `mixup`)."""
    weight = sample_beta([batch_size], seed, alpha)
    return tf.maximum(weight, 1.0 - weight)


def mix(inputs, partner_inputs, weight):
    """w * x_i + (1 - w) * x_partner for given partners' inputs.

    Args:
      inputs: float [batch, ...].
      partner_inputs: float [batch, ...], row i the input example i is mixed with.
      weight: float32 [batch].
    Returns:
      float32 [batch, ...].
    """
    inputs, partner_inputs = tf.cast(inputs, tf.float32), tf.cast(partner_inputs, tf.float32)
    broadcast = tf.reshape(weight, [-1] + [1] * (inputs.shape.rank - 1))
    return broadcast * inputs + (1.0 - broadcast) * partner_inputs


def mixup(inputs, seed, alpha=1.0, partners="permutation"):
    """Mixup of each example with its partner: w * x_i + (1 - w) * x_partner(i).

    The weight w ~ Beta(alpha, alpha) is folded onto [1/2, 1] (w -> max(w, 1 - w)), so each mix
    is dominated by its own example and that example's label stays the right one for an
    optional cross-entropy term. With partners drawn symmetrically the mixed inputs have the
    same distribution as with the unfolded weight.

    Args:
      inputs: float [batch, ...].
      seed: int [2] stateless seed.
      alpha: Beta parameter, > 0.
      partners: "permutation" or "roll" (see `mixup_partners`).
    Returns:
      (mixed float32 [batch, ...], weight float32 [batch], partner int32 [batch]).
    """
    weight_seed, partner_seed = split_seed(seed, 2)
    batch = tf.shape(inputs)[0]
    weight = mixup_weights(batch, weight_seed, alpha)
    partner = mixup_partners(batch, partner_seed, partners)
    return mix(inputs, tf.gather(inputs, partner), weight), weight, partner
