"""How `make test` shares its first pytest run between two pytest-xdist workers.

`make test` runs ``pytest -n 2 --dist loadgroup -p tests.schedule`` over the unit tests
and the notebooks (quick mode), then a second, plain pytest over the results appendix and
the site tests, which read what every chapter wrote. This plugin puts every item of the
first run into one of two lanes, one lane a worker, and orders each lane.

A chapter loads what earlier chapters made: models from the model cache (Chapter 4 loads
Chapter 2's classifier and Chapter 3's autoencoder; Chapter 6 those, Chapter 4's DCGAN and Chapter 5's VAE;
Chapters 7 and 8 Chapter 6's encoder, Chapter 7 also Chapter 5's VAE) and numbers from the results record (Chapter 6
quotes Chapter 1; Chapter 7 quotes Chapter 6). The lanes keep each such pair in order:
either in one lane, or with the later chapter far enough down its lane (after the unit
tests) that the earlier one has finished. Were the order broken the book would still be
right, only slower: a chapter that misses a cached model trains it itself. The lanes are
balanced on the notebooks' quick-mode times in ``book/_runtimes.json``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

UNIT_TESTS = "<unit tests>"
LANES: dict[str, tuple[str, ...]] = {
    "lane-a": ("02_core_concepts", "03_autoencoders", "04_gans", "06_recognition",
               "07_semisupervised", "08_trends", "appendix_errata"),
    "lane-b": ("05_vaes", "01_background", UNIT_TESTS, "04b_training_gans", "appendix_distribute"),
}
LATER = ("appendix_results",)  # reads every chapter's numbers: the second run executes it


def _place(item: pytest.Item) -> tuple[str, int]:
    """The lane of an item and its position in that lane."""
    path = Path(str(item.path))
    if path.suffix != ".ipynb":
        name = UNIT_TESTS
    elif path.stem in LATER:
        raise pytest.UsageError(
            f"{path.name} reads what every chapter recorded: run it after this run, "
            "as `make test` does, not in it")
    else:
        name = path.stem
    for lane, names in LANES.items():
        if name in names:
            return lane, names.index(name)
    raise pytest.UsageError(
        f"tests/schedule.py has no lane for the notebook {path.name}: add it to LANES "
        f"after the chapters whose models or numbers it loads (lanes: {LANES})")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the items lane by lane, keeping pytest's order within a notebook or module.

    It must run before pytest-xdist's own hook of the same name, which reads the
    ``xdist_group`` marks into the test ids that ``--dist loadgroup`` groups by: run after
    it, the marks are ignored and the workers take the items one by one, in any lane.
    """
    placed = {id(item): _place(item) for item in items}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(placed[id(item)][0]))
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (*placed[id(item)], order[id(item)]))
