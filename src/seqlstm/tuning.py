"""`seqlstm tune`: a search over training settings on the user's data, with Optuna.

Every trial trains as the final model will (the plan's budget; to its end where the plan trains a
small file to its end, with the plan's early stopping otherwise), in its own run directory
(DIR/trials/<study>/NNNN), on the training sequences less a stratified validation share, and is
scored on that share: the mean over a window of consecutive validations, ties broken by the lower
validation loss. On a small file, whose validation share is a few sequences, a trial runs on up to
three folds of a stratified k-fold split and scores their mean. A trial reports each validation to
Optuna's pruner, which stops it when its curve falls behind the other trials' at the same point. No
trial reads the test split. The first trial of a new study tries the settings `seqlstm train`
would choose. When the trials are done, the best settings train once more on all the training
sequences, on the schedule the trials had, for the epochs their windows chose, and that model alone
is tested: DIR/best.ckpt, with DIR/results.csv (every trial) and Optuna's plots of the search in
DIR/plots/.

The study lives in Optuna storage: DIR/study.db (SQLite) unless `storage` names another database
Optuna accepts (PostgreSQL, MySQL: workers on several machines). Several `seqlstm tune` processes
on one study share its trials; a killed one is started again and goes on where the study stands
(its unfinished trial is failed once its heartbeat stops, and run again).
"""

from __future__ import annotations

import csv
import fcntl
import json
import logging
import math
import os
import time
import statistics
import warnings
from contextlib import contextmanager
from itertools import islice
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import TrainConfig
from .errors import ConfigError, OutputError
from .data.records import source_for
from .training import Recorder, TrainResult, train
from .plan import VALIDATION_SHARE  # a small file's trials validate on the share a larger file's plan holds out
from .training.loop import with_plan

log = logging.getLogger(__name__)

# Settings a search space may not hold: what is read and written, and the run's bookkeeping.
NOT_TUNABLE = ("dataset", "data_dir", "test_dataset", "test_size", "label_column", "out", "run_dir", "log", "log_every",
               "device", "plan", "digests", "checkpoint_every", "eval_every")
# Optuna's median pruner: no pruning before this many trials have finished, nor before this
# share of a trial's planned epochs (at least PRUNE_FROM_VALIDATION validations): the one-cycle
# schedule warms up over its first 30 % of steps, and a curve judged earlier says little (measured:
# judged from the 5th epoch, a first tune of ACSF1 pruned 70 % of its trials within 2 s each, and
# its finished trials stopped on a flat curve of 20 validation sequences after some 12 epochs).
PRUNE_AFTER_TRIALS = 4
PRUNE_FROM_SHARE = 0.3
PRUNE_FROM_VALIDATION = 5
# A worker's heartbeat: a trial whose process has not written one for GRACE_S seconds is failed
# and queued again.
HEARTBEAT_S = 10
GRACE_S = 30
# A small file's validation share is a few sequences, where one sequence more or less right moves
# the score by points (ArrowHead: 8 of 36, 12.5 points apiece; a 6-minute tune chose on 20 ACSF1
# sequences and lost 20 points on the test). A trial then trains and validates on as many folds of a
# stratified k-fold split as validate MIN_VALIDATED sequences in all, at most MAX_FOLDS (each fold
# costs a training), and scores their mean.
MIN_VALIDATED = 60
MAX_FOLDS = 3
# A fold's validations are reported to the pruner as steps from fold x FOLD_STEPS: apart, whatever their number.
FOLD_STEPS = 1_000_000
# A run's score is the mean over a window of consecutive validations (one per epoch), not one
# validation's: this share of the planned epochs, at least MIN_WINDOW.
WINDOW_SHARE = 0.1
MIN_WINDOW = 3


def default_space(patch: int) -> dict:
    """The search over the levers measured to matter (docs/own-data.md), around the plan's `patch`."""
    return {
        "lr": {"low": 3e-4, "high": 3e-2, "log": True},
        "hidden_size": [32, 64, 128, 256],
        "num_layers": [1, 2, 3],
        "cell": ["lstm", "gru"],
        "bidirectional": [False, True],
        "pool": ["last", "mean", "max", "attention"],
        "dropout": {"low": 0.0, "high": 0.5},
        "patch": sorted({max(1, patch // 2), patch, 2 * patch}),
        "batch_size": [8, 16, 32, 64],
    }


def read_space(path: str | os.PathLike) -> dict:
    """A search space from a YAML file: `name: [choices]`, `name: {low, high[, log][, step]}` (whole
    numbers for both: an integer range) or `name: value` (fixed), for TrainConfig's fields.
    ConfigError naming the file and the entry that is wrong."""
    import yaml

    try:
        space = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"--space {path}: cannot read it ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--space {path}: not valid YAML: {e}") from None
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"--space {path}: expected a mapping of settings to their choices, e.g. 'lr: {{low: 0.001, "
                          "high: 0.03, log: true}' or 'cell: [lstm, gru]'")
    check_space(space, f"--space {path}")
    return space


def check_space(space: dict, where: str) -> None:
    """ConfigError for an entry of `space` that names no tunable setting, or is no range, list or value."""
    known = {f.name for f in fields(TrainConfig)} - set(NOT_TUNABLE)
    for name, spec in space.items():
        if name not in known:
            raise ConfigError(f"{where}: {name!r} is no setting a search can choose; choose among "
                              f"{', '.join(sorted(known))}")
        if isinstance(spec, list) and not spec:
            raise ConfigError(f"{where}: {name}: an empty list of choices")
        if isinstance(spec, dict):
            bounds = {k: number(spec.get(k), f"{where}: {name}: {k}") for k in ("low", "high") if k in spec}
            unknown = set(spec) - {"low", "high", "log", "step"}
            if len(bounds) != 2 or unknown:
                raise ConfigError(f"{where}: {name}: a range is {{low: A, high: B}}, with log: true or step: S if wanted"
                                  f"{f'; unknown keys: {sorted(unknown)}' if unknown else ''}")
            if not bounds["low"] < bounds["high"]:
                raise ConfigError(f"{where}: {name}: low must be below high, got {bounds['low']} and {bounds['high']}")
            if spec.get("log") and bounds["low"] <= 0:
                raise ConfigError(f"{where}: {name}: a log range needs low > 0, got {bounds['low']}")


def number(value, where: str) -> float | int:
    """A range's bound: YAML reads 1e-3 (without a dot) as text, so numbers in text are taken too."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    return value


def suggest(trial, space: dict) -> dict:
    """The settings `trial` draws from `space` (fixed entries as they are)."""
    chosen = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            chosen[name] = trial.suggest_categorical(name, spec)
        elif isinstance(spec, dict):
            low, high = number(spec["low"], name), number(spec["high"], name)
            if isinstance(low, int) and isinstance(high, int) and not isinstance(spec.get("step", 1), float):
                chosen[name] = trial.suggest_int(name, low, high, step=spec.get("step", 1), log=bool(spec.get("log")))
            else:
                chosen[name] = trial.suggest_float(name, low, high, step=spec.get("step"), log=bool(spec.get("log")))
        else:
            chosen[name] = spec
    return chosen


# A trial's score is its validation accuracy (%) less this much per unit of validation loss: on a
# few validation sequences many trials reach the same accuracy, and the lower loss then decides
# (as the trainer's own best validation does), never outweighing one sequence more classified right.
TIE_BREAK = 1e-3


def score(accuracy: float, loss: float) -> float:
    return accuracy - TIE_BREAK * min(loss, 100.0)


class Report(Recorder):
    """Tells a trial each validation's score (as step `offset` + its number: one trial's folds
    follow each other), keeps them, and stops the run when Optuna's pruner or the deadline says so."""

    def __init__(self, trial, offset: int = 0, deadline: float = math.inf):
        self.trial, self.offset, self.deadline = trial, offset, deadline
        self.validations: list[tuple[float, float, int]] = []  # (score, accuracy, epoch)
        self.pruned = self.late = False

    def after_step(self, trainer, step) -> None:
        if time.monotonic() > self.deadline:
            self.late = trainer.stopping = True

    def after_validation(self, trainer, step, result, improved) -> None:
        value = score(result.accuracy, result.loss)
        self.validations.append((value, result.accuracy, step.epoch))
        self.trial.report(value, self.offset + len(self.validations))
        if self.trial.should_prune():
            self.pruned = trainer.stopping = True

    def chosen(self, window: int, to_the_end: bool) -> tuple[float, float, int]:
        """The run's (score, validation accuracy, epochs): the means over `window` consecutive
        validations, the last ones for a run trained to its end, else the best ones, and the epoch
        that window ends at."""
        window = min(window, len(self.validations))
        means = np.convolve([v[0] for v in self.validations], np.ones(window) / window, mode="valid")
        end = len(means) - 1 if to_the_end else int(np.argmax(means))
        accuracy = float(np.mean([v[1] for v in self.validations[end:end + window]]))
        return float(means[end]), accuracy, self.validations[end + window - 1][2]


class Fold:
    """A record whose validation share is fold `fold` of a stratified `splits`-fold split of the
    training sequences (seeded): the record itself always holds out the same ones."""

    def __init__(self, source, fold: int, splits: int, seed: int):
        self.source, self.fold, self.splits, self.seed = source, fold, splits, seed

    def __getattr__(self, name):
        if name == "source" or name.startswith("__"):  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.source, name)

    def hold_out(self, labels: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(kept, held out) sample indices of `labels` (int64 (N,)): the fold's; `size` is the record's
        own hold-out's, which the split's number of folds stands for."""
        from sklearn.model_selection import StratifiedKFold

        splits = StratifiedKFold(n_splits=self.splits, shuffle=True, random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a class rarer than the folds: in some folds only
            kept, held = next(islice(splits.split(np.zeros(len(labels)), labels.numpy()), self.fold, None))
        return torch.from_numpy(kept), torch.from_numpy(held)


def folds_for(labels: torch.Tensor, validation: int) -> tuple[int, int]:
    """(the folds a trial trains on, k of the stratified k-fold split they come from) for training
    sequences of `labels` (int64 (N,)) that validate on `validation` of them at a time: k is
    N / `validation`, at most the largest class's count (a stratified split needs as many members);
    (1, 0) for the record's own hold-out where fewer than 2 folds would do."""
    k = min(max(2, round(len(labels) / validation)), int(torch.bincount(labels).max()))
    folds = min(MAX_FOLDS, math.ceil(MIN_VALIDATED / validation), k)
    return (folds, k) if folds > 1 else (1, 0)


class StopAfter(Recorder):
    """Ends a run after `epochs` epochs, on the schedule it was planned with for more."""

    everywhere = True

    def __init__(self, epochs: int):
        self.epochs = epochs

    def epoch_end(self, trainer, step) -> None:
        trainer.stopping = trainer.stopping or step.epoch >= self.epochs


@dataclass
class TuneResult:
    """What `tune` did: the study, the best trial's settings and the final model's training."""

    study: object  # optuna.Study
    best_params: dict
    final: TrainResult | None  # None: no trial finished
    results: Path  # results.csv
    plots: list[Path]


def tune(config: TrainConfig, folder: str | os.PathLike, trials: int = 20, timeout: float | None = None,
         space: dict | None = None, storage: str | None = None, study_name: str | None = None,
         log_line: Callable[[str], None] = print, source=None, fixed: tuple[str, ...] = ()) -> TuneResult:
    """Search the training settings of `space` for `config`'s data, then train and test the best.

    Args:
        config: the fixed settings and the data (`dataset`, `test_dataset`...); what `space` holds is drawn per trial.
        folder: where the study, the trials' run directories, best.ckpt, results.csv and plots/ go.
        trials: the study's trials, over all processes working on it (finished or pruned).
        timeout: end the search after this many seconds (this process): no trial starts later, and one
            still running is stopped and recorded as pruned; then the best is trained.
        space: TrainConfig field -> choices (see `read_space`); None: `default_space`.
        storage: an Optuna storage URL; None: sqlite in `folder`.
        study_name: the study in the storage; None: the dataset's name.
        log_line: receives a line per trial and the final model's lines.
        source: the data's record, as `train` takes it; None: the one `config.dataset` names.
        fixed: settings `config` fixes (the flags given): left out of the default space.
    Returns:
        TuneResult. Raises ConfigError for a bad space or setting (or without Optuna), OutputError when
        `folder` cannot be written.
    """
    try:
        import optuna
        import sklearn.model_selection  # noqa: F401  (a small file's folds)
    except ImportError as e:
        raise ConfigError(f'seqlstm tune needs Optuna and scikit-learn ({e}); install them with: pip install "seqlstm[tune]"') from None
    if not (isinstance(trials, int) and trials >= 1):
        raise ConfigError(f"--trials must be a positive whole number, got {trials}")
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {folder}: {e.strerror or e}") from None
    source = source_for(config.dataset) if source is None else source
    config = source.pin(config)
    data = source.load(config, test=False)  # checked once before any trial; the plan's choices for it
    planned = with_plan(config, data, source)
    validation = config.val_size or planned.val_size or max(2, math.ceil(VALIDATION_SHARE * len(data.train.labels)))
    patience = config.patience if config.patience is not None else planned.patience
    # Folds where a trial trains to the end, as the plan does on a small file; one that stops early
    # (a larger file, or --patience) chooses on its one share, as train does.
    folds, splits = folds_for(data.train.labels, validation) if not patience else (1, 0)
    del data
    if space is None:
        space = {name: spec for name, spec in default_space(planned.patch).items() if name not in fixed}
    check_space(space, "the search space")
    name = study_name or Path(str(config.dataset)).stem
    # A trial validates after every epoch and trains as the final model will: to the end of the
    # plan's epochs where the plan trains a file to its end (a small one), else with its patience.
    epochs = planned.epochs
    window = max(MIN_WINDOW, math.ceil(WINDOW_SHARE * epochs))
    study = open_study(storage or f"sqlite:///{(folder / 'study.db').resolve()}", name, config.seed,
                       prune_from=max(PRUNE_FROM_VALIDATION, math.ceil(PRUNE_FROM_SHARE * epochs)))
    enqueue_default(study, space, planned)
    trial_dirs = folder / "trials" / name
    deadline = math.inf if timeout is None else time.monotonic() + timeout

    def objective(trial) -> float:
        settings = suggest(trial, space)
        start = time.perf_counter()
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())
        runs = []
        for fold in range(folds):
            run_dir = trial_dirs / f"{trial.number:04d}" / (f"fold-{fold + 1}" if folds > 1 else "")
            # The space may choose the validation share and the patience too; otherwise the trial validates.
            trial_config = replace(replace(config, val_size=validation, patience=patience),
                                   **settings, run_dir=str(run_dir), out=str(run_dir / "model.ckpt"))
            report = Report(trial, offset=fold * FOLD_STEPS, deadline=deadline)
            with quiet(logging.getLogger("seqlstm")):  # a trial speaks in one line, below, not in its run's
                train(trial_config, log=lambda line: None, recorders=[report],
                      source=Fold(source, fold, splits, config.seed) if folds > 1 else source, test=False)
            if report.pruned or report.late:
                why = "stopped at the time limit" if report.late else "pruned"
                log_line(f"trial {trial.number}: {why} after {fold * epochs + len(report.validations)} validations ({shown})")
                raise optuna.TrialPruned()
            if not report.validations:
                raise ConfigError(f"trial {trial.number} validated on nothing ({', '.join(f'{k}={v}' for k, v in settings.items())}): "
                                  "a search chooses on validation; leave val_size out of the space or above 0")
            runs.append(report.chosen(window, to_the_end=not trial_config.patience))
        value = statistics.fmean(r[0] for r in runs)
        accuracy = statistics.fmean(r[1] for r in runs)
        budget = int(statistics.median_low(r[2] for r in runs))
        trial.set_user_attr("epochs", budget)
        trial.set_user_attr("planned_epochs", trial_config.epochs or epochs)
        trial.set_user_attr("accuracy", accuracy)
        trial.set_user_attr("folds", [round(r[1], 2) for r in runs])
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 1))
        over = f" over {folds} folds" if folds > 1 else ""
        log_line(f"trial {trial.number}: {accuracy:.2f} % on validation{over}, to epoch {budget} "
                 f"({shown}) in {time.perf_counter() - start:.0f} s")
        return value

    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    left = trials - len(study.get_trials(deepcopy=False, states=finished))
    if left > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.optimize(objective, timeout=timeout, callbacks=[optuna.study.MaxTrialsCallback(trials, states=finished)])
    # Another worker's trial still running may yet be the best: wait for it (a dead worker's is failed
    # once its heartbeat is stale), so the best is trained once, on the study's last word.
    waited = time.monotonic() + GRACE_S + HEARTBEAT_S  # never longer than a dead worker's trial takes to fail
    while time.monotonic() < waited and study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        optuna.storages.fail_stale_trials(study)
        time.sleep(1)
    results = write_results(study, folder / "results.csv")
    plots = draw_plots(study, folder / "plots")
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        return TuneResult(study, {}, None, results, plots)
    best = study.best_trial
    final = train_best(config, best, folder, log_line, source)
    return TuneResult(study, dict(best.params), final, results, plots)


@contextmanager
def quiet(logger: logging.Logger):
    """Within the block, `logger` passes warnings and errors only."""
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def enqueue_default(study, space: dict, planned: TrainConfig) -> None:
    """Queue, as a new study's first trial, the settings `seqlstm train` chooses for the data
    (`planned`), those of them `space` searches: the search starts from the measured default, and
    keeps it unless a trial scores better."""
    default = {name: getattr(planned, name) for name, spec in space.items() if holds(spec, getattr(planned, name))}
    if default and not study.trials:
        study.enqueue_trial(default, skip_if_exists=True)


def holds(spec, value) -> bool:
    """Whether the search space entry `spec` (a list of choices or a range) can draw `value`."""
    if isinstance(spec, list):
        return value in spec
    if isinstance(spec, dict) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return number(spec["low"], "low") <= value <= number(spec["high"], "high")
    return False


def open_study(url: str, name: str, seed: int, prune_from: int = PRUNE_FROM_VALIDATION):
    """The study `name` in the storage at `url`, created if new: maximising, TPE-sampled, and
    median-pruned from validation `prune_from` on.

    The sampler is seeded from `seed` and the number of trials the study holds already, so a tune
    is reproducible and a worker joining a study draws its own settings.
    """
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            storage = RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
                                 heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                 heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2))
        except Exception as e:  # SQLAlchemy raises many kinds for a bad URL or an unreachable database
            raise ConfigError(f"--storage {url}: cannot open it ({type(e).__name__}: {e})") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    existing = len(optuna.load_study(study_name=name, storage=storage).trials) \
        if name in optuna.get_all_study_names(storage) else 0
    sampler = optuna.samplers.TPESampler(seed=seed * 1_000_003 + existing)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER_TRIALS, n_warmup_steps=prune_from)
    return optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner, direction="maximize",
                               load_if_exists=True)


def train_best(config: TrainConfig, best, folder: Path, log_line: Callable[[str], None], source) -> TrainResult | None:
    """Train the best trial's settings on all the training sequences for the epochs it needed, test
    it, and save DIR/best.ckpt; once per best trial, whichever worker gets there first."""
    done = folder / "best.json"
    with open(folder / ".best.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker of this folder may be training it
        if done.is_file() and json.loads(done.read_text()).get("trial") == best.number:
            log_line(f"the best trial ({best.number}) was trained and tested already: {folder / 'best.ckpt'}")
            return None
        planned = best.user_attrs.get("planned_epochs")
        epochs = max(1, best.user_attrs.get("epochs", 1))
        # The trials' schedule (their planned epochs), stopped where the trials' windows ended.
        stop = [StopAfter(epochs)] if planned and epochs < planned else []
        final = replace(config, **{**best.params, "epochs": planned or epochs, "val_size": 0, "patience": 0,
                                   "run_dir": str(folder / "best" / f"trial-{best.number:04d}"),
                                   "out": str(folder / "best.ckpt")})
        accuracy = best.user_attrs.get("accuracy", best.value)
        limit = f", at most {final.max_steps} steps" if final.max_steps else ""
        log_line(f"best: trial {best.number}, {accuracy:.2f} % on validation; training it on all the training sequences "
                 f"for {epochs} of {planned or epochs} epochs{limit}, then testing it once")
        result = train(final, log=log_line, recorders=stop, source=source)
        done.write_text(json.dumps({"trial": best.number, "params": best.params, "epochs": epochs, "planned_epochs": planned,
                                    "test_accuracy": None if result.evaluation is None else result.evaluation.accuracy}))
    return result


def write_results(study, path: Path) -> Path:
    """Every trial as a CSV row: number, state, validation accuracy, score, epochs, seconds, then its settings."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({name for t in trials for name in t.params})
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "state", "validation_accuracy", "score", "epochs", "seconds", *names])
        for t in trials:
            writer.writerow([t.number, t.state.name.lower(), t.user_attrs.get("accuracy", ""),
                             "" if t.value is None else round(t.value, 6),
                             t.user_attrs.get("epochs", ""), t.user_attrs.get("seconds", ""),
                             *(t.params.get(n, "") for n in names)])
    return path


def draw_plots(study, folder: Path) -> list[Path]:
    """Optuna's optimisation history and parameter importances as PNGs (those the trials allow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as plots

    folder.mkdir(parents=True, exist_ok=True)
    drawn = []
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    for name, draw, needs in (("history.png", plots.plot_optimization_history, 1),
                              ("importances.png", plots.plot_param_importances, 2)):
        if len(complete) < needs:
            continue
        with warnings.catch_warnings():
            # Optuna warns that the plots are experimental, and when few trials make importances equal.
            warnings.simplefilter("ignore")
            try:
                axes = draw(study)
            except (ValueError, RuntimeError) as e:  # e.g. importances of settings that never varied
                log.warning("no %s: %s", name, e)
                continue
        axes.figure.savefig(folder / name, dpi=120, bbox_inches="tight")
        plt.close(axes.figure)
        drawn.append(folder / name)
    return drawn
