"""The article's three Keras networks, seeded and trained so the best validation epoch is kept.

The fitted scaler is the model's first layer (a fixed Normalization), so the saved model takes the
feature table's raw columns and a caller never rescales by hand.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from madness.errors import UserError

ARCHITECTURES: dict[str, tuple[int, ...]] = {
    "small": (64,),
    "medium": (64, 64),
    "large": (128, 64, 64),
}
MODEL_NAMES = tuple(ARCHITECTURES)
HIDDEN_ACTIVATION, OUTPUT_ACTIVATION = "relu", "sigmoid"  # as the article builds them


# What TensorFlow's shared libraries log while they load (each line twice with TensorFlow 2.21). absl writes
# every message to stderr until absl::InitializeLog(), which TensorFlow never calls, and no
# environment variable reaches it: TF_CPP_MIN_LOG_LEVEL only governs TensorFlow's own logging
# (it does silence cpu_feature_guard). None of them concerns a run: the machine has no GPU by
# design, and turning oneDNN off (TF_ENABLE_ONEDNN_OPTS=0) would change every score in its last bits.
_LOAD_NOTICES = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|I\d{4} [\d:.]+ +\d+ (port|cudart_stub|cpu_feature_guard)\.cc:\d+\] "
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
)


@contextmanager
def _without_load_notices():
    """Route file descriptor 2 (where C++ writes) to a file while the block runs, then write back
    every line but TensorFlow's load-time notices: anything else, an error above all, still shows."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                if not _LOAD_NOTICES.match(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def import_keras():
    """keras, with TensorFlow behind it; the first import leaves out TensorFlow's load-time notices."""
    if "tensorflow" not in sys.modules:
        with _without_load_notices():
            import tensorflow  # noqa: F401  (keras' backend: the import that loads the libraries)
    import keras

    return keras


def set_seeds(seed: int) -> None:
    """One call covers Python, NumPy and TensorFlow, and makes TensorFlow's ops deterministic."""
    keras = import_keras()
    import tensorflow as tf

    keras.utils.set_random_seed(seed)  # Python's random, NumPy, tf.random and Keras' own seed generator
    # Kept, as set_random_seed does not do it: seeds fix the random numbers, not ops whose result may
    # depend on thread scheduling; this makes TensorFlow run deterministic implementations only.
    tf.config.experimental.enable_op_determinism()
    # No PYTHONHASHSEED: Python reads it only at start-up, so setting it here would not change this
    # process. String hash order is not needed for identical runs: the sets in madness/ and steps/
    # are only tested for membership, counted, sorted or checked with all(), and runs under different hash seeds log the
    # same metrics bit for bit.


def set_threads(threads: int) -> None:
    """Cap TensorFlow's thread pools (0 keeps its default: all cores). Call before any op runs."""
    import_keras()
    import tensorflow as tf

    if threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def build(name: str, scaler: dict, learning_rate: float):
    keras = import_keras()

    mean = np.asarray(scaler["mean"], dtype="float32")
    variance = np.square(np.asarray(scaler["scale"], dtype="float32"))
    layers = [
        keras.Input(shape=(len(mean),), name="features"),
        keras.layers.Normalization(mean=mean, variance=variance),
    ]
    layers += [keras.layers.Dense(units, activation=HIDDEN_ACTIVATION) for units in ARCHITECTURES[name]]
    layers.append(keras.layers.Dense(1, activation=OUTPUT_ACTIVATION))
    model = keras.Sequential(layers, name=name)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")
    return model


@dataclass
class Trained:
    model: object
    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int  # 0-based index into the loss lists


class Diverged(UserError):
    """A loss stopped being a finite number: the learning rate is too large for this network."""

    def __init__(self, learning_rate: float, epoch: int, epochs: int, loss: str, value: float):
        self.learning_rate, self.epoch, self.loss, self.value = learning_rate, epoch, loss, value
        super().__init__(
            f"training diverged at learning rate lr={learning_rate:g}: the {loss} loss is {value} at epoch "
            f"{epoch} of {epochs}; give a smaller learning rate (the article's are 0.001, 0.01 and 0.1)"
        )


def _best_weights_callback(epochs: int):
    """Keras' EarlyStopping keeping the weights of the epoch with the lowest validation loss (the
    article's checkpoint), with a patience of every epoch so it never stops the training itself.

    It restores them at the end of training whether it stopped early or not; on equal losses it keeps
    the first (a strict `<`); its `best_epoch` is 0-based. What it does not do, hence the subclass:
    stop on a loss that is not finite. A NaN validation loss is never an improvement, so EarlyStopping
    would train on to the last epoch, and a NaN training loss it does not look at. Here the first epoch
    whose training or validation loss is not finite stops the training (`diverged`), before
    EarlyStopping sees it, and the weights are left alone: the run fails (Diverged)."""
    keras = import_keras()

    class KeepBestWeights(keras.callbacks.EarlyStopping):
        def __init__(self):
            super().__init__(monitor="val_loss", mode="min", patience=epochs, restore_best_weights=True)
            self.diverged: tuple[int, str, float] | None = None  # (0-based epoch, which loss, its value)

        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            self.diverged = None

        def on_epoch_end(self, epoch, logs=None):
            for key, loss in (("loss", "training"), ("val_loss", "validation")):
                if not math.isfinite(logs[key]):
                    self.diverged = (epoch, loss, float(logs[key]))
                    self.model.stop_training = True
                    return
            super().on_epoch_end(epoch, logs)

        def on_train_end(self, logs=None):
            if self.diverged is None:
                super().on_train_end(logs)

    return KeepBestWeights()


def train(
    name: str,
    scaler: dict,
    learning_rate: float,
    x_train,
    y_train,
    x_val,
    y_val,
    epochs: int,
    batch_size: int,
    seed: int,
    fast: bool = True,
) -> Trained:
    """Train one network. `fast` runs a whole epoch per TensorFlow call (steps_per_execution):
    the same updates in the same order, without Keras' per-batch Python overhead.
    Raises Diverged at the first epoch whose training or validation loss is not finite."""
    set_seeds(seed)
    model = build(name, scaler, learning_rate)
    if fast:
        steps = max(1, -(-len(x_train) // batch_size))
        model.compile(optimizer=model.optimizer, loss="mse", steps_per_execution=steps)
    keep = _best_weights_callback(epochs)
    history = model.fit(
        np.asarray(x_train, dtype="float32"),
        np.asarray(y_train, dtype="float32"),
        validation_data=(np.asarray(x_val, dtype="float32"), np.asarray(y_val, dtype="float32")),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[keep],
    )
    if keep.diverged is not None:
        epoch, loss, value = keep.diverged
        raise Diverged(learning_rate, epoch + 1, epochs, loss, value)
    return Trained(
        model, list(map(float, history.history["loss"])), list(map(float, history.history["val_loss"])), keep.best_epoch
    )


def predict(model, x) -> np.ndarray:
    return model.predict(np.asarray(x, dtype="float32"), verbose=0).reshape(-1).astype("float64")
