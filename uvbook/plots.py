"""Figures the chapters share: image grids, loss curves, 2-D scatters by class, accuracy
against the number of labels.

Each function draws on a new Matplotlib figure and returns it, so a notebook shows
it by leaving it as the cell's last value or calling ``plt.show()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from uvbook.validate import check_features, check_images, check_labels, check_positive_int


def image_grid(images, titles: Sequence[str] | None = None, ncols: int = 10,
               size: float = 1.2, suptitle: str | None = None) -> plt.Figure:
    """Draw grey-scale images (N, H, W, 1) in [0, 1] in a grid, with optional titles."""
    images = check_images(images, "images")
    check_positive_int(ncols, "ncols")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"titles must have one entry per image ({len(images)}); got {len(titles)}")
    n = len(images)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * (1.25 if titles else 1)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i, ..., 0], cmap="gray_r", vmin=0.0, vmax=1.0)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def loss_curves(history: Mapping[str, Sequence[float]], keys: Sequence[str] | None = None,
                title: str | None = None, logy: bool = False) -> plt.Figure:
    """Plot per-epoch curves from a Keras ``History.history``-like mapping."""
    if hasattr(history, "history"):
        history = history.history
    if not isinstance(history, Mapping) or not history:
        raise ValueError(f"history must be a non-empty mapping of metric name to values; got {history!r}")
    keys = list(keys) if keys is not None else list(history)
    unknown = [k for k in keys if k not in history]
    if unknown:
        raise ValueError(f"keys must be among {sorted(history)}; got unknown {unknown}")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for k in keys:
        values = np.asarray(history[k], dtype=float)
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=k)
    ax.set_xlabel("epoch")
    if logy:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def scatter_by_class(points, labels, class_names: Sequence[str] | None = None,
                     title: str | None = None, s: float = 3.0, ax: plt.Axes | None = None,
                     legend: bool = True) -> plt.Figure:
    """Scatter 2-D points coloured by class, with a legend of class names.

    Draws into ``ax`` when given (one panel of a larger figure; ``legend=False`` leaves the
    legend to another panel), else into a new figure. Returns the figure drawn in.
    """
    labels = check_labels(labels, "labels")
    points = check_features(points, "points", length=len(labels))
    if points.shape[1] != 2:
        raise ValueError(f"points must have 2 columns; got {points.shape[1]}")
    classes = np.unique(labels)
    if class_names is not None and len(class_names) <= classes.max():
        raise ValueError(f"class_names must name every label up to {classes.max()}; got {len(class_names)} names")
    if ax is not None and not isinstance(ax, plt.Axes):
        raise ValueError(f"ax must be a matplotlib Axes or None; got {type(ax).__name__}")
    fig, ax = plt.subplots(figsize=(6.5, 5)) if ax is None else (ax.figure, ax)
    cmap = plt.get_cmap("tab10")
    for c in classes:
        sel = labels == c
        name = class_names[c] if class_names is not None else str(c)
        ax.scatter(points[sel, 0], points[sel, 1], s=s, color=cmap(int(c) % 10), label=name, alpha=0.7)
    if legend:
        ax.legend(markerscale=4, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def label_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], labels: Sequence[int],
                 ax: plt.Axes | None = None, styles: Mapping[str, dict] | None = None,
                 lines: Sequence[tuple[float, str | None, dict]] = (), ylabel: str = "test accuracy",
                 title: str | None = None) -> plt.Figure:
    """Accuracy against labelled images per class: one curve with error bars a method.

    ``curves`` maps a method's legend label to ``(means, stds)``, one value per entry of
    ``labels`` (drawn on a log axis); ``styles`` gives a curve Matplotlib keywords by its label;
    ``lines`` adds horizontal lines ``(y, legend label or None, keywords)``, for example a
    classifier trained on all labels, or chance. Draws into ``ax`` when given, else into a new
    figure; returns the figure drawn in.

    Raises:
        ValueError: labels that are not positive integers, or a curve with another number of
            means or standard deviations than ``labels``.
    """
    labels = [check_positive_int(k, "labels") for k in labels]
    if not labels:
        raise ValueError("labels must name at least one number of labels per class; got none")
    for name, (means, stds) in curves.items():
        if len(means) != len(labels) or len(stds) != len(labels):
            raise ValueError(f"curve {name!r} must have {len(labels)} means and standard deviations (one per "
                             f"entry of labels); got {len(means)} and {len(stds)}")
    if ax is not None and not isinstance(ax, plt.Axes):
        raise ValueError(f"ax must be a matplotlib Axes or None; got {type(ax).__name__}")
    fig, ax = plt.subplots(figsize=(7, 4.4)) if ax is None else (ax.figure, ax)
    styles = styles or {}
    for name, (means, stds) in curves.items():
        style = {"marker": "o", "ms": 4, "capsize": 3, **styles.get(name, {})}
        ax.errorbar(labels, means, yerr=stds, label=name, **style)
    for y, name, style in lines:
        ax.axhline(y, label=name, **{"color": "black", "ls": ":", "lw": 1, **style})
    ax.set_xscale("log")
    ax.set_xticks(labels, [str(k) for k in labels])
    ax.set_xlabel("labelled training images per class")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    if title:
        ax.set_title(title)
    return fig
