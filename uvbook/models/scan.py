"""SCAN (Van Gansbeke et al. 2020): clusters learned from a representation's nearest neighbours (Chapter 6).

A self-supervised encoder puts images of one class near each other, but not in round,
equal-sized blobs that k-means could cut. SCAN trains a small *clustering head* on top of
the frozen features instead:

1. :func:`mine_neighbours` finds the ``k`` nearest neighbours of every training image in
   the representation (no labels);
2. the head maps features to ``K`` cluster probabilities ``p(x)``; the loss
   (:func:`scan_loss`) rewards an image and a random one of its neighbours for agreeing,
   ``-log <p(x), p(n)>``, and subtracts ``entropy_weight`` times the entropy of the mean
   prediction over the batch, which keeps every cluster in use (without it, one cluster
   for everything agrees perfectly).

The head (:func:`build_scan_head`) normalises the features to unit length, projects them
on their leading principal components (a fixed layer, fitted once), then has one hidden
ReLU layer and ``K`` logits. Its hidden layer is a representation too (:meth:`SCAN.embed`):
the features a clustering objective shaped, without a label.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from uvbook.data import prefetched
from uvbook.validate import check_features, check_number, check_positive_int

_EPS = 1e-8


def scan_loss(p_anchor, p_neighbour, entropy_weight: float = 5.0):
    """``(loss, consistency, entropy)`` of SCAN for cluster probabilities of anchors and neighbours.

    ``consistency = -mean_i log(p_anchor[i] . p_neighbour[i])``, ``entropy = -sum_c m_c log m_c``
    with ``m`` the mean of ``p_anchor`` over the batch, and ``loss = consistency -
    entropy_weight * entropy``. Both inputs are (batch, K) rows of probabilities.
    """
    agreement = ops.sum(p_anchor * p_neighbour, axis=1)
    consistency = -ops.mean(ops.log(agreement + _EPS))
    mean = ops.mean(p_anchor, axis=0)
    entropy = -ops.sum(mean * ops.log(mean + _EPS))
    return consistency - entropy_weight * entropy, consistency, entropy


def fit_projection(features, n_components: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel, bias)`` of the head's fixed first layer, fitted on ``features`` without labels:
    unit-length rows projected on their ``n_components`` leading principal components, divided
    by the projection's overall standard deviation (so that the next layer sees numbers of
    order one): ``z = unit(h) @ kernel + bias``."""
    from sklearn.decomposition import PCA

    x = check_features(features, "features").astype(np.float32)
    check_positive_int(n_components, "n_components")
    if n_components > min(x.shape):
        raise ValueError(f"n_components must be at most min(examples, features) = {min(x.shape)}; "
                         f"got {n_components}")
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    pca = PCA(n_components=n_components, svd_solver="randomized", random_state=0).fit(unit)
    scale = float(np.sqrt(pca.explained_variance_.mean()))
    kernel = (pca.components_.T / scale).astype(np.float32)
    return kernel, (-pca.mean_ @ kernel).astype(np.float32)


def build_scan_head(features, n_clusters: int = 10, hidden: int = 512, n_components: int = 256,
                    name: str = "scan_head") -> keras.Model:
    """The clustering head: unit length -> fixed projection (:func:`fit_projection` on
    ``features``) -> Dense(``hidden``, ReLU) named ``"hidden"`` -> ``n_clusters`` logits."""
    x = check_features(features, "features")
    check_positive_int(n_clusters, "n_clusters")
    check_positive_int(hidden, "hidden")
    kernel, bias = fit_projection(x, n_components)
    inputs = keras.Input(shape=(x.shape[1],), name="features")
    h = layers.UnitNormalization(name="unit")(inputs)
    projection = layers.Dense(n_components, trainable=False, name="projection")
    h = projection(h)
    projection.set_weights([kernel, bias])
    h = layers.Dense(hidden, activation="relu", name="hidden")(h)
    return keras.Model(inputs, layers.Dense(n_clusters, name="logits")(h), name=name)


def mine_neighbours(head: keras.Model, features, k: int = 20, batch_size: int = 4096) -> np.ndarray:
    """The ``k`` nearest neighbours (row indices, the row itself excluded) of every row of
    ``features``, by Euclidean distance in the head's fixed projection: unit-length features
    projected on their principal components, where near means a high cosine similarity."""
    from sklearn.neighbors import NearestNeighbors

    x = check_features(features, "features")
    check_positive_int(k, "k")
    check_positive_int(batch_size, "batch_size")
    if k >= len(x):
        raise ValueError(f"k must be smaller than the number of examples ({len(x)}); got {k}")
    projected = keras.Model(head.inputs[0], head.get_layer("projection").output)
    z = np.concatenate([ops.convert_to_numpy(projected(x[i:i + batch_size]))
                        for i in range(0, len(x), batch_size)])
    # kneighbors without X: each row's neighbours among the others (itself left out)
    return NearestNeighbors(n_neighbors=k).fit(z).kneighbors(return_distance=False)


@keras.saving.register_keras_serializable(package="uvbook")
class SCAN(keras.Model):
    """Semantic clustering by adopting nearest neighbours, on frozen features (Chapter 6).

    Args:
        head: a model from features to cluster logits with a layer named ``"hidden"``
            (:func:`build_scan_head`).
        entropy_weight: the weight of the entropy of the mean prediction in :func:`scan_loss`
            (5 in the paper's code).

    ``fit`` takes batches ``(anchor_features, neighbour_features)``. Metrics: ``loss``,
    ``consistency`` (nats; 0 when every pair agrees with certainty) and ``entropy`` of the
    mean prediction (log K when the clusters are used equally).
    """

    def __init__(self, head: keras.Model, entropy_weight: float = 5.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(head, keras.Model):
            raise ValueError(f"head must be a keras.Model; got {type(head).__name__}")
        if "hidden" not in [layer.name for layer in head.layers]:
            raise ValueError(f"head must have a layer named 'hidden'; it has {[l.name for l in head.layers]}")
        self.head = head
        self.entropy_weight = check_number(entropy_weight, "entropy_weight", 0.0)
        self.n_clusters = int(head.outputs[0].shape[-1])
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.consistency_tracker = keras.metrics.Mean(name="consistency")
        self.entropy_tracker = keras.metrics.Mean(name="entropy")
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.consistency_tracker, self.entropy_tracker]

    def call(self, features, training: bool = False):
        """Cluster logits of ``features``."""
        return self.head(features, training=training)

    def train_step(self, data):
        import tensorflow as tf  # the book's backend; the step is the keras.io idiom

        anchors, neighbours = data
        with tf.GradientTape() as tape:
            p_anchor = ops.softmax(self.head(anchors, training=True))
            p_neighbour = ops.softmax(self.head(neighbours, training=True))
            loss, consistency, entropy = scan_loss(p_anchor, p_neighbour, self.entropy_weight)
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        for tracker, value in zip(self.metrics, (loss, consistency, entropy)):
            tracker.update_state(value)
        return {m.name: m.result() for m in self.metrics}

    def _batched(self, fn, features, batch_size: int) -> np.ndarray:
        x = check_features(features, "features")
        width = int(self.head.inputs[0].shape[-1])
        if x.shape[1] != width:
            raise ValueError(f"features must have {width} columns, like those the head was built on; "
                             f"got {x.shape[1]}")
        check_positive_int(batch_size, "batch_size")
        return np.concatenate([ops.convert_to_numpy(fn(x[i:i + batch_size].astype(np.float32)))
                               for i in range(0, len(x), batch_size)])

    def cluster(self, features, batch_size: int = 4096) -> np.ndarray:
        """The cluster (0..K-1) of every row of ``features``: the most probable one."""
        return self._batched(lambda b: self.head(b, training=False), features, batch_size).argmax(axis=1)

    def embed(self, features, batch_size: int = 4096) -> np.ndarray:
        """The head's hidden layer for every row of ``features``: a representation of its own."""
        embedder = keras.Model(self.head.inputs[0], self.head.get_layer("hidden").output)
        return self._batched(lambda b: embedder(b, training=False), features, batch_size)

    def get_config(self):
        return {**super().get_config(), "head": keras.saving.serialize_keras_object(self.head),
                "entropy_weight": self.entropy_weight}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["head"] = keras.saving.deserialize_keras_object(config["head"])
        return cls(**config)


def neighbour_pairs(features, neighbours, batch_size: int = 256, seed: int = 0):
    """A ``tf.data.Dataset`` of batches ``(anchors, neighbours)`` for ``SCAN.fit``: the anchors
    in a new random order every pass over the data, each with one of its ``neighbours`` (rows of
    indices into ``features``) drawn at random; repeats forever (give ``fit`` its ``steps_per_epoch``)."""
    import tensorflow as tf

    x = check_features(features, "features").astype(np.float32)
    nbrs = np.asarray(neighbours)
    if nbrs.ndim != 2 or len(nbrs) != len(x) or not np.issubdtype(nbrs.dtype, np.integer):
        raise ValueError(f"neighbours must be an integer array of shape ({len(x)}, k); got "
                         f"{nbrs.dtype} {nbrs.shape}")
    if nbrs.size and (nbrs.min() < 0 or nbrs.max() >= len(x)):
        raise ValueError(f"neighbours must index rows 0..{len(x) - 1} of features; got {nbrs.min()}..{nbrs.max()}")
    check_positive_int(batch_size, "batch_size")
    table, pool, k = tf.constant(x), tf.constant(nbrs, dtype=tf.int64), nbrs.shape[1]

    def pair(rand, idx):
        pick = tf.random.stateless_uniform(tf.shape(idx), seed=tf.stack([rand, tf.constant(seed, tf.int64)]),
                                           maxval=k, dtype=tf.int64)
        partner = tf.gather(tf.gather(pool, idx), pick, batch_dims=1)
        return tf.gather(table, idx), tf.gather(table, partner)

    anchors = (tf.data.Dataset.range(len(x)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
               .repeat().batch(batch_size, drop_remainder=True))
    return prefetched(tf.data.Dataset.zip(tf.data.Dataset.random(seed=seed), anchors).map(pair))
