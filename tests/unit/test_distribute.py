"""Data-parallel training on two logical CPU devices matches single-device training.

Logical devices must be configured before TensorFlow initialises its runtime, which
any earlier test in the same process has already done, so the training runs in a
fresh Python subprocess that prints its measurements as JSON (appendix "Scaling out
with tf.distribute").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
from uvbook.models.autoencoder import Autoencoder
from uvbook.modes import set_seed
from uvbook.layers import num_replicas, replica_scaled

devices = [d.name for d in tf.config.list_logical_devices("CPU")]


class PlainMeanAE(Autoencoder):
    # The keras.io idiom: differentiate the batch mean as it is, not replica_scaled.

    def train_step(self, data):
        x = self._images_of(data)
        with tf.GradientTape() as tape:
            loss, mse, penalty = self._compute_losses(x, training=True)
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return self._update(loss, mse, penalty)


x = np.random.default_rng(0).random((256, 28, 28, 1)).astype("float32")


def train(strategy, n_images, epochs, loss_scale_factor=None, cls=Autoencoder):
    with strategy.scope():
        set_seed(0)
        model = cls.dense(8, hidden=(32,))
        model.compile(optimizer=keras.optimizers.SGD(0.5, loss_scale_factor=loss_scale_factor))
    before = [w.numpy() for w in model.trainable_weights]
    history = model.fit(x[:n_images], epochs=epochs, batch_size=64, shuffle=False, verbose=0)
    after = [w.numpy() for w in model.trainable_weights]
    return before, after, history.history["loss"]


def max_diff(a, b):
    return max(float(np.max(np.abs(u - v))) for u, v in zip(a, b))


def step_ratio(before_1, after_1, before_2, after_2):
    d1 = np.concatenate([(a - b).ravel() for a, b in zip(after_1, before_1)])
    d2 = np.concatenate([(a - b).ravel() for a, b in zip(after_2, before_2)])
    return float(np.dot(d1, d2) / np.dot(d1, d1))


one = tf.distribute.OneDeviceStrategy("/cpu:0")
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out = {"devices": devices, "replicas": mirrored.num_replicas_in_sync}

# One SGD step on one batch of 64: single device; mirrored uvbook model (replica_scaled
# inside its train_step); mirrored plain-mean model as is and with loss_scale_factor.
b1, a1, _ = train(one, 64, 1)
b2, a2, _ = train(mirrored, 64, 1)
b3, a3, _ = train(mirrored, 64, 1, cls=PlainMeanAE)
b4, a4, _ = train(mirrored, 64, 1, loss_scale_factor=2.0, cls=PlainMeanAE)
out["same_init"] = max_diff(b1, b2)
out["ratio_uvbook"] = step_ratio(b1, a1, b2, a2)
out["ratio_plain_mean"] = step_ratio(b1, a1, b3, a3)
out["ratio_plain_mean_fixed"] = step_ratio(b1, a1, b4, a4)

# Eight steps (two epochs of four batches): the mirrored run tracks the single-device one.
b1, a1, loss1 = train(one, 256, 2)
b3, a3, loss3 = train(mirrored, 256, 2)
out["weights_diff"] = max_diff(a1, a3)
out["weights_moved"] = max_diff(a1, b1)
out["loss_single"], out["loss_mirrored"] = loss1, loss3

# replica_scaled divides by the number of replicas inside a replica context only.
per_replica = mirrored.run(lambda: tf.constant(float(num_replicas())) + replica_scaled(tf.constant(6.0)))
out["replica_scaled"] = sorted(float(v) for v in mirrored.experimental_local_results(per_replica))
out["replica_scaled_outside"] = float(replica_scaled(6.0))
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def result() -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=600, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"the distributed run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def test_two_logical_cpu_devices(result):
    assert result["devices"] == ["/device:CPU:0", "/device:CPU:1"]
    assert result["replicas"] == 2
    assert result["same_init"] == 0.0


def test_uvbook_step_on_two_replicas_equals_single_device_step(result):
    # uvbook's train_step differentiates replica_scaled(loss).
    assert result["ratio_uvbook"] == pytest.approx(1.0, abs=1e-3)


def test_plain_mean_train_step_takes_a_double_step(result):
    # Each replica averages over its half batch and Keras sums the replicas' gradients.
    assert result["ratio_plain_mean"] == pytest.approx(2.0, abs=1e-3)


def test_loss_scale_factor_fixes_a_plain_mean_train_step(result):
    assert result["ratio_plain_mean_fixed"] == pytest.approx(1.0, abs=1e-3)


def test_mirrored_training_matches_single_device(result):
    assert result["weights_moved"] > 1e-3, "the comparison is void if training did not move the weights"
    assert result["weights_diff"] < 1e-4, result["weights_diff"]
    assert result["loss_mirrored"] == pytest.approx(result["loss_single"], rel=1e-4)


def test_replica_scaled(result):
    assert result["replica_scaled"] == [5.0, 5.0]   # 2 replicas + 6 / 2
    assert result["replica_scaled_outside"] == 6.0
