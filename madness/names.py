"""Every column, metric, param, tag, artifact and run-status name used in more than one place."""

import enum

# --- Kaggle file stems (prefixed by league letter "M" or "W") ---
REGULAR_COMPACT = "RegularSeasonCompactResults"
REGULAR_DETAILED = "RegularSeasonDetailedResults"
TOURNEY_COMPACT = "NCAATourneyCompactResults"
TOURNEY_SEEDS = "NCAATourneySeeds"
TEAMS = "Teams"

LEAGUES = ("M", "W")
LEAGUE_CHOICES = ("M", "W", "both")
SYNTHETIC = "synthetic"

# --- Kaggle columns ---
SEASON = "Season"
DAYNUM = "DayNum"
WTEAM = "WTeamID"
LTEAM = "LTeamID"
WSCORE = "WScore"
LSCORE = "LScore"
WLOC = "WLoc"
NUMOT = "NumOT"
SEED = "Seed"
TEAM_ID = "TeamID"
TEAM_NAME = "TeamName"
BOX_STATS = ("FGM", "FGA", "FGM3", "FGA3", "FTM", "FTA", "OR", "DR", "Ast", "TO", "Stl", "Blk", "PF")
# The article's box-score features: a subset of Kaggle's detailed columns.
FEATURE_BOX_STATS = ("FGM", "FGA", "FGM3", "FGA3", "OR", "DR", "Ast", "Stl", "PF")

# --- derived columns ---
LEAGUE = "League"
OPP = "Opp"
POINTS_FOR = "PointsFor"
POINTS_AGAINST = "PointsAgainst"
MARGIN = "Margin"
WIN_RATIO = "WinRatio"
ELO = "Elo"
SEED_NUM = "SeedNum"
T1 = "T1_"
T2 = "T2_"
T1_TEAM = "T1_TeamID"
T2_TEAM = "T2_TeamID"
TARGET = "T1_Won"
SPLIT = "Split"
TRAIN, VAL, TEST = "train", "val", "test"
SUBMISSION_ID = "ID"
SUBMISSION_PRED = "Pred"

# --- metrics ---
TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
BRIER = "brier"
LOG_LOSS = "log_loss"
ACCURACY = "accuracy"
BASELINE_BRIER = "baseline_brier"
BEST_EPOCH = "best_epoch"
N_GAMES = "n_games"
# Brier minus the seed baseline's on the same test games, and its paired-bootstrap 95% interval.
BRIER_VS_BASELINE = "brier_minus_baseline"
BRIER_VS_BASELINE_LOW = "brier_minus_baseline_low"
BRIER_VS_BASELINE_HIGH = "brier_minus_baseline_high"
PREDICTION = "p"  # a predictions file's columns beside the game's: the model's and the baseline's P(team 1 wins)
BASELINE_PREDICTION = "p_baseline"
# A pair trained from several seeds (param `seeds` > 1): each member's Brier (a history, step =
# member), their mean and sample standard deviation; `brier` is then the averaged model's.
BRIER_SEED = "brier_seed"
BRIER_MEAN = "brier_mean"
BRIER_SD = "brier_sd"
# A backtest pair's run: each predicted season's games, Brier and seed-baseline Brier (step = season).
SEASON_GAMES = "season_games"
SEASON_BRIER = "season_brier"
SEASON_BASELINE_BRIER = "season_baseline_brier"

# --- tags ---
TAG_SYNTHETIC = "data.synthetic"
TAG_DATA_DIGEST = "data.digest"
TAG_DATA_MATCHES_MODEL = "data.matches_model"  # evaluate, predict: the data read are the model's training data
TAG_DIRTY = "git.dirty"
TAG_STATE = "git.state"
TAG_SWEEP = "sweep_run_id"
TAG_EVALUATED = "evaluated_run_id"
TAG_REPRODUCES = "reproduces"
TAG_ENV_MANAGER = "env_manager"
TAG_ENTRY_POINT = "entry_point"
TAG_HOST = "process.host"
TAG_PROCESS = "process.token"  # pid:start time of the step's process
TAG_HEARTBEAT = "process.heartbeat"  # unix seconds, refreshed while the step runs against a remote store
# On a train run: "true" when its network predicts about one probability for every game.
TAG_CONSTANT = "predictions.constant"
TAG_SECONDS = "seconds"  # a train run's time split: start-up and data, training, scoring and logging
TAG_ENDED_BY = "ended_by"  # why a run that was left RUNNING was ended by another process
TAG_STOPPED = "stopped"  # why a step stopped before its end (a signal, its launcher gone); its run ends KILLED
ENV_WATCH = "MADNESS_WATCH"  # process tokens whose end stops a step: set by a launching step for its children
TAG_SEASON_RUNS = "backtest.season_runs"  # on a backtest pair run: its season runs' ids, in season order
TAG_CLAIM_KEY = "claim.key"  # on a train or ingest run: the claim it was launched under
TAG_FIGURES_DIGEST = "report.figures_digest"  # on a run holding report/: what its two charts were drawn from
CLAIM_PREFIX = "claim."  # experiment tags claim.<key>.<holder run id>: who trains what (steps._coordination.Claims)

# --- artifacts ---
FEATURES_DIR = "features"
TEAM_SEASON_FILE = "team_season.csv"
GAMES_FILE = "games.csv"
SCALER_FILE = "scaler.json"
MANIFEST_FILE = "manifest.json"
FEATURE_FILES = (GAMES_FILE, TEAM_SEASON_FILE, SCALER_FILE, MANIFEST_FILE)  # an ingest run's features/
LOSS_PLOT = "loss.png"
PREDICTIONS_FILE = "predictions.csv"  # a train run's test rows: the game, its outcome, both predictions
MEMBERS_FILE = "members.json"  # a train run of several seeds: each member's seed, best epoch and Brier
CALIBRATION_PLOT = "calibration.png"
MODEL_DIR = "model"
SUBMISSION_FILE = "submission.csv"
REPORT_DIR = "report"
PAIRS_FILE = "pairs.json"
RUNS_CSV = "runs.csv"
RUNS_MD = "runs.md"
BRIER_CHART = "brier_vs_lr.png"
LOSS_GRID = "loss_curves.png"
FILTERED_CSV = "filtered_runs.csv"
BEST_FILE = "best.json"
BACKTEST_DIR = "backtest"  # a backtest run's report: ranking.csv, ranking.md, brier_by_season.png, best.json
RANKING_CSV = "ranking.csv"
RANKING_MD = "ranking.md"
SEASON_CHART = "brier_by_season.png"
COMPARISON_FILE = "comparison.txt"  # a reproduce run: each metric, original against rerun

# --- experiment tags MLflow's UI reads (set on every experiment the project creates) ---
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"  # the experiment's type in the UI
EXPERIMENT_KIND_TRAINING = "custom_model_development"  # "Machine learning" (the other: genai_development)
TAG_DESCRIPTION = "mlflow.note.content"  # the description shown above the experiment's runs
TAG_OUR_DESCRIPTION = "madness.description"  # the description as the project last wrote it: a differing one is a user's

# --- MLflow's own run tags, as the project reads or sets them ---
TAG_COMMIT = "mlflow.source.git.commit"
TAG_RUN_NAME = "mlflow.runName"
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_PROJECT_ENTRY_POINT = "mlflow.project.entryPoint"
TAG_PROJECT_ENV = "mlflow.project.env"  # set by MLflow for virtualenv, uv, conda and docker, never for local
TAG_PARENT_RUN = "mlflow.parentRunId"
TAG_DATA_CONTEXT = "mlflow.data.context"  # on a logged dataset input: its split

# --- environments a run can be launched in (mlflow run --env-manager) ---
ENV_MANAGERS = ("local", "virtualenv", "uv", "conda")


# --- a run's status ---
class Status(enum.StrEnum):
    """A run's status as MLflow names it (a str, so it compares equal to MLflow's own strings)."""

    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


ENDED = (Status.FINISHED, Status.FAILED, Status.KILLED)
