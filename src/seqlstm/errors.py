"""Errors a user can act on. The CLI prints their message and exits 1, without a traceback."""


class SeqlstmError(Exception):
    """Base class: something the user can fix (bad file, missing data, wrong flag)."""


class DataError(SeqlstmError):
    """A dataset file is missing, malformed or fails its checksum."""


class DownloadError(DataError):
    """No mirror delivered a valid copy of a dataset file."""


class CheckpointError(SeqlstmError):
    """A checkpoint cannot be read, is not a seqlstm checkpoint, or is unsafe to load."""


class ConfigError(SeqlstmError):
    """An option has a value that cannot work (unknown device, non-positive batch size, ...)."""


class InputError(SeqlstmError):
    """A file given for prediction cannot be read as an image or array the model can take."""


class ExportError(SeqlstmError):
    """A model cannot be exported, or the exported file does not reproduce the model."""


class RunError(SeqlstmError):
    """A run directory cannot be used: not a run, already holds one, or its metrics are damaged."""


class NonFiniteLossError(SeqlstmError):
    """Training produced a NaN or infinite loss; nothing was saved from that point on."""


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped training after the running step; the run was saved to resume from."""

    def __init__(self, signum: int, step: int, checkpoint):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        super().__init__(f"interrupted at step {step}; saved {checkpoint}")


class OutputError(SeqlstmError):
    """A result file (checkpoint, figure, export) cannot be written where it was asked for."""


class ServeError(SeqlstmError):
    """The web app cannot start: its packages are missing, or the address cannot be listened on."""
