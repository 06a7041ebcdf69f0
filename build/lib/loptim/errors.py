"""Exceptions raised at loptim's boundaries; each message says what was wrong and what to do."""


class LoptimError(Exception):
    """Base class of every error loptim raises on purpose."""


class UnknownNameError(LoptimError, KeyError):
    """A task, optimizer, family or recipe name that no registry holds."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DataMissingError(LoptimError, FileNotFoundError):
    """A data set whose package is not installed; the message gives the install command."""


class WeightsError(LoptimError, ValueError):
    """A pretrained weights file that is missing, corrupt or does not fit the optimizer."""


class DivergedError(LoptimError, FloatingPointError):
    """A loss became NaN or infinite."""


class SuiteDataError(LoptimError, ValueError):
    """Meta-training was handed a task on data the partition (loptim/tasks/partition.py) holds out for the suite."""
