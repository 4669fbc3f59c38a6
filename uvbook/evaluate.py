"""The evaluation protocol every chapter uses (Chapter 2, "How we measure").

* clustering accuracy with Hungarian matching, and NMI, for k-means on a representation;
* the few-label linear probe: logistic regression trained on k labels a class,
  repeated over several seeds, reported as mean and spread;
* k-NN accuracy with all labels.

A representation is any (examples, features) matrix; images are flattened.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from uvbook.data import few_labels
from uvbook.validate import check_features, check_labels, check_positive_int


def cluster_accuracy(y_true, y_pred) -> float:
    """Accuracy of cluster ids ``y_pred`` under the best one-to-one map to classes.

    The map maximises the matched count (Hungarian algorithm on the contingency
    table); a relabelled perfect clustering scores 1.0.
    """
    y_true = check_labels(y_true, "y_true")
    y_pred = check_labels(y_pred, "y_pred", length=len(y_true))
    _, t = np.unique(y_true, return_inverse=True)
    _, p = np.unique(y_pred, return_inverse=True)
    table = np.zeros((p.max() + 1, t.max() + 1), dtype=np.int64)
    np.add.at(table, (p, t), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(y_true))


def nmi(y_true, y_pred) -> float:
    """Normalised mutual information (arithmetic mean normalisation), in [0, 1]."""
    from sklearn.metrics import normalized_mutual_info_score

    y_true = check_labels(y_true, "y_true")
    y_pred = check_labels(y_pred, "y_pred", length=len(y_true))
    return float(normalized_mutual_info_score(y_true, y_pred))


def kmeans_scores(features, labels, n_clusters: int = 10, seed: int = 0,
                  n_init: int = 10) -> dict[str, float]:
    """k-means on ``features``; returns ``{"acc": ..., "nmi": ...}`` against ``labels``."""
    from sklearn.cluster import KMeans

    labels = check_labels(labels, "labels")
    features = check_features(features, "features", length=len(labels))
    check_positive_int(n_clusters, "n_clusters")
    if n_clusters > len(labels):
        raise ValueError(f"n_clusters must be at most the number of examples ({len(labels)}); "
                         f"got {n_clusters}")
    pred = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed).fit_predict(features)
    return {"acc": cluster_accuracy(labels, pred), "nmi": nmi(labels, pred)}


@dataclass(frozen=True)
class ProbeResult:
    """Test accuracies of a few-label linear probe, one per seed."""

    per_class: int
    accuracies: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies))

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f} ({self.per_class} labels a class, {len(self.accuracies)} seeds)"


def linear_probe(train_x, train_y, test_x, test_y, per_class: int,
                 seeds=(0, 1, 2, 3, 4), C: float = 1.0) -> ProbeResult:
    """Few-label linear probe: logistic regression on ``per_class`` labelled examples a class.

    The features are standardised with statistics of *all* of ``train_x`` (the
    unlabelled data are free to use); only ``per_class`` labels a class, drawn
    with each seed, train the classifier, which is scored on the whole test set.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train_y = check_labels(train_y, "train_y")
    train_x = check_features(train_x, "train_x", length=len(train_y))
    test_y = check_labels(test_y, "test_y")
    test_x = check_features(test_x, "test_x", length=len(test_y))
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"train_x and test_x must have the same number of features; got "
                         f"{train_x.shape[1]} and {test_x.shape[1]}")
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed; got an empty sequence")
    scaler = StandardScaler().fit(train_x)
    train_z, test_z = scaler.transform(train_x), scaler.transform(test_x)
    accs = []
    for seed in seeds:
        idx = few_labels(train_y, per_class, seed=seed)
        clf = LogisticRegression(C=C, max_iter=2000).fit(train_z[idx], train_y[idx])
        accs.append(float(np.mean(clf.predict(test_z) == test_y)))
    return ProbeResult(per_class=per_class, accuracies=tuple(accs))


def knn_accuracy(train_x, train_y, test_x, test_y, k: int = 5) -> float:
    """Accuracy of a k-nearest-neighbour classifier (Euclidean) with all training labels."""
    from sklearn.neighbors import KNeighborsClassifier

    train_y = check_labels(train_y, "train_y")
    train_x = check_features(train_x, "train_x", length=len(train_y))
    test_y = check_labels(test_y, "test_y")
    test_x = check_features(test_x, "test_x", length=len(test_y))
    check_positive_int(k, "k")
    if k > len(train_y):
        raise ValueError(f"k must be at most the number of training examples ({len(train_y)}); got {k}")
    clf = KNeighborsClassifier(n_neighbors=k).fit(train_x, train_y)
    return float(np.mean(clf.predict(test_x) == test_y))
