"""benchmarks/bench.py: the benchmark runs on tiny budgets, returns its structure, checks its arguments."""

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: benchmarks/ is not installed
from benchmarks import bench  # noqa: E402


def _finite_positive(x) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def tiny_result():
    # Every family, a few hundred images, under a second of training per runner, random
    # classifier features (no cached domain classifier needed): the structure, not the numbers.
    s = bench.settings_for(quick=True, budget=0.4, n_train=256, n_test=64, n_frechet=32, slice_s=0.2,
                           variants=False, classifier="untrained", evals=2)
    return bench.run(s, log=lambda *_: None)


def test_run_returns_every_family_with_finite_positive_numbers(tiny_result):
    r = tiny_result
    assert r["mode"] == "quick"
    assert set(r["families"]) == set(bench.FAMILIES)
    assert {"cpu", "cores", "tensorflow", "gpus"} <= set(r["hardware"])
    expected = {"vae": {"uvbook_vae", "cvae_tutorial", "kerasio_vae"}, "dcgan": {"uvbook_dcgan", "dcgan_tutorial"},
                "ae": {"uvbook_ae", "uvbook_ae_tfdata"}, "wgan": {"uvbook_wgan"}}
    for family, fam in r["families"].items():
        assert set(fam["runners"]) == expected[family]
        for runner in fam["runners"].values():
            assert _finite_positive(runner["images_per_s"]), runner
            assert _finite_positive(runner["trace_s"]) and runner["train_s"] >= 0.4
            assert math.isfinite(runner["final_metric"]) and runner["final_metric"] >= 0
            clocks = [h[0] for h in runner["history"]]
            assert clocks[0] == 0.0 and clocks == sorted(clocks) and clocks[-1] >= 0.4 and len(clocks) >= 2
    for family in ("vae", "dcgan", "ae"):
        for c in r["families"][family]["comparisons"]:
            for key in ("time_to_quality_ratio", "throughput_ratio", "final_quality_ratio", "trace_ratio"):
                assert _finite_positive(c[key]), (family, key, c)
            assert c["reference_seconds"] > 0
            assert (c["uvbook_seconds"] is None) == (not c["reached"])
    assert r["families"]["wgan"]["comparisons"] == []


def test_headline_keys_are_record_keys_with_finite_values(tiny_result):
    from uvbook.results import check_key

    ratios = tiny_result["ratios"]
    for key in ("bench.vae.time_to_quality_ratio", "bench.dcgan.time_to_quality_ratio",
                "bench.vae.cvae_tutorial.time_to_quality_ratio", "bench.vae.kerasio_vae.throughput_ratio",
                "bench.dcgan.dcgan_tutorial.final_quality_ratio", "bench.wgan.uvbook_wgan.images_per_s",
                "bench.ae.uvbook_ae_tfdata.vs_uvbook_ae.time_to_quality_ratio"):
        assert _finite_positive(ratios[key]), key
    for key, value in ratios.items():
        assert check_key(key) == key and math.isfinite(value)


def test_save_writes_json_and_the_results_record(tiny_result, tmp_path, monkeypatch):
    monkeypatch.setenv("UVBOOK_RESULTS_DIR", str(tmp_path / "record"))
    written = bench.save(tiny_result, tmp_path / "out" / "bench.json")
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert data["ratios"] == pytest.approx(tiny_result["ratios"])
    record = json.loads((tmp_path / "record" / "quick.json").read_text())
    key = "bench.vae.time_to_quality_ratio"
    assert record[key] == pytest.approx(tiny_result["ratios"][key])
    assert len(written) == 2
    report = bench.format_report(tiny_result)
    assert "time-to-quality ratio" in report and "cores" in report and "load average" in report


def test_time_to_quality_arithmetic():
    history = [(0.0, 1, 10.0, 0.1), (1.0, 5, 6.0, 0.1), (2.0, 9, 4.0, 0.1), (4.0, 17, 3.0, 0.1)]
    assert bench.seconds_to_reach(history, 6.0) == 1.0
    assert bench.seconds_to_reach(history, 3.5) == 4.0
    assert bench.seconds_to_reach(history, 1.0) is None
    sched = bench.eval_schedule(100.0, evals=10)
    assert sched[0] == 0.0 and sched[-1] == 100.0 and sched == sorted(sched) and 10.0 in sched


class _ClockedRunner:
    """A runner of known speed on a simulated clock: ``rate`` images a second, but ``slow_round``
    (0-based) runs at a tenth of it, as a burst of load on a shared machine would make it."""

    def __init__(self, rate, slow_round=None, slice_s=2.0):
        self.rate, self.slow_round, self.slice_s = rate, slow_round, slice_s
        self.clock, self.images, self.trace_s, self.batch_size = 0.0, 0, 0.0, 32
        self.timed = 0

    def warm_up(self):
        pass

    def train_until(self, t):
        if t - self.clock >= self.slice_s:            # a timed slice (warm-up slices are shorter)
            slow = self.timed == self.slow_round
            self.timed += 1
        else:
            slow = False
        self.images += (t - self.clock) * self.rate * (0.1 if slow else 1.0)
        self.clock = t


def test_measure_variants_gives_each_variant_its_speed_against_the_first():
    runners = {"base": _ClockedRunner(100.0), "twice": _ClockedRunner(200.0, slow_round=1),
               "half": _ClockedRunner(50.0)}
    out = bench.measure_variants(lambda v: runners[v.name], [bench.Variant(n) for n in runners], rounds=3,
                                 slice_s=2.0, log=lambda *_: None)
    assert out["base"]["ratio"] == 1.0 and out["half"]["ratio"] == pytest.approx(0.5)
    # one slow round of three: the median of the paired ratios ignores it, the mean would not
    assert out["twice"]["ratio"] == pytest.approx(2.0)
    assert out["twice"]["round_rates"] == pytest.approx([200.0, 20.0, 200.0])
    assert out["half"]["images_per_s"] == pytest.approx(50.0)


def test_measure_variants_reports_a_variant_that_fails():
    def build(v):
        if v.name == "broken":
            raise RuntimeError("no such kernel")
        return _ClockedRunner(100.0)

    out = bench.measure_variants(build, [bench.Variant("base"), bench.Variant("broken")], rounds=2, slice_s=2.0,
                                 log=lambda *_: None)
    assert out["broken"] == {"error": "RuntimeError: no such kernel"} and out["base"]["ratio"] == 1.0


@pytest.mark.parametrize("argv, words", [
    (["--budget", "-3"], ["budget", "> 0", "'-3'"]),
    (["--budget", "soon"], ["budget", "'soon'"]),
    (["--families", "vae,gan"], ["families", "'vae,gan'", "dcgan"]),
    (["--families", ""], ["families", "''"]),
    (["--n-test", "0"], ["n_test", "positive integer", "'0'"]),
    (["--n-frechet", "1"], ["n_frechet", "at least 2", "1"]),
    (["--n-train", "2.5"], ["n_train", "positive integer", "'2.5'"]),
    (["--classifier", "inception"], ["classifier", "'domain'", "'inception'"]),
    (["--variants", "--no-variants"], ["at most one", "both"]),
    (["--variants-only", "--no-variants"], ["at most one", "both"]),
    (["--fast"], ["unknown arguments", "--fast"]),
])
def test_bad_arguments_raise_value_error_naming_expected_and_given(argv, words):
    with pytest.raises(ValueError) as err:
        bench.main(["--quick", "--no-record", *argv])
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_bad_settings_raise_value_error():
    with pytest.raises(ValueError, match="unknown setting 'speed'"):
        bench.settings_for(quick=True, speed=2)
    with pytest.raises(ValueError, match="seed must be a non-negative integer; got -1"):
        bench.settings_for(quick=True, seed=-1)
    with pytest.raises(ValueError, match="precision must be one of"):
        with bench._precision("float16"):
            pass


def test_an_option_without_its_value_raises_value_error():
    with pytest.raises(ValueError, match="--budget"):
        bench.main(["--quick", "--no-record", "--budget"])
