"""The article's three Keras networks, seeded and trained so the best validation epoch is kept.

The fitted scaler is the model's first layer (a fixed Normalization), so the saved model takes the
feature table's raw columns and a caller never rescales by hand.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np

ARCHITECTURES: dict[str, tuple[int, ...]] = {
    "small": (64,),
    "medium": (64, 64),
    "large": (128, 64, 64),
}
MODEL_NAMES = tuple(ARCHITECTURES)


def set_seeds(seed: int) -> None:
    """One call covers Python, NumPy and TensorFlow, and makes TensorFlow's ops deterministic."""
    import keras
    import tensorflow as tf

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def set_threads(threads: int) -> None:
    """Cap TensorFlow's thread pools (0 keeps its default: all cores). Call before any op runs."""
    import tensorflow as tf

    if threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def build(name: str, scaler: dict, learning_rate: float):
    import keras

    mean = np.asarray(scaler["mean"], dtype="float32")
    variance = np.square(np.asarray(scaler["scale"], dtype="float32"))
    layers = [keras.Input(shape=(len(mean),), name="features"), keras.layers.Normalization(mean=mean, variance=variance)]
    layers += [keras.layers.Dense(units, activation="relu") for units in ARCHITECTURES[name]]
    layers.append(keras.layers.Dense(1, activation="sigmoid"))
    model = keras.Sequential(layers, name=name)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss="mse")
    return model


@dataclass
class Trained:
    model: object
    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int  # 0-based index into the loss lists


def _best_weights_callback():
    import keras

    class KeepBestWeights(keras.callbacks.Callback):
        """Keep the weights of the epoch with the lowest validation loss (the article's checkpoint)."""

        def __init__(self):
            super().__init__()
            self.best_loss, self.best_epoch, self.best_weights = np.inf, -1, None

        def on_epoch_end(self, epoch, logs=None):
            if logs["val_loss"] < self.best_loss:
                self.best_loss, self.best_epoch = logs["val_loss"], epoch
                self.best_weights = self.model.get_weights()

        def on_train_end(self, logs=None):
            self.model.set_weights(self.best_weights)

    return KeepBestWeights()


def train(name: str, scaler: dict, learning_rate: float, x_train, y_train, x_val, y_val,
          epochs: int, batch_size: int, seed: int, fast: bool = True) -> Trained:
    """Train one network. `fast` runs a whole epoch per TensorFlow call (steps_per_execution):
    the same updates in the same order, without Keras' per-batch Python overhead."""
    set_seeds(seed)
    model = build(name, scaler, learning_rate)
    if fast:
        steps = max(1, -(-len(x_train) // batch_size))
        model.compile(optimizer=model.optimizer, loss="mse", steps_per_execution=steps)
    keep = _best_weights_callback()
    history = model.fit(
        np.asarray(x_train, dtype="float32"), np.asarray(y_train, dtype="float32"),
        validation_data=(np.asarray(x_val, dtype="float32"), np.asarray(y_val, dtype="float32")),
        epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0, callbacks=[keep],
    )
    return Trained(model, list(map(float, history.history["loss"])), list(map(float, history.history["val_loss"])), keep.best_epoch)


def predict(model, x) -> np.ndarray:
    return model.predict(np.asarray(x, dtype="float32"), verbose=0).reshape(-1).astype("float64")
