"""Reliability: resume after an interruption, stop on divergence, report a collapsed GAN,
and trust nothing that is loaded (cache entries, checkpoints, dataset files).

The resume tests compare an interrupted-and-resumed run with an uninterrupted one of the
same seed *exactly* (``np.array_equal``): on the CPU every source of randomness is part
of the checkpoint (weights, optimizer moments and step counts, SeedGenerator states) or
is replayed (the tf.data shuffle is advanced to the resumed epoch), so there is no
tolerance to justify.
"""

import ast
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from uvbook import callbacks as cb
from uvbook import data, train
from uvbook.models.autoencoder import Autoencoder
from uvbook.models.gan import GAN, build_dcgan_discriminator, build_dcgan_generator
from uvbook.modes import set_seed
from uvbook.recipes import train_gan

RNG = np.random.default_rng(0)
IMAGES = RNG.random((32, 28, 28, 1)).astype(np.float32)


class Interrupted(RuntimeError):
    """Stands for a crash, a kill or a Ctrl-C in the middle of training."""


class InterruptAt(keras.callbacks.Callback):
    """Raise when epoch ``epoch`` (0-based) begins: epochs 0..epoch-1 are complete."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Interrupted(f"interrupted before epoch {epoch + 1}")


def _state(model):
    """Every variable of the model and of its optimizers, as NumPy arrays."""
    arrays = [v.numpy() for v in model.variables]
    for opt in cb.optimizers_of(model).values():
        arrays += [v.numpy() for v in opt.variables]
    return arrays


def _assert_same_state(a, b):
    sa, sb = _state(a), _state(b)
    assert len(sa) == len(sb)
    for x, y in zip(sa, sb):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------- autoencoder

def _ae_build():
    set_seed(0)
    model = Autoencoder.dense(4, hidden=(16,))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    return model


def _ae_train(extra=(), epochs=4):
    """Like chapter3_model's training: NumPy arrays, Keras' shuffle, the helpers' callbacks."""
    def fit(model, backup):
        return model.fit(IMAGES, epochs=epochs, batch_size=8, shuffle=True, verbose=0,
                         callbacks=[*extra, *cb.resumable(backup)])
    return fit


KEY = {"model": "tiny dense ae", "epochs": 4}


@pytest.fixture(scope="module")
def ae_refs(tmp_path_factory):
    """Uninterrupted reference runs, trained once: {epochs: (model, history)} for 2 and 4 epochs."""
    folder = tmp_path_factory.mktemp("ae_refs")
    return {n: train.train_or_load("ae", _ae_build, _ae_train(epochs=n), {**KEY, "epochs": n}, folder=folder,
                                   verbose=False) for n in (2, 4)}


def test_an_interrupted_autoencoder_resumes_to_the_same_weights(tmp_path, capsys, ae_refs):
    ref, ref_hist = ae_refs[4]
    run = tmp_path / "run"
    with pytest.raises(Interrupted):
        train.train_or_load("ae", _ae_build, _ae_train([InterruptAt(2)]), KEY, folder=run, verbose=False)
    (backup,) = run.glob("ae-*.backup")
    assert sorted(p.name for p in backup.iterdir()) == ["epoch-0002.json", "epoch-0002.npz"]
    assert not list(run.glob("*.keras")), "an interrupted run caches nothing"
    model, hist = train.train_or_load("ae", _ae_build, _ae_train(), KEY, folder=run, verbose=False)
    assert "resuming after epoch 2" in capsys.readouterr().out
    _assert_same_state(model, ref)
    assert hist == ref_hist and len(hist["loss"]) == 4
    assert not backup.exists(), "the backup is removed once the model is cached"


def test_a_run_killed_after_its_last_epoch_is_cached_without_training_again(tmp_path, ae_refs):
    """The last checkpoint is complete but the cache write never happened: resume runs 0 epochs."""
    ref, ref_hist = ae_refs[2]

    class KillAtEnd(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            raise Interrupted("killed before the cache was written")

    with pytest.raises(Interrupted):
        train.train_or_load("ae", _ae_build, _ae_train([KillAtEnd()], epochs=2), KEY, folder=tmp_path, verbose=False)
    model, hist = train.train_or_load("ae", _ae_build, _ae_train(epochs=2), KEY, folder=tmp_path, verbose=False)
    _assert_same_state(model, ref)
    assert hist == ref_hist


def test_a_corrupt_checkpoint_is_not_used(tmp_path, capsys, ae_refs):
    ref, _ = ae_refs[4]
    with pytest.raises(Interrupted):
        train.train_or_load("ae", _ae_build, _ae_train([InterruptAt(3)]), KEY, folder=tmp_path, verbose=False)
    (arrays,) = tmp_path.glob("ae-*.backup/epoch-0003.npz")
    arrays.write_bytes(arrays.read_bytes()[:-50])  # truncated
    expected = json.loads(arrays.with_suffix(".json").read_text())["sha256"]
    model, hist = train.train_or_load("ae", _ae_build, _ae_train(), KEY, folder=tmp_path, verbose=False)
    out = capsys.readouterr().out
    assert f"checkpoint {arrays.with_suffix('.json')} is unusable" in out and expected in out
    assert f"no usable checkpoint in {arrays.parent}; training from the first epoch" in out
    assert "resuming" not in out
    _assert_same_state(model, ref)  # trained from scratch, deterministically
    assert len(hist["loss"]) == 4


# --------------------------------------------------------------------------- GAN

def _gan_build(d_lr=1e-3, g_lr=1e-3):
    def build():
        gan = GAN(build_dcgan_generator(8, filters=(8, 4)), build_dcgan_discriminator(filters=(4, 8)), 8, seed=0)
        gan.compile(d_optimizer=keras.optimizers.Adam(d_lr, beta_1=0.5),
                    g_optimizer=keras.optimizers.Adam(g_lr, beta_1=0.5))
        return gan
    return build


def _train_gan(folder, callbacks=(), build=None, epochs=3, **kwargs):
    return train_gan("gan", build or _gan_build(), IMAGES, epochs, 8, {"model": "tiny dcgan"},
                     callbacks=callbacks, folder=folder, verbose=False, **kwargs)


@pytest.fixture(scope="module")
def gan_ref(tmp_path_factory):
    """An uninterrupted 3-epoch run through train_gan, trained once."""
    return _train_gan(tmp_path_factory.mktemp("gan_ref"))


def test_an_interrupted_gan_resumes_to_the_same_weights_and_optimizer_states(tmp_path, gan_ref):
    """Both optimizers, the noise SeedGenerator and the tf.data shuffle resume: the result is exact."""
    ref, ref_hist = gan_ref
    with pytest.raises(Interrupted):
        _train_gan(tmp_path, callbacks=[InterruptAt(1)])
    gan, hist = _train_gan(tmp_path)
    _assert_same_state(gan, ref)
    assert int(gan.d_optimizer.iterations) == int(ref.d_optimizer.iterations) == 12
    assert {k: v for k, v in hist.items() if k != "elapsed"} == {k: v for k, v in ref_hist.items() if k != "elapsed"}
    assert len(hist["elapsed"]) == 3 and np.all(np.diff(hist["elapsed"]) > 0), "elapsed keeps counting"
    assert hist["d_collapsed"] == [0.0, 0.0, 0.0]


def test_keras_backup_and_restore_brings_back_a_gans_optimizers_built_at_compile(tmp_path):
    """GAN.compile builds both optimizers, so Keras' own callback restores their state too.

    (An optimizer built at its first step instead is skipped, with a warning.) EpochCheckpoint
    stays for what the Keras callback does not do: refuse a corrupt or mismatched
    checkpoint and fall back to an older one, replay a tf.data shuffle, stop on NaN, and
    restore the noise generator's state (asserted last: the Keras callback leaves it behind).
    """
    build = _gan_build()
    set_seed(0)
    gan = build()
    with pytest.raises(Interrupted):
        gan.fit(IMAGES, batch_size=8, epochs=3, verbose=0,
                callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path)), InterruptAt(1)])
    set_seed(0)
    again = build()
    assert int(again.d_optimizer.iterations) == 0
    again.fit(IMAGES, batch_size=8, epochs=1, verbose=0,  # epoch 1 is in the backup: nothing to run
              callbacks=[keras.callbacks.BackupAndRestore(str(tmp_path))])
    assert int(gan.d_optimizer.iterations) == int(again.d_optimizer.iterations) == 4
    for name in ("d_optimizer", "g_optimizer"):
        for x, y in zip(getattr(gan, name).variables, getattr(again, name).variables, strict=True):
            np.testing.assert_array_equal(x.numpy(), y.numpy())
    for x, y in zip(gan.generator.weights + gan.discriminator.weights,
                    again.generator.weights + again.discriminator.weights, strict=True):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    # ...but not the state of the GAN's noise SeedGenerator, so the resumed run would draw
    # other latent vectors than the uninterrupted one: EpochCheckpoint restores it.
    assert not np.array_equal(gan.seed_generator.state.numpy(), again.seed_generator.state.numpy())


def test_the_guards_and_checkpoints_do_not_change_the_numbers(gan_ref, ae_refs):
    """A run through the helpers equals a plain fit with the same seed, variable for variable."""
    from uvbook.data import make_pipeline

    set_seed(0)
    plain = _gan_build()()
    plain.fit(make_pipeline(IMAGES, batch_size=8, seed=0), epochs=3, verbose=0)
    _assert_same_state(gan_ref[0], plain)
    plain = _ae_build()
    plain.fit(IMAGES, epochs=2, batch_size=8, shuffle=True, verbose=0)
    _assert_same_state(ae_refs[2][0], plain)


def test_only_a_train_callable_with_a_backup_parameter_gets_the_backup_folder(tmp_path):
    seen = {}

    def with_backup(model, backup=None):
        seen["backup"] = backup
        return {}

    def with_epochs(model, epochs=3):
        seen["epochs"] = epochs
        return {}

    train.train_or_load("a", _ae_build, with_backup, {"k": 1}, folder=tmp_path, verbose=False)
    train.train_or_load("b", _ae_build, with_epochs, {"k": 1}, folder=tmp_path, verbose=False)
    assert seen["backup"].name.startswith("a-") and seen["backup"].suffix == ".backup"
    assert seen["epochs"] == 3


# --------------------------------------------------------------------------- divergence

class InjectAt(keras.callbacks.Callback):
    """Fault injection: ``fault(model)`` runs just before step ``step`` of epoch ``epoch`` (both 0-based)."""

    def __init__(self, epoch, step, fault):
        super().__init__()
        self.at, self.fault, self.epoch = (epoch, step), fault, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            self.fault(self.model)


def _nan_kernel(model):
    """NaN in the decoder's output layer. (A NaN earlier in the network can be hidden from the
    loss: on this CPU ReLU maps NaN to 0, so the loss stays finite while the gradient is NaN;
    the end-of-epoch weight check catches that case, see the tests below.)"""
    kernel = model.decoder.get_layer("dense_out").kernel
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))


def _huge_learning_rate(model):
    model.optimizer.learning_rate.assign(1e30)


def _assert_checkpoint_of_epoch_2_kept(tmp_path, backup, healthy):
    """The backup holds exactly the state after epoch 2 of a healthy run, and nothing was cached."""
    assert sorted(p.name for p in backup.iterdir()) == ["epoch-0002.json", "epoch-0002.npz"]
    assert not list(tmp_path.glob("*.keras")), "a diverged model is never cached"
    with np.load(backup / "epoch-0002.npz", allow_pickle=False) as npz:
        for i, v in enumerate(healthy.variables):
            np.testing.assert_array_equal(npz[f"model/{i:05d}"], v.numpy())


def test_a_nan_loss_stops_training_at_once_and_keeps_the_last_good_checkpoint(tmp_path, ae_refs):
    with pytest.raises(cb.TrainingDiverged) as err:
        train.train_or_load("ae", _ae_build, _ae_train([InjectAt(2, 1, _nan_kernel)]), KEY, folder=tmp_path,
                            verbose=False)
    message = str(err.value)
    (backup,) = tmp_path.glob("ae-*.backup")
    assert "training diverged at epoch 3 of 4, step 2 of 4: loss = nan, mse = nan" in message, message
    assert "likely cause is a learning rate too high (optimizer Adam learning_rate=0.01)" in message
    assert f"checkpoint of the last complete epoch (2) is kept in {backup}" in message
    _assert_checkpoint_of_epoch_2_kept(tmp_path, backup, ae_refs[2][0])


def test_a_learning_rate_of_1e30_is_stopped_in_its_epoch_and_named(tmp_path, ae_refs):
    """With Adam at 1e30 this autoencoder's weights overflow to inf while its loss stays finite
    (the sigmoid saturates): the end-of-epoch weight check catches it before the checkpoint."""
    with pytest.raises(cb.TrainingDiverged) as err:
        train.train_or_load("ae", _ae_build, _ae_train([InjectAt(2, 1, _huge_learning_rate)]), KEY,
                            folder=tmp_path, verbose=False)
    message = str(err.value)
    (backup,) = tmp_path.glob("ae-*.backup")
    assert re.search(r"training diverged at epoch 3 of 4, (step \d of 4: loss = |at its end: the weights)",
                     message), message
    assert "(optimizer Adam learning_rate=1e+30)" in message
    _assert_checkpoint_of_epoch_2_kept(tmp_path, backup, ae_refs[2][0])


def test_a_gan_with_a_huge_learning_rate_diverges_in_its_first_epoch(tmp_path):
    with pytest.raises(cb.TrainingDiverged) as err:
        _train_gan(tmp_path, build=_gan_build(d_lr=1e30, g_lr=1e30))
    message = str(err.value)
    # D's update with lr 1e30 comes first in the step, so G's loss on the new D is already NaN
    assert re.search(r"at epoch 1 of 3, step 1 of 4: .*g_loss = nan", message), message
    assert "d_optimizer Adam learning_rate=1e+30, g_optimizer Adam learning_rate=1e+30" in message
    assert "No epoch completed, so no checkpoint was written" in message
    assert not list(tmp_path.glob("*.keras"))


class PoisonWeights(keras.callbacks.Callback):
    """Fault injection: after the last step of epoch ``epoch`` a kernel becomes NaN (the loss was finite)."""

    def __init__(self, epoch):
        super().__init__()
        self.target, self.epoch = epoch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch == self.target and batch == self.params["steps"] - 1:
            kernel = self.model.encoder.layers[-1].kernel
            kernel.assign(np.full(kernel.shape, np.nan, np.float32))


def test_nan_weights_with_a_finite_loss_are_caught_before_they_are_checkpointed(tmp_path):
    with pytest.raises(cb.TrainingDiverged, match=r"epoch 2 of 4, at its end: the weights became non-finite "
                                                  r"\(.*kernel.*\) while the losses were finite"):
        train.train_or_load("ae", _ae_build, _ae_train([PoisonWeights(1)]), KEY, folder=tmp_path, verbose=False)
    (backup,) = tmp_path.glob("ae-*.backup")
    assert sorted(p.name for p in backup.iterdir()) == ["epoch-0001.json", "epoch-0001.npz"]


def test_train_or_load_never_caches_non_finite_weights(tmp_path):
    def poisoned(model):
        w = model.encoder.layers[-1].kernel
        w.assign(np.full(w.shape, np.inf, np.float32))
        return {}

    with pytest.raises(cb.TrainingDiverged, match="non-finite weights .*not caching it"):
        train.train_or_load("ae", _ae_build, poisoned, KEY, folder=tmp_path, verbose=False)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- collapse

def _feed(guard, values, epoch=0):
    """Drive a guard with the running means Keras logs for per-step ``values``; return the epoch logs."""
    guard.on_train_begin()
    guard.on_epoch_begin(epoch)
    for step, _ in enumerate(values):
        guard.on_train_batch_end(step, {"d_fake": np.float32(np.mean(values[: step + 1]))})
    logs = {}
    guard.on_epoch_end(epoch, logs)
    return logs


def test_collapse_guard_reads_each_steps_value_from_the_running_means(recwarn):
    values = [0.4, 0.3] + [0.001] * 9 + [0.5] + [0.002] * 10
    guard = cb.CollapseGuard(patience=10)
    with pytest.warns(cb.GANCollapseWarning, match=r"stayed below 0.01 for 10 consecutive steps "
                                                   r"\(epoch 1, step 22\)"):
        logs = _feed(guard, values)
    assert guard.collapsed_at == (1, 22) and logs == {"d_collapsed": 1.0}
    healthy = cb.CollapseGuard(patience=10)
    assert _feed(healthy, [0.001] * 9 + [0.3] + [0.001] * 9) == {"d_collapsed": 0.0}
    assert healthy.collapsed_at is None
    with pytest.raises(cb.GANCollapsed, match="discriminator has won completely"):
        _feed(cb.CollapseGuard(patience=3, action="raise"), [0.0] * 3)


def test_a_gan_whose_discriminator_wins_is_reported_as_collapsed(tmp_path):
    """Fault injection: a frozen generator (learning rate 0) against a fast discriminator."""
    with pytest.warns(cb.GANCollapseWarning, match="discriminator has won completely"):
        _, hist = _train_gan(tmp_path, build=_gan_build(d_lr=0.05, g_lr=0.0), epochs=3, collapse_patience=4)
    assert hist["d_collapsed"][-1] == 1.0 and hist["d_fake"][-1] < 0.01


# --------------------------------------------------------------------------- loading trusts nothing

def _tiny_run(tmp_path, tiny_job):
    build, fit, calls = tiny_job
    return calls, lambda: train.train_or_load("tiny", build, fit, {"k": 1}, folder=tmp_path, verbose=False)


def test_a_cache_entry_whose_hash_does_not_match_is_retrained_naming_path_and_hashes(tmp_path, capsys, tiny_job):
    calls, run = _tiny_run(tmp_path, tiny_job)
    run()
    (path,) = tmp_path.glob("tiny-*.keras")
    meta = json.loads(path.with_suffix(".json").read_text())
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF  # one flipped byte, same length
    path.write_bytes(bytes(blob))
    actual = train.sha256(path)
    run()
    out = capsys.readouterr().out
    assert calls == ["build", "build"]
    assert f"cache entry {path} is unusable (its SHA-256 is {actual}, but" in out and meta["sha256"] in out
    assert json.loads(path.with_suffix(".json").read_text())["sha256"] == train.sha256(path) != actual


@pytest.mark.parametrize("damage", ["truncated record", "record of another key", "record missing"])
def test_a_half_written_or_mismatched_cache_entry_is_retrained(tmp_path, damage, tiny_job):
    calls, run = _tiny_run(tmp_path, tiny_job)
    run()
    (path,) = tmp_path.glob("tiny-*.keras")
    record = path.with_suffix(".json")
    if damage == "truncated record":
        record.write_text(record.read_text()[:40])
    elif damage == "record of another key":
        meta = json.loads(record.read_text())
        record.write_text(json.dumps({**meta, "digest": "0" * 64}))
    else:
        record.unlink()
    run()
    assert calls == ["build", "build"]
    assert json.loads(record.read_text())["sha256"] == train.sha256(path)


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"old")

    def failing(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        train.atomic_write(target, failing, suffix=".keras")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_a_tampered_mnist_npz_is_refused_naming_path_and_expected_hash(tmp_path, monkeypatch):
    fake = tmp_path / "mnist.npz"
    np.savez(fake, x_train=np.zeros((1, 28, 28), np.uint8))
    monkeypatch.setenv("UVBOOK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.warns(UserWarning) as warned:
        assert data._find_verified_npz() is None
    text = " ".join(str(w.message) for w in warned)
    assert str(fake) in text and data.MNIST_NPZ_SHA256 in text and "refusing" in text


def _calls(name: str):
    """(file, line, object, keywords) of every call ``object.name(...)`` in the uvbook package."""
    root = Path(__file__).resolve().parents[2] / "uvbook"
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name:
                owner = ast.unparse(node.func.value)
                yield path.name, node.lineno, owner, {k.arg: k.value for k in node.keywords}


def _is(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def test_every_load_in_the_package_refuses_code_and_pickles():
    np_loads = [(f, n, kw) for f, n, owner, kw in _calls("load") if owner in ("np", "numpy")]
    assert {f for f, _, _ in np_loads} >= {"data.py", "callbacks.py"}
    for f, n, kw in np_loads:
        assert _is(kw.get("allow_pickle"), False), f"{f}:{n} calls np.load without allow_pickle=False"
    models = [(f, n, owner, kw) for f, n, owner, kw in _calls("load_model")
              if owner.split(".")[-1] in ("models", "saving")]  # keras.models / keras.saving, not ours
    assert models
    for f, n, _, kw in models:
        assert _is(kw.get("safe_mode"), True), f"{f}:{n} calls load_model without safe_mode=True"
