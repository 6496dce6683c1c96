"""The article's three Keras networks, seeded and trained so the best validation epoch is kept.

The fitted scaler is the model's first layer (a fixed Normalization), so the saved model takes the
feature table's raw columns and a caller never rescales by hand.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import numpy as np

from madness.errors import UserError

ARCHITECTURES: dict[str, tuple[int, ...]] = {
    "small": (64,),
    "medium": (64, 64),
    "large": (128, 64, 64),
}
MODEL_NAMES = tuple(ARCHITECTURES)
HIDDEN_ACTIVATION, OUTPUT_ACTIVATION = "relu", "sigmoid"  # as the article builds them


# What TensorFlow's shared libraries log through absl while they load, which no environment variable
# silences (TF_CPP_MIN_LOG_LEVEL governs TensorFlow's own logging only). None concerns a run, and turning
# oneDNN off (TF_ENABLE_ONEDNN_OPTS=0) would change every score in its last bits.
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


COMPILE_CACHE_FLAG = "--tf_xla_persistent_cache_directory"
_CACHE_SET_HERE = "FABRIC_MADNESS_XLA_CACHE"  # the folder use_compile_cache put in TF_XLA_FLAGS


def compile_cache_folder(base: Path) -> Path:
    """Return where compiled training programs are kept: one folder per TensorFlow version and CPU (its
    microarchitecture and every instruction-set feature it reports, read by archspec on any OS),
    since a program compiled for one CPU's instructions must never be loaded on another."""
    from importlib.metadata import version

    import archspec.cpu

    host = archspec.cpu.host()
    features = " ".join(sorted(archspec.cpu.detect.detected_info().features))
    digest = hashlib.sha256(f"{version('tensorflow')}|{host.family}|{host.vendor}|{host.name}|{features}".encode())
    return base / f"xla-{version('tensorflow')}-{digest.hexdigest()[:16]}"


def use_compile_cache(base: Path) -> Path | None:
    """Let this process keep the XLA programs it compiles under `base` and load those another
    process compiled: a packaged train run then skips the compilation (about 1.5 s of CPU) that an
    earlier run of the same network and data shape already did. Call before TensorFlow is imported;
    returns the folder, or None when it cannot be written (then every run compiles).

    Safe to share: TensorFlow writes an entry to a temporary file and renames it into place, and
    loads one only if its key and its whole HLO program equal what this process would compile."""
    if "tensorflow" in sys.modules:
        return None  # TensorFlow reads its XLA flags once, at import
    folder = compile_cache_folder(base)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return None
    # A process started by one that used a cache inherits its flag: that one is replaced, a flag
    # the user set is kept.
    inherited = f"{COMPILE_CACHE_FLAG}={os.environ.get(_CACHE_SET_HERE, '')}"
    flags = [flag for flag in os.environ.get("TF_XLA_FLAGS", "").split() if flag != inherited]
    if any(flag.startswith(COMPILE_CACHE_FLAG) for flag in flags):
        return None
    os.environ["TF_XLA_FLAGS"] = " ".join([*flags, f"{COMPILE_CACHE_FLAG}={folder}"])
    os.environ[_CACHE_SET_HERE] = str(folder)
    return folder


def import_keras():
    """Import and return keras, with TensorFlow behind it; the first import leaves out TensorFlow's load-time notices."""
    if "tensorflow" not in sys.modules:
        with _without_load_notices():
            import tensorflow  # noqa: F401  (keras' backend: the import that loads the libraries)
    import keras

    return keras


def set_seeds(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow in one call, and make TensorFlow's ops deterministic."""
    keras = import_keras()
    import tensorflow as tf

    keras.utils.set_random_seed(seed)  # Python's random, NumPy, tf.random and Keras' own seed generator
    # Kept, as set_random_seed does not do it: seeds fix the random numbers, not ops whose result may
    # depend on thread scheduling; this makes TensorFlow run deterministic implementations only.
    tf.config.experimental.enable_op_determinism()
    # No PYTHONHASHSEED (read only at start-up): no result depends on string hash order.


def set_threads(threads: int) -> None:
    """Cap TensorFlow's thread pools (0 keeps its default: all cores). Call before any op runs."""
    import_keras()
    import tensorflow as tf

    if threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def build(name: str, scaler: dict, learning_rate: float):
    """Return the compiled `name` network: the scaler as a Normalization layer, then its Dense layers;
    Adam at `learning_rate` on MSE."""
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


class Trained(NamedTuple):
    """A trained network, its training and validation loss per epoch, and the (0-based) epoch whose weights it holds."""

    model: object
    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int


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

        def on_epoch_end(self, epoch, logs=None):
            not_finite = _not_finite(logs["loss"], logs["val_loss"])
            if not_finite:
                self.diverged = (epoch, *not_finite)
                self.model.stop_training = True
            else:
                super().on_epoch_end(epoch, logs)

        def on_train_end(self, logs=None):
            if self.diverged is None:
                super().on_train_end(logs)

    return KeepBestWeights()


def member_seeds(seed: int, count: int) -> list[int]:
    """Return the seeds of a pair's `count` networks: the first is `seed` itself, so one member is the
    single-seed run bit for bit; the others are drawn from NumPy's SeedSequence of `seed`, which
    makes streams that do not overlap (seed + 1, seed + 2 ... would collide with a neighbour's run)."""
    children = np.random.SeedSequence(seed).spawn(count - 1)
    return [seed, *(int(child.generate_state(1)[0]) for child in children)]


# Epochs handed to the compiled training at once: the row orders it holds (EPOCH_CHUNK x rows
# integers) stay the same whatever the number of epochs.
EPOCH_CHUNK = 1000


def epoch_orders(rows: int, seed: int) -> Iterator[np.ndarray]:
    """Return the order of the training rows in each epoch, one epoch after the other: a fresh permutation
    per epoch (the article's reshuffle), drawn from the run's seed. Drawn here rather than by Keras
    so that both training paths see the very same mini-batches, and a run's batches depend on its
    seed alone; drawn as the epochs come, so the memory they take does not grow with the epochs."""
    rng = np.random.default_rng(seed)
    while True:
        yield rng.permutation(rows).astype(np.int32)


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
    check_stop=None,
) -> Trained:
    """Train one network: mini-batch Adam on MSE, reshuffled each epoch, per-epoch training and
    validation loss, the weights of the best validation epoch kept (the first of equal losses).

    `fast` runs the whole training as one XLA-compiled TensorFlow call (see `_fit_compiled`); `fast=False`
    is plain Keras `fit` with the same batches, the reference the fast path is tested against.
    Raises Diverged at the first epoch whose training or validation loss is not finite. `check_stop`,
    if given, is called after each batch (plain) or chunk of epochs (fast) and may raise to stop the training."""
    set_seeds(seed)
    model = build(name, scaler, learning_rate)
    arrays = [np.asarray(a, dtype="float32") for a in (x_train, y_train, x_val, y_val)]
    orders = epoch_orders(len(arrays[0]), seed)
    fit = _fit_compiled if fast else _fit_plain
    train_loss, val_loss, best_epoch, diverged = fit(
        model, *arrays, orders, epochs, batch_size, check_stop or (lambda: None)
    )
    if diverged is not None:
        epoch, loss, value = diverged
        raise Diverged(learning_rate, epoch + 1, epochs, loss, value)
    return Trained(model, train_loss, val_loss, best_epoch)


def _fit_plain(model, x_train, y_train, x_val, y_val, orders, epochs, batch_size, check_stop):
    """Train with Keras `fit` for `epochs`, fed each epoch's batches in the order `orders` yields (so Keras' own
    shuffle is off), with the best-weights callback. Returns (train losses, val losses, best epoch,
    diverged or None)."""
    import tensorflow as tf

    x, y = tf.constant(x_train), tf.constant(y_train)
    per_epoch = tf.data.Dataset.from_generator(
        lambda: itertools.islice(orders, epochs), output_signature=tf.TensorSpec([len(x_train)], tf.int32)
    )
    batches = per_epoch.flat_map(
        lambda order: tf.data.Dataset.from_tensor_slices((tf.gather(x, order), tf.gather(y, order))).batch(batch_size)
    )
    keep = _best_weights_callback(epochs)
    keras = import_keras()
    stop_check = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: check_stop())
    history = model.fit(
        batches,
        epochs=epochs,
        steps_per_epoch=-(-len(x_train) // batch_size),
        validation_data=(x_val, y_val),
        validation_batch_size=batch_size,
        shuffle=False,
        verbose=0,
        callbacks=[keep, stop_check],
    )
    losses = [list(map(float, history.history[key])) for key in ("loss", "val_loss")]
    return losses[0], losses[1], keep.best_epoch, keep.diverged


def _fit_compiled(model, x_train, y_train, x_val, y_val, orders, epochs, batch_size, check_stop):
    """Train as `_fit_plain` does, each EPOCH_CHUNK epochs in one call of an XLA-compiled function:
    on these tiny networks TensorFlow's per-operation dispatch and Keras' Python around each batch
    cost more than the arithmetic, which XLA fuses into one program. Same algorithm:
    the Keras model's own initial weights and Normalization layer, Dense layers with the article's
    activations, MSE, Keras' Adam update written out with the optimizer's own constants, each
    epoch's rows in the order `orders` gives, the epoch's training loss as Keras reports it (the
    mean of its batch losses weighted by batch size), the validation loss over every validation
    row, the best epoch's weights kept (strict `<`: the first of equal losses), and the training
    stopped at the first epoch whose loss is not finite. Not the same bits as `fit`: XLA's kernels
    round differently in float32's last bits (tests/test_model.py shows how close the paths stay).
    The training's state (weights, Adam's moments and step, the best weights so far) goes from one
    call to the next unchanged, so the chunks give the bits one call over every epoch would.
    Returns what `_fit_plain` returns."""
    import tensorflow as tf

    normalize, dense = model.layers[0], model.layers[1:]
    variables = [v for layer in dense for v in (layer.kernel, layer.bias)]
    optimizer = model.optimizer
    program = _training_program(batch_size, float(optimizer.beta_1), float(optimizer.beta_2), float(optimizer.epsilon))
    x, y = normalize(x_train), tf.constant(y_train.reshape(-1, 1))
    x_val, y_val = normalize(x_val), tf.constant(y_val.reshape(-1, 1))
    learning_rate = tf.constant(np.asarray(optimizer.learning_rate), tf.float32)
    params = [tf.convert_to_tensor(v) for v in variables]
    zeros = [tf.zeros_like(p) for p in params]
    state = (params, zeros, zeros, tf.constant(0.0), params, tf.constant(math.inf), tf.constant(-1))
    chunk = min(epochs, EPOCH_CHUNK)
    train_losses, val_losses = [], []
    for first in range(0, epochs, chunk):
        count = min(chunk, epochs - first)
        block = np.zeros((chunk, len(x_train)), np.int32)  # a last, shorter chunk runs `count` of its rows
        block[:count] = np.stack(list(itertools.islice(orders, count)))
        epochs_run, losses, state = program(
            x, y, tf.constant(block), tf.constant(count), tf.constant(first), x_val, y_val, learning_rate, state
        )
        losses = losses.numpy()[:, : int(epochs_run)]
        train_losses += map(float, losses[0])
        val_losses += map(float, losses[1])
        not_finite = _not_finite(*losses[:, -1])
        if not_finite:  # the program stopped on it, the first loss that is not finite
            return train_losses, val_losses, int(state[6]), (len(train_losses) - 1, *not_finite)
        check_stop()
    for variable, value in zip(variables, state[4], strict=True):
        variable.assign(value)
    return train_losses, val_losses, int(state[6]), None


@functools.cache
def _training_program(batch_size: int, beta_1: float, beta_2: float, epsilon: float):
    """Return epochs of mini-batch Adam on MSE, with the losses after each, as one XLA program.

    Kept for the process: TensorFlow traces and XLA compiles it once per network, data shape and
    chunk of epochs (the learning rate is an argument), so later trainings in the process cost no
    compilation. The epochs' loop is inside the program, so Python is not entered between epochs."""
    import tensorflow as tf

    def mse(params, x, y):
        """Return the network's mean squared error on (x, y), its forward pass written out as `build` makes it."""
        layers = len(params) // 2
        for i in range(layers):
            activation = getattr(tf.nn, OUTPUT_ACTIVATION if i == layers - 1 else HIDDEN_ACTIVATION)
            x = activation(tf.matmul(x, params[2 * i]) + params[2 * i + 1])
        return tf.reduce_mean(tf.square(y - x))

    def adam_step(x, y, learning_rate, params, m, v, step):
        with tf.GradientTape() as tape:
            tape.watch(params)
            loss = mse(params, x, y)
        grads = tape.gradient(loss, params)
        step = step + 1.0
        alpha = learning_rate * tf.sqrt(1.0 - tf.pow(beta_2, step)) / (1.0 - tf.pow(beta_1, step))
        m = [mi + (g - mi) * (1.0 - beta_1) for mi, g in zip(m, grads, strict=True)]
        v = [vi + (tf.square(g) - vi) * (1.0 - beta_2) for vi, g in zip(v, grads, strict=True)]
        params = [p - (mi * alpha) / (tf.sqrt(vi) + epsilon) for p, mi, vi in zip(params, m, v, strict=True)]
        return loss, params, m, v, step

    def one_epoch(x, y, learning_rate, params, m, v, step):
        """Return the epoch's training loss and the state after it; x and y are in the epoch's order."""
        rows, columns = x.shape
        full_batches, last_batch = divmod(rows, batch_size)

        def batch(i, total, params, m, v, step):
            x_batch = tf.slice(x, [i * batch_size, 0], [batch_size, columns])
            y_batch = tf.slice(y, [i * batch_size, 0], [batch_size, 1])
            loss, params, m, v, step = adam_step(x_batch, y_batch, learning_rate, params, m, v, step)
            return i + 1, total + loss * batch_size, params, m, v, step

        total = tf.constant(0.0)
        if full_batches:  # a batch larger than the rows: no full batch, whose slice XLA would refuse
            _, total, params, m, v, step = tf.while_loop(
                lambda i, *_: i < full_batches, batch, (0, total, params, m, v, step)
            )
        if last_batch:  # the epoch's remainder, a smaller last batch as Keras makes it
            tail = full_batches * batch_size
            loss, params, m, v, step = adam_step(x[tail:], y[tail:], learning_rate, params, m, v, step)
            total += loss * last_batch
        return total / rows, params, m, v, step

    @tf.function(jit_compile=True, autograph=False)
    def some_epochs(x, y, orders, count, first, x_val, y_val, learning_rate, state):
        """Run the first `count` epochs of `orders` from `state` (weights, Adam's moments and step,
        best weights, best validation loss and its epoch, counted from the training's first, which
        is `first` epochs before this chunk's); return (epochs run, [training losses, validation
        losses] per epoch of the chunk, the state after them)."""

        def epoch_of(epoch, stop, params, m, v, step, best, best_loss, best_epoch, losses):
            order = orders[epoch]
            train_loss, params, m, v, step = one_epoch(
                tf.gather(x, order), tf.gather(y, order), learning_rate, params, m, v, step
            )
            val_loss = mse(params, x_val, y_val)
            losses = tf.tensor_scatter_nd_update(losses, [[0, epoch], [1, epoch]], tf.stack([train_loss, val_loss]))
            better = val_loss < best_loss  # never for NaN
            best = [tf.where(better, p, b) for p, b in zip(params, best, strict=True)]
            best_loss, best_epoch = tf.where(better, val_loss, best_loss), tf.where(better, first + epoch, best_epoch)
            stop = tf.logical_not(tf.math.is_finite(train_loss) & tf.math.is_finite(val_loss))
            return epoch + 1, stop, params, m, v, step, best, best_loss, best_epoch, losses

        epochs_run, _, *state, losses = tf.while_loop(
            lambda epoch, stop, *_: tf.logical_and(epoch < count, tf.logical_not(stop)),
            epoch_of,
            (0, tf.constant(False), *state, tf.zeros([2, orders.shape[0]])),
        )
        return epochs_run, losses, tuple(state)

    return some_epochs


def _not_finite(train_loss: float, val_loss: float) -> tuple[str, float] | None:
    """Return which of an epoch's losses is not a finite number, the training loss looked at first, and its value."""
    for loss, value in (("training", train_loss), ("validation", val_loss)):
        if not math.isfinite(value):
            return loss, float(value)
    return None


def predict(model, x) -> np.ndarray:
    """Return the network's probabilities for `x` as a flat float64 array."""
    return model.predict(np.asarray(x, dtype="float32"), verbose=0).reshape(-1).astype("float64")
