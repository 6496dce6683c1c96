"""madness.model: the article's three networks, the scaler as first layer, best-epoch weights, determinism.

Real TensorFlow on frames built here (a few hundred rows, four features): each `train` call costs a
few seconds, so the trained networks are shared by module-scoped fixtures.
"""

from __future__ import annotations

import itertools
import os
import sys

import numpy as np
import pytest

import madness.model
from madness.errors import UserError

N_FEATURES = 4
SEED = 11


@pytest.fixture(scope="module")
def frame():
    """Four features, a label that depends on three of them plus noise; 200 training and 100 validation rows."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, N_FEATURES)) * [1.0, 2.0, 0.5, 3.0] + [0.0, 5.0, -1.0, 10.0]
    y = ((x - [0.0, 5.0, -1.0, 10.0]) @ [1.0, -0.5, 2.0, 0.0] + 0.5 * rng.normal(size=300) > 0).astype("float64")
    scaler = {"mean": x[:200].mean(axis=0).tolist(), "scale": x[:200].std(axis=0).tolist()}
    return {"x_train": x[:200], "y_train": y[:200], "x_val": x[200:], "y_val": y[200:], "scaler": scaler}


def train(frame, seed=SEED, fast=True, epochs=5, lr=0.01, batch_size=32, check_stop=None):
    return madness.model.train(
        "small",
        frame["scaler"],
        lr,
        frame["x_train"],
        frame["y_train"],
        frame["x_val"],
        frame["y_val"],
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        fast=fast,
        check_stop=check_stop,
    )


@pytest.fixture(scope="module")
def trained(frame):
    return train(frame)


def dense_layers(model):
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


@pytest.mark.parametrize("name, units", [("small", [64, 1]), ("medium", [64, 64, 1]), ("large", [128, 64, 64, 1])])
def test_each_architecture_has_the_articles_dense_layers(name, units):
    import keras

    model = madness.model.build(name, {"mean": [0.0] * N_FEATURES, "scale": [1.0] * N_FEATURES}, 0.003)
    dense = dense_layers(model)
    assert [layer.units for layer in dense] == units
    assert [layer.activation.__name__ for layer in dense] == ["relu"] * (len(units) - 1) + ["sigmoid"]
    assert isinstance(model.layers[0], keras.layers.Normalization)
    assert [type(layer) for layer in model.layers[1:]] == [keras.layers.Dense] * len(units)  # nothing else
    assert model.input_shape == (None, N_FEATURES)
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.003, rel=1e-6)
    assert model.loss == "mse"


def test_model_names_run_from_the_smallest_network_to_the_largest():
    # The order the sweep trains them and the report lists them: by number of weights.
    scaler = {"mean": [0.0] * N_FEATURES, "scale": [1.0] * N_FEATURES}
    sizes = [madness.model.build(name, scaler, 0.01).count_params() for name in madness.model.MODEL_NAMES]
    assert sizes == sorted(set(sizes)), dict(zip(madness.model.MODEL_NAMES, sizes, strict=True))


def test_normalization_layer_reproduces_the_scaler(frame):
    model = madness.model.build("small", frame["scaler"], 0.01)
    x = frame["x_val"][:10].astype("float32")
    scaled = np.asarray(model.layers[0](x))
    expected = (x - np.asarray(frame["scaler"]["mean"])) / np.asarray(frame["scaler"]["scale"])
    np.testing.assert_allclose(scaled, expected, rtol=1e-5, atol=1e-5)


def test_a_few_epochs_lower_the_training_loss(trained):
    assert len(trained.train_loss) == len(trained.val_loss) == 5
    assert trained.train_loss[-1] < trained.train_loss[0]


def test_predict_gives_one_probability_per_row(trained, frame):
    p = madness.model.predict(trained.model, frame["x_val"])
    assert p.shape == (len(frame["x_val"]),) and p.dtype == np.float64
    assert ((p > 0) & (p < 1)).all()


def noise_frame():
    """Noise labels, few rows: at a high learning rate validation loss rises after its first epoch."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, N_FEATURES)), rng.integers(0, 2, 40).astype("float64")
    return {
        "x_train": x[:24],
        "y_train": y[:24],
        "x_val": x[24:],
        "y_val": y[24:],
        "scaler": {"mean": [0.0] * N_FEATURES, "scale": [1.0] * N_FEATURES},
    }


# (network, learning rate, epochs, batch size, seed) whose best epoch is the first / one in the middle
BEST_FIRST = ("large", 0.05, 12, 8, 2)
BEST_IN_THE_MIDDLE = ("medium", 0.01, 6, 32, SEED)


@pytest.mark.parametrize("case", [BEST_FIRST, BEST_IN_THE_MIDDLE], ids=["best-first", "best-in-the-middle"])
def test_the_weights_kept_are_those_of_the_best_validation_epoch(frame, case):
    name, lr, epochs, batch_size, seed = case
    data = noise_frame() if case == BEST_FIRST else frame

    def fit(epochs):
        return madness.model.train(
            name,
            data["scaler"],
            lr,
            data["x_train"],
            data["y_train"],
            data["x_val"],
            data["y_val"],
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
        )

    result = fit(epochs)
    assert len(result.val_loss) == epochs  # keeping the best never stops the training early
    assert result.best_epoch == int(np.argmin(result.val_loss))  # 0-based; the first of equal losses
    assert result.best_epoch < epochs - 1, "the test needs a run whose last epoch is not its best"
    # Bit for bit the weights at the end of the best epoch: those of the same seed trained that far.
    upto_best = fit(result.best_epoch + 1)
    assert upto_best.val_loss == result.val_loss[: result.best_epoch + 1]
    assert_same_weights(result, upto_best)
    val_loss_now = result.model.evaluate(
        data["x_val"].astype("float32"), data["y_val"].astype("float32"), batch_size=batch_size, verbose=0
    )
    assert val_loss_now == pytest.approx(min(result.val_loss), rel=1e-6, abs=1e-7)


def assert_same_weights(a, b):
    wa, wb = a.model.get_weights(), b.model.get_weights()
    assert len(wa) == len(wb)
    for left, right in zip(wa, wb, strict=True):
        np.testing.assert_array_equal(left, right)


def test_set_seeds_seeds_python_numpy_and_tensorflow():
    import random

    import tensorflow as tf

    def draws(seed):
        madness.model.set_seeds(seed)
        return random.random(), np.random.random(), float(tf.random.uniform([]))

    assert draws(5) == draws(5)
    assert all(a != b for a, b in zip(draws(5), draws(6), strict=True))


def test_the_same_seed_gives_bit_identical_weights(trained, frame):
    again = train(frame)
    assert_same_weights(trained, again)
    assert again.train_loss == trained.train_loss and again.val_loss == trained.val_loss


def test_another_seed_gives_other_weights(trained, frame):
    other = train(frame, seed=SEED + 1)
    assert any(
        not np.array_equal(a, b) for a, b in zip(trained.model.get_weights(), other.model.get_weights(), strict=True)
    )


@pytest.fixture(scope="module")
def plain(frame):
    return train(frame, fast=False)


def test_fast_training_keeps_the_same_best_epoch_as_plain_keras_fit(trained, plain):
    assert trained.best_epoch == plain.best_epoch


def test_fast_training_losses_agree_with_plain_keras_fit(trained, plain):
    # Same batches, same initial weights, same updates written out: what is left is XLA rounding
    # float32's last bits differently from Keras' kernels: 1.5e-7 apart here after five epochs.
    # 1e-5 leaves room; other batch orders move these losses by 5e-2, a learning rate 1% off by 6e-3.
    np.testing.assert_allclose(trained.train_loss, plain.train_loss, rtol=1e-5)
    np.testing.assert_allclose(trained.val_loss, plain.val_loss, rtol=1e-5)


def test_fast_training_predictions_agree_with_plain_keras_fit(trained, plain, frame):
    np.testing.assert_allclose(
        madness.model.predict(trained.model, frame["x_val"]),
        madness.model.predict(plain.model, frame["x_val"]),
        atol=1e-5,
    )


def test_a_batch_larger_than_the_training_rows_is_one_batch_an_epoch(frame):
    # 200 training rows, batches of 256: each epoch is one batch of every row, on both paths
    fast, plain = (train(frame, fast=fast, batch_size=256) for fast in (True, False))
    np.testing.assert_allclose(fast.train_loss, plain.train_loss, rtol=1e-5)
    np.testing.assert_allclose(fast.val_loss, plain.val_loss, rtol=1e-5)


def test_both_paths_stop_on_a_learning_rate_too_large(frame):
    for fast in (True, False):
        with pytest.raises(madness.model.Diverged):
            train(frame, fast=fast, epochs=3, lr=1e30)


def test_the_first_member_of_several_seeds_is_the_single_seed_run():
    assert madness.model.member_seeds(42, 1) == [42]
    assert madness.model.member_seeds(42, 5)[0] == 42


def test_member_seeds_are_distinct_fixed_and_extend_without_changing_earlier_members():
    five = madness.model.member_seeds(42, 5)
    assert len(set(five)) == 5 and five == madness.model.member_seeds(42, 5)
    assert madness.model.member_seeds(42, 10)[:5] == five  # 10 seeds contain the 5-seed run's members
    assert madness.model.member_seeds(43, 5)[1:] != five[1:]
    assert all(0 <= s < 2**32 for s in five)  # NumPy's legacy seeding, used by Keras, takes 32 bits


def orders(rows, epochs, seed):
    return np.stack(list(itertools.islice(madness.model.epoch_orders(rows, seed), epochs)))


def test_each_epoch_visits_every_training_row_once_in_a_fresh_order():
    four = orders(rows=50, epochs=4, seed=SEED)
    assert four.shape == (4, 50)
    assert all(sorted(order) == list(range(50)) for order in four)
    assert len({tuple(order) for order in four}) == 4


def test_the_orders_are_one_permutation_per_epoch_from_the_seed():
    # what every training so far was given (the orders used to be drawn up front this way): the same
    # seed gives the same batches as before, epoch after epoch
    rng = np.random.default_rng(SEED)
    np.testing.assert_array_equal(orders(50, 7, SEED), np.stack([rng.permutation(50) for _ in range(7)]))


def test_another_seed_gives_other_orders():
    assert not np.array_equal(orders(50, 3, SEED), orders(50, 3, SEED + 1))


@pytest.mark.parametrize("chunk", [1, 2, 4])
def test_training_in_chunks_of_epochs_gives_the_bits_of_one_call(frame, trained, monkeypatch, chunk):
    # chunks of 2 and 4 over 5 epochs leave a shorter last chunk
    monkeypatch.setattr(madness.model, "EPOCH_CHUNK", chunk)
    chunked = train(frame)
    assert chunked.train_loss == trained.train_loss and chunked.val_loss == trained.val_loss
    assert chunked.best_epoch == trained.best_epoch
    assert_same_weights(chunked, trained)


@pytest.mark.parametrize("chunk", [1, 2], ids=["ending-its-chunk", "inside-its-chunk"])
def test_a_divergence_stops_the_training_without_running_the_chunks_that_follow(frame, monkeypatch, chunk):
    monkeypatch.setattr(madness.model, "EPOCH_CHUNK", chunk)
    chunks_gone_on = []  # check_stop is called between chunks
    with pytest.raises(madness.model.Diverged, match="at epoch 1 of 5"):
        train(frame, epochs=5, lr=1e30, check_stop=lambda: chunks_gone_on.append(True))
    assert chunks_gone_on == []


TRAIN_IN_A_PROCESS = """
import sys, numpy as np
from pathlib import Path
import madness.model
if len(sys.argv) > 2:
    madness.model.use_compile_cache(Path(sys.argv[2]))
madness.model.set_threads(int(sys.argv[1]))
rng = np.random.default_rng(0)
x, y = rng.normal(size=(90, 4)), rng.integers(0, 2, 90).astype("float64")
trained = madness.model.train("medium", {"mean": [0.0] * 4, "scale": [1.0] * 4}, 0.01, x[:60], y[:60], x[60:], y[60:],
                  epochs=4, batch_size=16, seed=3)
print(repr(trained.val_loss), repr(madness.model.predict(trained.model, x).tolist()))
"""


@pytest.mark.slow
def test_fast_training_is_bit_identical_across_processes_and_thread_counts():
    # A process compiles its own XLA program: reruns (reproduce, the cache) and sweeps with
    # jobs=1 (all cores) or jobs=2 (one thread each) must still log the same bits.
    first = train_in_a_process(1)
    assert first and train_in_a_process(1) == first and train_in_a_process(2) == first


def train_in_a_process(threads, *cache):
    import subprocess
    import sys

    command = [sys.executable, "-c", TRAIN_IN_A_PROCESS, str(threads), *map(str, cache)]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


@pytest.mark.slow
def test_a_program_compiled_by_one_process_is_loaded_by_the_next_with_the_same_results(tmp_path):
    compiled_here = train_in_a_process(1)
    first = train_in_a_process(1, tmp_path)
    entries = list(madness.model.compile_cache_folder(tmp_path).glob("*.pb"))
    assert entries, "the first process kept no compiled program"
    stamps = {entry: entry.stat().st_mtime_ns for entry in entries}
    assert train_in_a_process(1, tmp_path) == first == compiled_here
    assert {entry: entry.stat().st_mtime_ns for entry in entries} == stamps  # loaded, not compiled again


def test_a_cache_inherited_from_the_parent_process_is_replaced_and_the_users_own_kept(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)  # as in a process that has not loaded it yet
    monkeypatch.delenv("FABRIC_MADNESS_XLA_CACHE", raising=False)
    monkeypatch.setenv("TF_XLA_FLAGS", "--tf_xla_auto_jit=0")
    parents = madness.model.use_compile_cache(tmp_path / "parent")
    assert os.environ["TF_XLA_FLAGS"] == f"--tf_xla_auto_jit=0 {madness.model.COMPILE_CACHE_FLAG}={parents}"
    mine = madness.model.use_compile_cache(tmp_path / "child")
    assert (
        mine != parents
        and os.environ["TF_XLA_FLAGS"] == f"--tf_xla_auto_jit=0 {madness.model.COMPILE_CACHE_FLAG}={mine}"
    )

    monkeypatch.setenv("TF_XLA_FLAGS", f"{madness.model.COMPILE_CACHE_FLAG}=/the/users/own")
    assert madness.model.use_compile_cache(tmp_path / "ours") is None
    assert os.environ["TF_XLA_FLAGS"] == f"{madness.model.COMPILE_CACHE_FLAG}=/the/users/own"


def test_no_compile_cache_once_tensorflow_is_loaded(tmp_path, trained):
    # TensorFlow reads its XLA flags at import: a folder given later would silently not be used
    assert madness.model.use_compile_cache(tmp_path) is None and not any(tmp_path.iterdir())


def test_the_compile_cache_folder_names_the_tensorflow_version_and_the_cpu(tmp_path):
    from importlib.metadata import version

    folder = madness.model.compile_cache_folder(tmp_path)
    assert folder.parent == tmp_path and folder.name.startswith(f"xla-{version('tensorflow')}-")
    assert folder == madness.model.compile_cache_folder(tmp_path)


# --- a step asked to stop: its check stops the training ---


class Stopped(Exception):
    pass


@pytest.mark.parametrize(("fast", "epochs"), [(False, 5), (True, 2 * madness.model.EPOCH_CHUNK)], ids=["plain", "fast"])
def test_a_check_that_raises_stops_the_training_after_a_batch_or_a_chunk_of_epochs(frame, fast, epochs):
    """Plain Keras checks after each batch, the compiled training after each chunk of epochs."""
    calls = []

    def check_stop():
        calls.append(1)
        raise Stopped

    with pytest.raises(Stopped):
        train(frame, fast=fast, epochs=epochs, check_stop=check_stop)
    assert len(calls) == 1  # the first check stops it


# --- a learning rate too large: losses that are not numbers stop the training ---


def test_a_learning_rate_too_large_raises_diverged_naming_it_and_the_epoch(frame):
    with pytest.raises(madness.model.Diverged) as raised:
        train(frame, epochs=4, lr=1e30)
    err = raised.value
    assert isinstance(err, UserError)  # what steps print as one line
    assert (err.learning_rate, err.epoch, err.loss) == (1e30, 1, "training") and np.isnan(err.value)
    assert str(err) == (
        "training diverged at learning rate lr=1e+30: the training loss is nan at epoch 1 of 4; "
        "give a smaller learning rate (the article's are 0.001, 0.01 and 0.1)"
    )


@pytest.fixture
def callback():
    keep = madness.model._best_weights_callback(epochs=10)
    keep.set_model(madness.model.build("small", {"mean": [0.0] * N_FEATURES, "scale": [1.0] * N_FEATURES}, 0.01))
    keep.on_train_begin()
    return keep


def weights_of(model):
    return [w.copy() for w in model.get_weights()]


def shift_weights(model):
    """What an epoch of training does, as far as the callback can tell: other weights."""
    model.set_weights([w + 1.0 for w in model.get_weights()])


@pytest.mark.parametrize(
    "logs, loss",
    [({"loss": float("nan"), "val_loss": 0.2}, "training"), ({"loss": 0.2, "val_loss": float("inf")}, "validation")],
)
def test_the_first_epoch_with_a_loss_that_is_not_finite_stops_the_training(callback, logs, loss):
    callback.on_epoch_end(0, {"loss": 0.3, "val_loss": 0.25})
    shift_weights(callback.model)
    callback.on_epoch_end(1, logs)
    assert callback.model.stop_training
    assert callback.diverged[:2] == (1, loss) and not np.isfinite(callback.diverged[2])
    assert callback.best_epoch == 0
    diverged = weights_of(callback.model)
    callback.on_train_end()  # leaves the weights alone: the run fails
    assert all(np.array_equal(a, b) for a, b in zip(callback.model.get_weights(), diverged, strict=True))


def test_finite_losses_do_not_stop_the_training(callback):
    for epoch, val_loss in enumerate([0.3, 0.2, 0.25]):
        callback.on_epoch_end(epoch, {"loss": 0.3, "val_loss": val_loss})
    assert not callback.model.stop_training and callback.diverged is None and callback.best_epoch == 1


def test_of_equal_validation_losses_the_first_epochs_weights_are_kept(callback):
    kept = None
    for epoch, val_loss in enumerate([0.3, 0.2, 0.25, 0.2]):
        shift_weights(callback.model)
        if epoch == 1:
            kept = weights_of(callback.model)
        callback.on_epoch_end(epoch, {"loss": 0.3, "val_loss": val_loss})
    callback.on_train_end()
    assert callback.best_epoch == 1
    assert all(np.array_equal(a, b) for a, b in zip(callback.model.get_weights(), kept, strict=True))


# --- TensorFlow's load-time notices ---

NOTICES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "I0000 00:00:1796006652.069747    4230 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders. "
    "To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n",
    "I0000 00:00:1796006652.101256    4230 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
    "GPU will not be used.\n",
]


def test_load_notices_written_by_native_code_are_left_out_and_anything_else_kept(capfd):
    other = "E0000 00:00:1796006652.2    4230 cuda_dnn.cc:8579] Unable to register cuDNN factory\n"
    with madness.model._without_load_notices():
        for line in [*NOTICES, other, *NOTICES]:
            os.write(2, line.encode())  # file descriptor 2, as C++ writes, below Python's sys.stderr
    assert capfd.readouterr().err == other
