"""uvbook.results: the results record (location, round trip, merge, validation, CLI)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from uvbook import results


@pytest.fixture
def record_dir(tmp_path, monkeypatch):
    """A private results folder through UVBOOK_RESULTS_DIR, in quick mode."""
    folder = tmp_path / "record"
    monkeypatch.setenv(results.RESULTS_DIR_ENV, str(folder))
    monkeypatch.setenv("UVBOOK_QUICK", "1")
    return folder


def test_round_trip_and_merge(record_dir):
    path = results.record("ch3.conv_ae.code32.test_mse", 0.0087, "10,000 test images")
    assert path == record_dir / "quick.json"
    results.record("ch1.kmeans.pixels.acc", np.float32(0.4921))      # NumPy scalars are accepted
    results.record("ch3.conv_ae.code32.test_mse", 0.0086)             # overwritten, the rest kept
    values = results.load()
    assert values == {"ch1.kmeans.pixels.acc": pytest.approx(0.4921, abs=1e-7),
                      "ch3.conv_ae.code32.test_mse": 0.0086}
    # the old note described the old value, so re-recording without one drops it
    assert results.load_meta()["notes"] == {}
    assert results.load("full") == {}                                  # modes never mix
    raw = json.loads(path.read_text())
    assert raw["ch3.conv_ae.code32.test_mse"] == 0.0086 and "_meta" in raw


def test_record_numbers_writes_all_with_their_notes_and_prints_them(record_dir, capsys):
    results.record("ch1.kmeans.pixels.acc", 0.5, "old note")
    results.record_numbers({"ch1.kmeans.pixels.acc": (np.float64(0.49), None),
                            "ch1.probe10.pixels.mean": (0.7, "10 labels a class")})
    assert results.load() == {"ch1.kmeans.pixels.acc": 0.49, "ch1.probe10.pixels.mean": 0.7}
    assert results.load_meta()["notes"] == {"ch1.probe10.pixels.mean": "10 labels a class"}
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["ch1.kmeans.pixels.acc   0.4900", "ch1.probe10.pixels.mean 0.7000"]
    assert "2 numbers recorded" in lines[2]


@pytest.mark.parametrize("numbers, message", [
    ({"ch1.a": 0.5}, r"must be a pair \(value, reference\)"),
    ({"ch1.a": (0.5, None), "ch1.b": (float("nan"), None)}, "finite"),
    ({"ch1.a": (0.5, 3)}, "reference of 'ch1.a' must be a string"),
    ({"Bad Key": (0.5, None)}, "key"),
    ([("ch1.a", (0.5, None))], "must be a mapping"),
])
def test_record_numbers_refuses_bad_input_and_writes_nothing(record_dir, numbers, message):
    with pytest.raises(ValueError, match=message):
        results.record_numbers(numbers)
    assert not (record_dir / "quick.json").exists()


def test_notes_are_kept_per_key(record_dir):
    results.record("ch1.pca32.test_mse", 0.0151, "fit on 60,000 training images")
    results.record("ch1.kmeans.pixels.nmi", 0.52)
    assert results.load_meta()["notes"] == {"ch1.pca32.test_mse": "fit on 60,000 training images"}


def test_write_is_atomic_and_leaves_no_temporary_files(record_dir):
    for i in range(5):
        results.record(f"ch6.probe10.rep{i}.mean", 0.1 * i)
    names = sorted(p.name for p in record_dir.iterdir())
    assert names == [".quick.json.lock", "quick.json"]
    assert len(results.load()) == 5


def test_a_failed_write_keeps_the_old_file(record_dir, monkeypatch):
    results.record("ch1.kmeans.pixels.acc", 0.49)
    before = (record_dir / "quick.json").read_text()

    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(results.json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        results.record("ch1.kmeans.pixels.nmi", 0.52)
    assert (record_dir / "quick.json").read_text() == before
    assert [p.name for p in record_dir.iterdir() if p.suffix == ".tmp"] == []


@pytest.mark.parametrize("key", ["", "ch1", "Ch1.kmeans", "ch1..acc", "ch1.kmeans.", "1ch.acc",
                                 "ch1.k-means.acc", "ch1.kmeans acc", "ch1._x", None, 3])
def test_bad_keys_raise(record_dir, key):
    with pytest.raises(ValueError, match="dotted lowercase identifier"):
        results.record(key, 0.5)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float64("nan"), "0.5", None,
                                   True, np.array([0.5]), [0.5]])
def test_bad_values_raise(record_dir, value):
    with pytest.raises(ValueError, match="finite real number"):
        results.record("ch1.kmeans.pixels.acc", value)
    assert not (record_dir / "quick.json").exists()


def test_bad_reference_and_mode_raise(record_dir):
    with pytest.raises(ValueError, match="reference must be a string"):
        results.record("ch1.kmeans.pixels.acc", 0.5, reference=3)
    with pytest.raises(ValueError, match="mode must be one of"):
        results.load("fast")


def test_a_corrupt_record_is_refused_not_overwritten(record_dir):
    record_dir.mkdir(parents=True)
    (record_dir / "quick.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable results record"):
        results.record("ch1.kmeans.pixels.acc", 0.5)
    assert (record_dir / "quick.json").read_text() == "{not json"


def test_record_run_writes_time_and_hardware(record_dir):
    results.record_run("ch3", 12.5, cpu_seconds=30.0)
    values = results.load()
    assert values == {"ch3.runtime_s": 12.5, "ch3.cpu_s": 30.0}
    run = results.load_meta()["runs"]["ch3"]
    assert run["mode"] == "quick" and run["runtime_s"] == 12.5 and run["cores"] == os.cpu_count()
    assert isinstance(run["cpu"], str) and run["cpu"] and run["python"]
    for bad in ("Chapter 3", "ch3.x", ""):
        with pytest.raises(ValueError, match="chapter must be"):
            results.record_run(bad, 1.0)
    for bad in (-1.0, math.nan):
        with pytest.raises(ValueError, match="seconds"):
            results.record_run("ch3", bad)


def test_table_puts_published_numbers_beside_the_record(record_dir):
    results.record("ch1.kmeans.pixels.acc", 0.4921, "10,000 test images")
    results.record("ch6.probe10.vae.mean", 0.75)
    df = results.table()
    assert list(df.columns) == ["key", "value", "published", "source", "note"]
    assert list(df["key"]) == sorted(df["key"])
    assert set(results.PUBLISHED) <= set(df["key"])
    row = df.set_index("key").loc["ch1.kmeans.pixels.acc"]
    assert row["value"] == pytest.approx(0.4921) and row["published"] == 0.47
    assert "DEC-keras" in row["source"] and row["note"] == "10,000 test images"
    vae = df.set_index("key").loc["ch6.probe10.vae.mean"]
    assert vae["value"] == 0.75 and math.isnan(vae["published"]) and vae["source"] == ""
    dec = df.set_index("key").loc["published.dec.acc"]
    assert math.isnan(dec["value"]) and dec["published"] == 0.62


def test_published_numbers_are_well_formed():
    expected = {"ch1.kmeans.pixels.acc": 0.47, "ch1.kmeans.pixels.nmi": 0.51, "published.ae_kmeans.acc": 0.61,
                "published.dec.acc": 0.62, "published.n2d.acc": 0.672, "ch2.cnn.test_acc": 0.92}
    for key, value in expected.items():
        assert results.PUBLISHED[key][0] == value
    for key, (value, source) in results.PUBLISHED.items():
        results.check_key(key)
        assert math.isfinite(value) and isinstance(source, str) and len(source) > 20
    assert "0.91-0.93" in results.PUBLISHED["ch2.cnn.test_acc"][1]


def test_location_from_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(results.RESULTS_DIR_ENV, str(tmp_path / "elsewhere"))
    monkeypatch.delenv("UVBOOK_QUICK", raising=False)
    assert results.results_path() == tmp_path / "elsewhere" / "full.json"
    assert results.results_path("quick") == tmp_path / "elsewhere" / "quick.json"


def test_location_from_the_nearest_config_yml(tmp_path, monkeypatch):
    monkeypatch.delenv(results.RESULTS_DIR_ENV, raising=False)
    monkeypatch.setenv("UVBOOK_QUICK", "1")
    (tmp_path / "_config.yml").write_text("title: outer\n")
    (tmp_path / "_quick" / "book").mkdir(parents=True)
    (tmp_path / "_quick" / "_config.yml").write_text("title: inner\n")
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")                  # `make book`: book/ under the repository
    assert results.results_path() == tmp_path / "_build" / "results" / "quick.json"
    monkeypatch.chdir(tmp_path / "_quick" / "book")       # `make test`: the nearest _config.yml wins
    results.record("ch1.kmeans.pixels.acc", 0.45)
    assert (tmp_path / "_quick" / "_build" / "results" / "quick.json").is_file()
    assert not (tmp_path / "_build").exists()


def test_location_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(results.RESULTS_DIR_ENV, raising=False)
    monkeypatch.delenv("UVBOOK_QUICK", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(results, "find_book_root", lambda start=None: None)
    assert results.results_path() == tmp_path / "home" / ".cache" / "uvbook" / "results" / "full.json"


def test_find_book_root_walks_upwards(tmp_path):
    (tmp_path / "_config.yml").write_text("title: t\n")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert results.find_book_root(deep) == tmp_path


def test_cli_prints_the_table_and_says_when_there_is_no_record(record_dir, capsys):
    assert results.main(["--mode", "full"]) == 1
    out = capsys.readouterr().out
    assert "No results record for full mode yet" in out and "make book" in out
    results.record("ch1.kmeans.pixels.acc", 0.4921)
    results.record_run("ch1", 42.0)
    assert results.main([]) == 0                          # the current mode: quick
    out = capsys.readouterr().out
    assert "quick mode" in out and "ch1.kmeans.pixels.acc" in out and "0.4921" in out and "0.47" in out
    assert "ch1: 42 s on" in out


def test_cli_through_python_dash_m(record_dir):
    results.record("ch5.vae.test_elbo_nats", -250.25)
    env = {**os.environ, results.RESULTS_DIR_ENV: str(record_dir)}
    done = subprocess.run([sys.executable, "-m", "uvbook", "results", "--mode", "quick"],
                          capture_output=True, text=True, env=env, check=False,
                          cwd=Path(results.__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    assert "ch5.vae.test_elbo_nats" in done.stdout and "-250.2" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "uvbook", "results", "--mode", "fast"],
                         capture_output=True, text=True, env=env, check=False)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


@pytest.fixture
def glued(monkeypatch):
    """What results.glue hands to MyST-NB's glue: name -> (value, display)."""
    import myst_nb

    calls = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.update({name: (value, display)}))
    return calls


def test_glue_hands_a_plain_number_to_myst_nb_returns_nothing_and_rejects_bad_input(glued):
    # returning nothing: a cell that ends with glue(...) would otherwise print the number on the page
    assert results.glue("ch9_acc", np.float32(0.5)) is None
    assert results.glue("n_images", np.int64(60000)) is None
    assert glued["ch9_acc"] == (0.5, False) and type(glued["ch9_acc"][0]) is float
    assert glued["n_images"] == (60000, False) and type(glued["n_images"][0]) is int
    for bad_name in ("", "9lives", "a b", None):
        with pytest.raises(ValueError, match="name must be"):
            results.glue(bad_name, 1.0)
    for bad_value in (float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="must be a finite real number"):
            results.glue("x", bad_value)


def test_glue_words_hands_markdown_to_myst_nb_and_rejects_bad_input(glued):
    assert results.glue_words("ch6_best_name", "SimCLR features") is None
    assert glued["ch6_best_name"][0].data == "SimCLR features" and glued["ch6_best_name"][1] is False
    for bad_name, bad_text in [("6x", "a"), ("ok", ""), ("ok", "two\nlines"), ("ok", 3.0)]:
        with pytest.raises(ValueError, match="name must|text must"):
            results.glue_words(bad_name, bad_text)
