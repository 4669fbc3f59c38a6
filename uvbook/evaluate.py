"""The evaluation protocol every chapter uses (Chapter 2, "How we measure").

* clustering accuracy with Hungarian matching, and NMI, for k-means on a representation;
* the few-label linear probe: logistic regression trained on k labels a class,
  repeated over several seeds, reported as mean and spread;
* k-NN accuracy with all labels;
* (Chapter 3) reconstruction error per pixel, PSNR, retrieval precision@k by class,
  and the ROC AUC of an anomaly score;
* (Chapter 7) label spreading on a k-nearest-neighbour graph;
* :func:`protocol`: all of the above that Chapters 2, 6 and 8 report, on one representation.

A representation is any (examples, features) matrix; images are flattened.
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from threadpoolctl import threadpool_limits

from uvbook.data import few_labels
from uvbook.validate import check_features, check_images, check_labels, check_number, check_positive_int


def _one_blas_thread(func):
    """Run ``func`` with one BLAS/OpenMP thread.

    scikit-learn's k-means and logistic regression are long chains of small computations,
    faster on one thread: with several, their threads compete with TensorFlow's and with
    other processes, which on a 2-core machine makes them an order of magnitude slower.
    Exact nearest-neighbour searches (:func:`knn_accuracy`, :func:`retrieval_precision_at_k`,
    the neighbour graph) are the opposite, one large matrix product of distances, and keep
    every core: on 60,000 training and 10,000 test vectors of 6,272 numbers, two threads
    take half the time of one.
    """
    return functools.wraps(func)(threadpool_limits.wrap(limits=1)(func))


def match_clusters(y_true, y_pred) -> np.ndarray:
    """Cluster ids ``y_pred`` turned into class labels by the best one-to-one map of clusters to classes.

    The map maximises the number of images whose cluster maps to their class (Hungarian
    algorithm on the cluster-by-class contingency table). A cluster left without a class
    (more clusters than classes) maps to -1.
    """
    y_true = check_labels(y_true, "y_true")
    y_pred = check_labels(y_pred, "y_pred", length=len(y_true))
    classes, t = np.unique(y_true, return_inverse=True)
    clusters, p = np.unique(y_pred, return_inverse=True)
    table = np.zeros((len(clusters), len(classes)), dtype=np.int64)
    np.add.at(table, (p, t), 1)
    rows, cols = linear_sum_assignment(-table)
    to_class = np.full(len(clusters), -1, dtype=np.int64)
    to_class[rows] = classes[cols]
    return to_class[p]


def cluster_accuracy(y_true, y_pred) -> float:
    """Accuracy of cluster ids ``y_pred`` under the best one-to-one map to classes
    (:func:`match_clusters`); a relabelled perfect clustering scores 1.0."""
    return float(np.mean(match_clusters(y_true, y_pred) == np.asarray(y_true)))


def nmi(y_true, y_pred) -> float:
    """Normalised mutual information (arithmetic mean normalisation), in [0, 1]."""
    from sklearn.metrics import normalized_mutual_info_score

    y_true = check_labels(y_true, "y_true")
    y_pred = check_labels(y_pred, "y_pred", length=len(y_true))
    return float(normalized_mutual_info_score(y_true, y_pred))


@_one_blas_thread
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


def n2d_scores(features, labels, n_clusters: int = 10, n_components: int | None = None,
               n_neighbors: int = 20, seed: int = 0) -> dict[str, float]:
    """N2D clustering (McConville et al. 2021): UMAP, then a Gaussian mixture; ACC and NMI.

    UMAP (McInnes et al. 2018) embeds ``features`` in ``n_components`` dimensions (default:
    ``n_clusters``) with ``min_dist=0``, so that points of one manifold pack tightly; a
    Gaussian mixture with ``n_clusters`` full-covariance components then assigns the
    clusters, scored like :func:`kmeans_scores`. ``seed`` fixes both, which makes UMAP run
    on one thread (slower, but repeatable). ``labels`` only score the result.
    """
    import umap
    from sklearn.mixture import GaussianMixture

    labels = check_labels(labels, "labels")
    features = check_features(features, "features", length=len(labels))
    check_positive_int(n_clusters, "n_clusters")
    n_components = n_clusters if n_components is None else check_positive_int(n_components, "n_components")
    check_positive_int(n_neighbors, "n_neighbors")
    if not n_clusters < len(labels) or not n_neighbors < len(labels):
        raise ValueError(f"n_clusters and n_neighbors must be smaller than the number of examples "
                         f"({len(labels)}); got {n_clusters} and {n_neighbors}")
    embedding = umap.UMAP(n_components=n_components, n_neighbors=n_neighbors, min_dist=0.0, n_jobs=1,
                          random_state=seed).fit_transform(features)
    pred = GaussianMixture(n_clusters, covariance_type="full", random_state=seed).fit_predict(embedding)
    return {"acc": cluster_accuracy(labels, pred), "nmi": nmi(labels, pred)}


#: The values of C (the inverse penalty of :func:`linear_probe`) that the tuned probe chooses
#: from, from a strong penalty (C = 0.001, nearly a class-mean classifier) to the weak one
#: every probe used before tuning (C = 1).
PROBE_C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)


@dataclass(frozen=True)
class ProbeResult:
    """Test accuracies of a few-label linear probe, one per labelled draw (seed).

    ``C`` holds the penalty used for each draw (chosen by cross-validation on the draw when
    the probe is tuned), ``oracle`` the best test accuracy any ``C`` of the grid reached on
    that draw and ``oracle_C`` that ``C``: an upper bound no one could pick without the test
    labels, printed for honesty. Both are empty for a probe with a fixed ``C``.
    """

    per_class: int
    accuracies: tuple[float, ...]
    C: tuple[float, ...] = ()
    oracle: tuple[float, ...] = ()
    oracle_C: tuple[float, ...] = ()

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies))

    @property
    def oracle_mean(self) -> float:
        """Mean over draws of the best test accuracy over the grid (NaN for a fixed ``C``)."""
        return float(np.mean(self.oracle)) if self.oracle else float("nan")

    @property
    def typical_C(self) -> float:
        """The ``C`` used most often over the draws (the smaller on a tie)."""
        values, counts = np.unique(self.C, return_counts=True)
        return float(values[np.argmax(counts)]) if len(values) else float("nan")

    def __str__(self) -> str:
        labels = "label" if self.per_class == 1 else "labels"
        return (f"{self.mean:.3f} ± {self.std:.3f} ({self.per_class} {labels} a class, "
                f"{len(self.accuracies)} seeds)")


def _check_grid(grid) -> tuple[float, ...]:
    grid = tuple(sorted(float(c) for c in grid))
    if not grid or not all(np.isfinite(c) and c > 0 for c in grid):
        raise ValueError(f"grid must list positive, finite values of C; got {grid!r}")
    return grid


def _fit_path(x, y, grid: tuple[float, ...], tol: float = 1e-4, max_iter: int = 2000) -> list:
    """Logistic regressions on ``(x, y)`` for every ``C`` of ``grid`` (ascending), each
    started from the previous solution (a warm-started regularisation path).

    With more features than examples the fits run in the span of the examples: the
    penalised solution ``W`` lies in that span (any part of ``W`` orthogonal to every
    example changes no prediction on them and only adds to the penalty), so fitting
    ``V`` on the coordinates ``x Q`` of an orthonormal basis ``Q`` of the span and
    setting ``W = V Q^T`` gives the same classifier, at the cost of ``n`` features
    instead of ``d``.
    """
    from copy import deepcopy

    from sklearn.linear_model import LogisticRegression

    basis = None
    if x.shape[1] > x.shape[0]:
        basis, _ = np.linalg.qr(np.asarray(x, dtype=np.float64).T)    # (d, n), orthonormal columns
        x = np.asarray(x, dtype=np.float64) @ basis
    clf, fits = LogisticRegression(max_iter=max_iter, tol=tol, warm_start=True), []
    for c in grid:
        fit = deepcopy(clf.set_params(C=c).fit(x, y))
        if basis is not None:
            fit.coef_ = fit.coef_ @ basis.T
            fit.n_features_in_ = basis.shape[0]
        fits.append(fit)
    return fits


@_one_blas_thread
def choose_C(x, y, grid=PROBE_C_GRID, folds: int = 3, seed: int = 0,
             classes=None, tol: float = 1e-4) -> tuple[float, np.ndarray]:
    """The penalty of a logistic regression chosen by stratified ``folds``-fold
    cross-validation on the labelled examples ``(x, y)`` alone; returns ``(C, cv_accuracy)``
    with the mean held-out accuracy of every ``C`` of ``grid`` (ascending order).

    Ties go to the smaller ``C`` (the stronger penalty, the simpler classifier).

    ``classes`` lists the classes the labelled set must cover (default: those in ``y``);
    ``tol`` is the solver's stopping tolerance.

    Raises:
        ValueError: a class of ``classes`` has no labelled example, a class has
            fewer examples than ``folds``, ``folds < 2``, or ``grid`` is not positive values.
    """
    from sklearn.model_selection import StratifiedKFold

    y = check_labels(y, "y")
    x = check_features(x, "x", length=len(y))
    grid = _check_grid(grid)
    folds = check_positive_int(folds, "folds")
    if folds < 2:
        raise ValueError(f"folds must be at least 2 for cross-validation; got {folds}")
    classes = np.unique(y) if classes is None else np.asarray(classes)
    counts = np.array([np.sum(y == c) for c in classes])
    if np.any(counts == 0):
        raise ValueError(f"every class of {classes.tolist()} must have a labelled example; "
                         f"classes {classes[counts == 0].tolist()} have none")
    if counts.min() < folds:
        raise ValueError(f"every class needs at least folds={folds} labelled examples for "
                         f"{folds}-fold cross-validation; class {classes[counts.argmin()]} has "
                         f"{int(counts.min())}")
    correct = np.zeros(len(grid))
    for fit_idx, held_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        for i, clf in enumerate(_fit_path(x[fit_idx], y[fit_idx], grid, tol=tol)):
            correct[i] += np.sum(clf.predict(x[held_idx]) == y[held_idx])
    cv_accuracy = correct / len(y)
    return grid[int(np.argmax(cv_accuracy))], cv_accuracy


@_one_blas_thread
def linear_probe(train_x, train_y, test_x, test_y, per_class: int,
                 seeds=(0, 1, 2, 3, 4), C: float | str = 1.0, grid=PROBE_C_GRID,
                 folds: int | None = None, tol: float = 1e-4) -> ProbeResult:
    """Few-label linear probe: logistic regression on ``per_class`` labelled examples a class.

    The features are standardised with statistics of *all* of ``train_x`` (the
    unlabelled data are free to use); only ``per_class`` labels a class, drawn
    with each seed, train the classifier, which is scored on the whole test set.

    ``C`` is the inverse penalty. A number fixes it for every draw. ``C="cv"`` tunes it
    without test labels: on each labelled draw, :func:`choose_C` picks from ``grid`` by
    stratified cross-validation on the draw itself (``folds`` defaults to
    ``min(3, per_class)``); with one label a class no example can be held out, and the rule
    is the strongest penalty of the grid, whose solution is close to the limit ``C -> 0``:
    the prototype classifier ``argmax_c (mean_c - mean) . (z - mean)`` over the labelled
    features (with one label a class, ``mean_c`` is that example). The
    tuned probe also records, per draw, the best test accuracy over the grid (the oracle
    envelope of :class:`ProbeResult`). ``tol`` is the tuned probe's stopping tolerance
    (a looser one, 1e-3, halves the time on thousands of features and barely moves the
    accuracy; the fixed-``C`` probe keeps scikit-learn's default).

    Raises:
        ValueError: mismatched shapes, ``per_class`` above the smallest class, a test class
            that no training image has, ``folds`` larger than ``per_class``, no seeds.
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
    tuned = isinstance(C, str)
    if tuned and C != "cv":
        raise ValueError(f"C must be a positive number or 'cv'; got {C!r}")
    if not tuned and not (isinstance(C, (int, float)) and np.isfinite(C) and C > 0):
        raise ValueError(f"C must be a positive number or 'cv'; got {C!r}")
    missing = sorted(set(np.unique(test_y).tolist()) - set(np.unique(train_y).tolist()))
    if missing:
        raise ValueError(f"every test class must have training images to label; classes {missing} have none")
    check_positive_int(per_class, "per_class")
    if folds is None:
        folds = min(3, per_class)
    elif tuned and check_positive_int(folds, "folds") > per_class:
        raise ValueError(f"folds must be at most per_class ({per_class}) labelled images a class; got {folds}")
    grid = _check_grid(grid)
    if not (isinstance(tol, (int, float)) and np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive number; got {tol!r}")
    scaler = StandardScaler().fit(train_x)
    train_z, test_z = scaler.transform(train_x), scaler.transform(test_x)
    accs, chosen, oracle, oracle_C = [], [], [], []
    for seed in seeds:
        idx = few_labels(train_y, per_class, seed=seed)
        if not tuned:
            clf = LogisticRegression(C=C, max_iter=2000).fit(train_z[idx], train_y[idx])
            accs.append(float(np.mean(clf.predict(test_z) == test_y)))
            continue
        c = grid[0] if per_class == 1 else choose_C(train_z[idx], train_y[idx], grid, folds=folds,
                                                     seed=seed, classes=np.unique(train_y), tol=tol)[0]
        fits = _fit_path(train_z[idx], train_y[idx], grid, tol=tol)
        test_accs = [float(np.mean(f.predict(test_z) == test_y)) for f in fits]
        accs.append(test_accs[grid.index(c)])
        chosen.append(c)
        oracle.append(max(test_accs))
        oracle_C.append(grid[int(np.argmax(test_accs))])
    return ProbeResult(per_class=per_class, accuracies=tuple(accs), C=tuple(chosen),
                       oracle=tuple(oracle), oracle_C=tuple(oracle_C))


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



@_one_blas_thread
def leave_one_out_knn_accuracy(features, labels, k: int = 5, unit: bool = False) -> float:
    """k-NN accuracy of every example against all the *others* (leave-one-out), Euclidean.

    Each example gets the majority label of its ``k`` nearest other examples (ties: the
    smallest label). With ``unit`` the features are first scaled to unit length (cosine
    geometry, the one a contrastive loss trains). Needs no separate training set, so a
    monitor can score a few thousand held-out images during training.
    """
    from sklearn.neighbors import NearestNeighbors

    labels = check_labels(labels, "labels")
    features = check_features(features, "features", length=len(labels)).astype(np.float64)
    check_positive_int(k, "k")
    if k >= len(labels):
        raise ValueError(f"k must be smaller than the number of examples ({len(labels)}); got {k}")
    if unit:
        features = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    _, idx = NearestNeighbors(n_neighbors=k).fit(features).kneighbors()    # X=None: itself excluded
    _, codes = np.unique(labels, return_inverse=True)
    votes = np.apply_along_axis(np.bincount, 1, codes[idx], minlength=codes.max() + 1)
    return float(np.mean(votes.argmax(axis=1) == codes))

# --------------------------------------------------------------------------------------
# Label spreading (Chapter 7): few labels carried along a k-nearest-neighbour graph.
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NeighbourGraph:
    """A symmetric k-NN graph over training examples, normalised as ``S = D^-1/2 W D^-1/2``.

    ``S`` is a SciPy sparse matrix (n x n); ``features`` are the unit-length vectors it was
    built on (kept to place new examples on the graph); ``n_neighbors`` its k;
    ``projection`` the fitted PCA, if the vectors were projected first.
    """

    S: object
    features: np.ndarray
    n_neighbors: int
    projection: object = None

    def links(self, features) -> tuple[np.ndarray, np.ndarray]:
        """``(weights, indices)``, each (m, n_neighbors): the nearest graph nodes of ``m`` new
        examples, in the graph's geometry (unit length, projected as its nodes were), and
        their cosine similarities. Compute them once to predict for several labellings."""
        x = check_features(features, "features")
        expected = self.features.shape[1] if self.projection is None else self.projection.n_features_in_
        if x.shape[1] != expected:
            raise ValueError(f"features must have the {expected} columns the graph was built from; "
                             f"got {x.shape[1]}")
        x = _unit(x)
        if self.projection is not None:
            x = _unit(self.projection.transform(x).astype(np.float32))
        return _nearest(self.features, x, self.n_neighbors)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _similarities(distances: np.ndarray) -> np.ndarray:
    """Cosine similarity of unit vectors from their Euclidean distance, floored at 0."""
    return np.maximum(1.0 - distances ** 2 / 2.0, 0.0)


def _nearest(nodes: np.ndarray, queries: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities and indices of the ``k`` nearest ``nodes`` of each query (``None``:
    of each node, itself excluded); all vectors of unit length."""
    from sklearn.neighbors import NearestNeighbors

    distances, idx = NearestNeighbors(n_neighbors=k).fit(nodes).kneighbors(queries)
    return _similarities(distances), idx


def neighbour_graph(features, n_neighbors: int = 10, n_components: int | None = None,
                    seed: int = 0) -> NeighbourGraph:
    """The graph :func:`spread_labels` runs on: every example joined to its ``n_neighbors``
    nearest others (cosine geometry), edges weighted by their cosine similarity and made
    symmetric (``W = max(W, W^T)``), then normalised by the degrees (Zhou et al. 2004).

    With ``n_components`` the unit-length features are first projected on their leading
    principal components (randomised PCA, ``seed``) and scaled to unit length again: the
    neighbour search then costs ``n_components`` instead of the full dimension a pair.
    """
    from scipy import sparse
    from sklearn.decomposition import PCA

    x = _unit(check_features(features, "features"))
    check_positive_int(n_neighbors, "n_neighbors")
    projection = None
    if n_components is not None:
        check_positive_int(n_components, "n_components")
        if n_components > min(x.shape):
            raise ValueError(f"n_components must be at most min(examples, features) = {min(x.shape)}; "
                             f"got {n_components}")
        projection = PCA(n_components, svd_solver="randomized", random_state=seed).fit(x)
        x = _unit(projection.transform(x).astype(np.float32))
    if n_neighbors >= len(x):
        raise ValueError(f"n_neighbors must be smaller than the number of examples ({len(x)}); got {n_neighbors}")
    weights, idx = _nearest(x, None, n_neighbors)
    rows = np.repeat(np.arange(len(x)), n_neighbors)
    W = sparse.csr_matrix((weights.astype(np.float64).ravel(), (rows, idx.ravel())), shape=(len(x), len(x)))
    W = W.maximum(W.T)
    d = np.asarray(W.sum(axis=1)).ravel()
    inv_sqrt = sparse.diags(1.0 / np.sqrt(np.maximum(d, 1e-12)))
    return NeighbourGraph(S=(inv_sqrt @ W @ inv_sqrt).tocsr(), features=x,
                          n_neighbors=n_neighbors, projection=projection)


def spread_labels(graph: NeighbourGraph, labels, alpha: float = 0.8, iterations: int = 50,
                  n_classes: int | None = None) -> np.ndarray:
    """Label spreading (Zhou et al. 2004): ``F <- alpha S F + (1 - alpha) Y``, ``iterations`` times.

    ``labels`` has one entry per node of ``graph``: a class in 0..K-1, or -1 for an unlabelled
    example; ``Y`` is their one-hot matrix (zero rows for -1). Returns ``F`` (n x K), each row
    scaled to sum to 1 (an all-zero row, a node the labels never reached, stays uniform);
    ``F.argmax(1)`` are the spread labels. The iteration converges to
    ``(1 - alpha) (I - alpha S)^-1 Y`` geometrically, at rate ``alpha``.

    Raises:
        ValueError: ``labels`` of the wrong length, below -1, or with no labelled example;
            ``alpha`` outside (0, 1).
    """
    if not isinstance(graph, NeighbourGraph):
        raise ValueError(f"graph must be a NeighbourGraph (from neighbour_graph); got {type(graph).__name__}")
    y = np.asarray(labels)
    if y.shape != (graph.S.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be {graph.S.shape[0]} integers, one per node (-1: unlabelled); "
                         f"got shape {y.shape}, dtype {y.dtype}")
    if y.min() < -1 or not np.any(y >= 0):
        raise ValueError(f"labels must be -1 (unlabelled) or a class >= 0, with at least one labelled "
                         f"example; got values from {y.min()} to {y.max()}")
    check_number(alpha, "alpha", 0.0, 1.0, lo_open=True, hi_open=True)
    check_positive_int(iterations, "iterations")
    k = int(y.max()) + 1 if n_classes is None else check_positive_int(n_classes, "n_classes")
    if y.max() >= k:
        raise ValueError(f"labels must be below n_classes={k}; got {y.max()}")
    Y = np.zeros((len(y), k))
    Y[y >= 0, y[y >= 0]] = 1.0
    F = Y.copy()
    for _ in range(iterations):
        F = alpha * (graph.S @ F) + (1.0 - alpha) * Y
    total = F.sum(axis=1, keepdims=True)
    return np.where(total > 0, F / np.where(total > 0, total, 1.0), 1.0 / k)


def graph_predict(graph: NeighbourGraph, scores, features=None, links=None) -> np.ndarray:
    """Classes for new examples: the similarity-weighted mean of the spread scores ``scores``
    (from :func:`spread_labels`) of their ``graph.n_neighbors`` nearest graph nodes, argmax.
    Give the examples' ``features``, or their ``links`` (:meth:`NeighbourGraph.links`)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) != len(graph.features):
        raise ValueError(f"scores must be a ({len(graph.features)}, classes) matrix, one row per graph node; "
                         f"got shape {scores.shape}")
    if (features is None) == (links is None):
        raise ValueError("give either features or links (from NeighbourGraph.links), not both or neither")
    weights, idx = graph.links(features) if links is None else links
    return np.einsum("nk,nkc->nc", weights + 1e-12, scores[idx]).argmax(axis=1)


# --------------------------------------------------------------------------------------
# Sample quality (Chapter 4): a Fréchet distance on a domain classifier's features, and
# class coverage. The extractor is the Chapter-2 CNN trained on Fashion-MNIST, not
# Inception-v3, so the numbers are *not* comparable with published FID values.
# --------------------------------------------------------------------------------------


_FEATURE_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # classifier -> its feature extractor


def domain_features(classifier, images, batch_size: int = 500) -> np.ndarray:
    """The classifier's ``"features"`` activations for images in [0, 1], as an (N, 128) float64 array."""
    import keras  # here: the metrics above do not need TensorFlow

    images = check_images(images, "images")
    check_positive_int(batch_size, "batch_size")
    try:
        layer = classifier.get_layer("features")
    except (AttributeError, ValueError) as err:
        raise ValueError("classifier must be a keras.Model with a layer named 'features' (see "
                         f"uvbook.models.build_cnn_classifier); got {type(classifier).__name__}") from err
    extractor = _FEATURE_MODELS.get(classifier)
    if extractor is None or extractor.inputs[0] is not classifier.inputs[0]:
        extractor = keras.Model(classifier.inputs[0], layer.output)
        _FEATURE_MODELS[classifier] = extractor
    return extractor.predict(images, batch_size=batch_size, verbose=0).astype(np.float64)


def _check_stats(mu, sigma, name: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or mu.size == 0:
        raise ValueError(f"mu{name} must be a non-empty 1-D mean vector; got shape {mu.shape}")
    if sigma.shape != (mu.size, mu.size):
        raise ValueError(f"sigma{name} must be a ({mu.size}, {mu.size}) covariance matrix to match "
                         f"mu{name}; got shape {sigma.shape}")
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise ValueError(f"mu{name} and sigma{name} must be finite")
    if not np.allclose(sigma, sigma.T, rtol=1e-6, atol=1e-9):
        raise ValueError(f"sigma{name} must be symmetric")
    return mu, sigma


@_one_blas_thread
def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Chapter 4, eq. ``frechet``).

    ``||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``. The trace of
    the matrix square root is computed as ``tr((A sigma2 A)^(1/2))`` with ``A = sigma1^(1/2)``:
    a symmetric positive semi-definite matrix with the same eigenvalues as ``sigma1 sigma2``,
    so no complex parts appear and the result is exact to rounding.
    """
    mu1, sigma1 = _check_stats(mu1, sigma1, "1")
    mu2, sigma2 = _check_stats(mu2, sigma2, "2")
    if mu1.size != mu2.size:
        raise ValueError(f"both Gaussians must have the same dimension; got {mu1.size} and {mu2.size}")
    w, v = np.linalg.eigh(sigma1)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    middle = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    trace_root = float(np.sum(np.sqrt(np.clip(eig, 0.0, None))))
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_root)
    return max(value, 0.0)


def frechet_distance(features_a, features_b) -> float:
    """Fréchet distance between Gaussians fitted (mean, covariance) to two feature sets."""
    a = check_features(features_a, "features_a").astype(np.float64)
    b = check_features(features_b, "features_b").astype(np.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"features_a and features_b must have the same number of features; got "
                         f"{a.shape[1]} and {b.shape[1]}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each feature set needs at least 2 rows for a covariance; got {len(a)} and {len(b)}")
    return frechet_distance_from_stats(a.mean(0), np.cov(a, rowvar=False).reshape(a.shape[1], -1),
                                       b.mean(0), np.cov(b, rowvar=False).reshape(b.shape[1], -1))


def domain_frechet_distance(classifier, images_a, images_b) -> float:
    """Fréchet distance on the domain classifier's features between two image sets in [0, 1].

    Like FID (Heusel et al. 2017) but on the Fashion-MNIST classifier of
    :func:`uvbook.recipes.domain_classifier` instead of Inception-v3: comparable across this book's
    models, not with published FID numbers. It is biased upwards for small sets, so
    compare sets of the same size (``images_b`` may also be precomputed features).
    """
    fa = domain_features(classifier, images_a)
    fb = images_b if np.ndim(images_b) == 2 else domain_features(classifier, images_b)
    return frechet_distance(fa, fb)


@dataclass(frozen=True)
class Coverage:
    """Which classes a set of generated images falls into, by the domain classifier."""

    classes: int
    entropy_bits: float
    histogram: tuple[float, ...]
    min_share: float

    def __str__(self) -> str:
        return (f"{self.classes} of {len(self.histogram)} classes (each >= {self.min_share:.0%} of the "
                f"samples), entropy {self.entropy_bits:.2f} of {np.log2(len(self.histogram)):.2f} bits")


def class_coverage(classifier, images, min_share: float = 0.01, batch_size: int = 500) -> Coverage:
    """Class coverage of a sample set: the classes the domain classifier predicts, and how evenly.

    ``classes`` counts the classes that receive at least ``min_share`` of the samples (one
    tenth of the uniform share by default, so that a handful of stray predictions do not
    count as covering a class); ``entropy_bits`` is the entropy of the predicted-class
    histogram, log2(10) = 3.32 bits for a uniform mix, 0 for a single class. A collapsed
    generator scores low on both.
    """

    images = check_images(images, "images")
    if not 0.0 <= min_share < 1.0:
        raise ValueError(f"min_share must be in [0, 1); got {min_share!r}")
    check_positive_int(batch_size, "batch_size")
    probs = classifier.predict(images, batch_size=batch_size, verbose=0)
    counts = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
    hist = counts / counts.sum()
    nonzero = hist[hist > 0]
    entropy = float(-(nonzero * np.log2(nonzero)).sum())
    return Coverage(classes=int(np.sum(hist >= max(min_share, 1e-12))), entropy_bits=max(entropy, 0.0) + 0.0,  # + 0.0: no "-0.00"
                    histogram=tuple(float(h) for h in hist), min_share=float(min_share))


# --------------------------------------------------------------------------------------
# Reconstruction, retrieval and anomaly detection (Chapter 3, "What the codes are good for")
# --------------------------------------------------------------------------------------

def _check_same_shape(x, x_hat) -> tuple[np.ndarray, np.ndarray]:
    """Two finite real arrays of the same shape, at least one example, as float64."""
    x, x_hat = np.asarray(x), np.asarray(x_hat)
    for name, a in (("x", x), ("x_hat", x_hat)):
        if a.ndim < 2 or a.shape[0] == 0 or a.size == 0:
            raise ValueError(f"{name} must be a non-empty batch (N, ...) of images or vectors; got shape {a.shape}")
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise ValueError(f"{name} must hold real numbers; got dtype {a.dtype}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite; got {int(np.sum(~np.isfinite(a)))} NaN/inf values")
    if x.shape != x_hat.shape:
        raise ValueError(f"x_hat must have the shape of x {x.shape}; got {x_hat.shape}")
    return x.astype(np.float64), x_hat.astype(np.float64)


def pca_reconstruct(x, mean, components, k: int) -> np.ndarray:
    """Project ``x`` on the first ``k`` principal directions and map it back: ``mean + (x - mean) W^T W``.

    ``x`` is a batch of images or of flattened images; ``mean`` (d,) and ``components``
    (rows: orthonormal directions, largest variance first, e.g. scikit-learn's
    ``PCA.components_``) come from a fit on training images. Returns an array shaped like ``x``
    (Chapters 1 and 3: the optimal linear code of size ``k``).
    """
    x = np.asarray(x)
    flat = x.reshape(len(x), -1)
    mean, components = np.asarray(mean), np.asarray(components)
    if components.ndim != 2 or components.shape[1] != flat.shape[1] or mean.shape != (flat.shape[1],):
        raise ValueError(f"mean must have shape ({flat.shape[1]},) and components shape (n, {flat.shape[1]}) "
                         f"for images of {flat.shape[1]} pixels; got {mean.shape} and {components.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= len(components):
        raise ValueError(f"k must be an integer from 0 to {len(components)}; got {k!r}")
    w = components[:k]
    return (((flat - mean) @ w.T) @ w + mean).reshape(x.shape)


def reconstruction_mse(x, x_hat, per_image: bool = False):
    """Mean squared error per pixel between images ``x`` and reconstructions ``x_hat``.

    With ``per_image`` the (N,) array of each image's mean over its pixels (an anomaly
    score); otherwise their mean, a float (the chapter's "MSE per pixel").
    """
    x, x_hat = _check_same_shape(x, x_hat)
    err = np.square(x - x_hat).reshape(len(x), -1).mean(axis=1)
    return err if per_image else float(err.mean())


def psnr(x, x_hat, data_range: float = 1.0, per_image: bool = False):
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``, image by image.

    Returns the mean over images of each image's PSNR (or the (N,) array with
    ``per_image``). An exact reconstruction has infinite PSNR.
    """
    if isinstance(data_range, bool) or not isinstance(data_range, (int, float, np.number)) \
            or not np.isfinite(data_range) or data_range <= 0:
        raise ValueError(f"data_range must be a positive number (1.0 for pixels in [0, 1]); got {data_range!r}")
    mse = reconstruction_mse(x, x_hat, per_image=True)
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(float(data_range) ** 2 / mse)
    return values if per_image else float(values.mean())


def retrieval_precision_at_k(features, labels, k: int = 10, query_features=None, query_labels=None,
                             by_class: bool = False):
    """Precision@k of nearest-neighbour retrieval (Euclidean), judged by class.

    For each query, the fraction of its ``k`` nearest neighbours in ``features`` that
    share its class, averaged over queries. Without queries, every row of ``features``
    queries all the others (leave-one-out: an item never retrieves itself).

    Returns the mean precision (a float), or with ``by_class`` a pair
    ``(mean, {class: mean precision of that class's queries})``.
    """
    from sklearn.neighbors import NearestNeighbors

    labels = check_labels(labels, "labels")
    features = check_features(features, "features", length=len(labels))
    check_positive_int(k, "k")
    leave_one_out = query_features is None and query_labels is None
    if leave_one_out:
        if k > len(labels) - 1:
            raise ValueError(f"k must be at most the number of items minus one ({len(labels) - 1}) "
                             f"when every item queries the others; got {k}")
        q_x, q_y = features, labels
    else:
        if query_features is None or query_labels is None:
            raise ValueError("query_features and query_labels must be given together, or neither")
        q_y = check_labels(query_labels, "query_labels")
        q_x = check_features(query_features, "query_features", length=len(q_y))
        if q_x.shape[1] != features.shape[1]:
            raise ValueError(f"query_features must have the features' dimension {features.shape[1]}; "
                             f"got {q_x.shape[1]}")
        if k > len(labels):
            raise ValueError(f"k must be at most the number of items ({len(labels)}); got {k}")
    nn = NearestNeighbors(n_neighbors=k + int(leave_one_out), algorithm="brute").fit(features)
    _, idx = nn.kneighbors(q_x)
    if leave_one_out:
        own = np.arange(len(q_x))[:, None]
        # drop the query itself (it may tie with a duplicate, so not always in column 0)
        keep = idx != own
        keep[keep.sum(axis=1) > k, -1] = False
        idx = idx[keep].reshape(len(q_x), k)
    hits = (labels[idx] == q_y[:, None]).mean(axis=1)
    mean = float(hits.mean())
    if not by_class:
        return mean
    return mean, {int(c): float(hits[q_y == c].mean()) for c in np.unique(q_y)}


def anomaly_auc(normal_scores, anomalous_scores) -> float:
    """ROC AUC of an anomaly score: the probability that an anomaly scores above a normal item.

    ``normal_scores`` and ``anomalous_scores`` are 1-D arrays of scores (for instance,
    reconstruction errors) of normal and anomalous items; 1.0 is a perfect detector,
    0.5 chance. Ties count one half (scikit-learn's ``roc_auc_score``).
    """
    from sklearn.metrics import roc_auc_score

    arrays = []
    for name, s in (("normal_scores", normal_scores), ("anomalous_scores", anomalous_scores)):
        s = np.asarray(s)
        if s.ndim != 1 or s.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D array of scores; got shape {s.shape}")
        if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating) \
                or not np.all(np.isfinite(s)):
            raise ValueError(f"{name} must be finite real numbers; got dtype {s.dtype}")
        arrays.append(s.astype(np.float64))
    y = np.concatenate([np.zeros(len(arrays[0])), np.ones(len(arrays[1]))])
    return float(roc_auc_score(y, np.concatenate(arrays)))


# --------------------------------------------------------------------------------------
# The protocol: every number Chapters 2, 6 and 8 report about one representation.
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProtocolScores:
    """What :func:`protocol` measured on one representation; :meth:`row` is its line of a table."""

    probes: dict[int, ProbeResult]
    knn: float
    knn_k: int
    kmeans: dict[str, float]
    retrieval: float | None = None
    retrieval_k: int | None = None

    def row(self) -> dict[str, float]:
        """``{"probe 1": ..., "probe 10": ..., "5-NN": ..., "k-means ACC": ..., "k-means NMI": ...,
        "P@10": ...}`` (the probes' means; ``P@k`` only when retrieval was measured)."""
        row = {f"probe {k}": p.mean for k, p in self.probes.items()}
        row[f"{self.knn_k}-NN"] = self.knn
        row["k-means ACC"], row["k-means NMI"] = self.kmeans["acc"], self.kmeans["nmi"]
        if self.retrieval is not None:
            row[f"P@{self.retrieval_k}"] = self.retrieval
        return row


def protocol(train_x, train_y, test_x, test_y, per_class=(1, 10, 100), seeds=(0, 1, 2, 3, 4),
             C: float | str = 1.0, tol: float = 1e-4, knn_k: int = 5, kmeans_n_init: int = 10,
             retrieval_k: int | None = None) -> ProtocolScores:
    """The book's evaluation protocol (Chapter 2, "How we measure") on one representation.

    * the few-label linear probe (:func:`linear_probe`) with each of ``per_class`` labels a
      class, over ``seeds`` draws, with penalty ``C`` (a number, or ``"cv"`` to tune it without
      test labels) and solver tolerance ``tol``;
    * the k-NN accuracy with every training label (:func:`knn_accuracy`, ``knn_k`` neighbours);
    * k-means on the test set with one cluster a class (:func:`kmeans_scores`, ``kmeans_n_init``
      restarts, seed 0);
    * when ``retrieval_k`` is given, the precision@k of retrieval within the test set
      (:func:`retrieval_precision_at_k`).

    ``train_x``/``test_x`` are (examples, features) matrices of the representation.
    """
    per_class = tuple(per_class)
    if not per_class:
        raise ValueError("per_class must name at least one number of labels a class; got ()")
    probes = {k: linear_probe(train_x, train_y, test_x, test_y, per_class=k, seeds=seeds, C=C, tol=tol)
              for k in per_class}
    knn = knn_accuracy(train_x, train_y, test_x, test_y, k=knn_k)
    km = kmeans_scores(test_x, test_y, n_clusters=len(np.unique(test_y)), seed=0, n_init=kmeans_n_init)
    retrieval = None if retrieval_k is None else retrieval_precision_at_k(test_x, test_y, k=retrieval_k)
    return ProtocolScores(probes, knn, knn_k, km, retrieval, retrieval_k)


def protocol_table(representations: Mapping[str, tuple], train_y, test_y, verbose: bool = True,
                   **settings) -> tuple[dict[str, dict[str, float]], dict[tuple[str, int], ProbeResult]]:
    """:func:`protocol` on every representation of ``representations`` (name -> ``(train_x,
    test_x)``), with the same ``settings`` (:func:`protocol`'s keywords) for all.

    Returns ``(rows, probes)``: ``rows[name]`` is the representation's line of the table
    (:meth:`ProtocolScores.row`), ``probes[name, k]`` its probe with ``k`` labels a class.
    ``verbose`` prints a line a representation with the seconds it took.

    Raises:
        ValueError: ``representations`` empty or not a mapping of pairs, or anything
            :func:`protocol` refuses.
    """
    if not isinstance(representations, Mapping) or not representations:
        raise ValueError(f"representations must be a non-empty mapping of name to (train_x, test_x); "
                         f"got {type(representations).__name__} {representations!r:.80}")
    rows, probes = {}, {}
    for name, pair in representations.items():
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(f"representations[{name!r}] must be a pair (train_x, test_x); got {type(pair).__name__}")
        t0 = time.perf_counter()
        scored = protocol(pair[0], train_y, pair[1], test_y, **settings)
        rows[name] = scored.row()
        probes.update({(name, k): probe for k, probe in scored.probes.items()})
        if verbose:
            print(f"{name:44s} scored in {time.perf_counter() - t0:5.1f} s")
    return rows, probes
