"""The same bits on any machine: each network trained along the fast path gives the Brier score and
the loss history recorded here as literals, digit for digit.

The real-data references are bench/RESULTS.md's, printed on an Intel Xeon and given again, bit for
bit, by an AMD EPYC; the synthetic ones were recorded on that AMD EPYC. A machine whose CPU,
TensorFlow or XLA rounds differently fails these tests: its runs cannot reproduce ours bit for bit,
and `reproduce` needs a tolerance there (docs/reproducibility.md). The synthetic league is data
every machine has; the real women's data are checked where they sit beside the clone.
"""

from __future__ import annotations

import pytest

from conftest import REAL_DATA
from madness import dataset, model, names, scoring

pytestmark = pytest.mark.usefixtures("synthetic_league_once")

SEED = 42
LEARNING_RATE = 0.001
BATCH_SIZE = 32
SEASONS = dataset.Seasons(2003, 2019, 2022, 2023)  # the defaults: train < 2019 <= val < 2022 <= test <= 2023


def features(data: str, league: str, workdir) -> dataset.Built:
    """The feature table of `data` ('synthetic' or a folder of Kaggle files) over the default seasons."""
    files, synthetic_data = dataset.read_inputs(data, league, SEED, workdir)
    return dataset.build(files, SEASONS, synthetic_data)


def reference_training(built: dataset.Built, network: str, epochs: int) -> tuple[float, list, list]:
    """Train `network` along the fast path as bench/training_speed.py does; its test Brier and loss history."""
    columns = built.feature_names
    x_train, y_train = dataset.split_xy(built.games, columns, names.TRAIN)
    x_val, y_val = dataset.split_xy(built.games, columns, names.VAL)
    x_test, y_test = dataset.split_xy(built.games, columns, names.TEST)
    trained = model.train(
        network, built.scaler, LEARNING_RATE, x_train, y_train, x_val, y_val, epochs, BATCH_SIZE, SEED, fast=True
    )
    return scoring.brier(y_test, model.predict(trained.model, x_test)), trained.train_loss, trained.val_loss


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return features("synthetic", "both", tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def real_womens(tmp_path_factory):
    if not (REAL_DATA / "WRegularSeasonCompactResults.csv").is_file():
        pytest.skip(f"real Kaggle data not found at {REAL_DATA}")
    return features(str(REAL_DATA), "W", tmp_path_factory.mktemp("real"))


SYNTHETIC_EPOCHS = 3
# network: (brier, train_loss per epoch, val_loss per epoch), synthetic league (both), seed 42, lr 0.001.
SYNTHETIC = {
    "small": (
        0.21118315965965537,
        [0.2098274827003479, 0.19423124194145203, 0.18977177143096924],
        [0.2093011736869812, 0.2089920938014984, 0.2083980292081833],
    ),
    "medium": (
        0.2107212449706362,
        [0.20160429179668427, 0.19008956849575043, 0.18482191860675812],
        [0.20412883162498474, 0.20669740438461304, 0.20633283257484436],
    ),
    "large": (
        0.20999423212134807,
        [0.20092636346817017, 0.1892017126083374, 0.18178726732730865],
        [0.2031712532043457, 0.2067374587059021, 0.2080554962158203],
    ),
}


@pytest.mark.parametrize("network", model.ARCHITECTURES)
def test_the_synthetic_league_gives_the_recorded_bits(network, synthetic):
    brier, train_loss, val_loss = reference_training(synthetic, network, SYNTHETIC_EPOCHS)
    assert (brier, train_loss, val_loss) == SYNTHETIC[network]


# bench/RESULTS.md's training speed on the real women's data, 100 epochs: fast=True on an Intel Xeon,
# the same bits on an AMD EPYC.
REAL_WOMENS_BRIER = {"small": 0.16637479497694718, "medium": 0.17071012924738116, "large": 0.16556570779139398}


@pytest.mark.slow  # 100 epochs each
@pytest.mark.realdata
@pytest.mark.parametrize("network", model.ARCHITECTURES)
def test_the_real_womens_data_give_the_briers_bench_results_printed(network, real_womens):
    brier, _, _ = reference_training(real_womens, network, 100)
    assert brier == REAL_WOMENS_BRIER[network]
