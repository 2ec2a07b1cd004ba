"""Errors wsx raises for bad input. Each message names what was wrong and what to do."""


class WsxError(Exception):
    """Base class of every error wsx raises on purpose."""


class PluginNotFoundError(WsxError, KeyError):
    """A strategy, backend, clusterer or approximation name is unknown."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class PluginUnavailableError(WsxError):
    """A plugin is registered but its framework is not installed."""


class BackendNotFoundError(WsxError):
    """No backend recognises the model object."""


class InvalidModelError(WsxError):
    """The model cannot be explored (e.g. no layers of interest, non-finite weights)."""


class InvalidDataError(WsxError):
    """The scoring data is empty, mis-shaped or inconsistent with the model."""


class InvalidSettingError(WsxError, ValueError):
    """An argument of explore/apply/export is outside its valid range."""


class MetricError(WsxError):
    """The metric callable raised or returned a non-finite value."""


class BudgetTooSmallError(WsxError):
    """The scoring budget cannot cover a strategy's first step."""


class CorruptFileError(WsxError):
    """A results, journal or artifact file is damaged or was not written by wsx."""


class JournalMismatchError(WsxError):
    """An --out directory holds the journal of a run with another model, data or settings."""


class OutputError(WsxError):
    """The --out directory or a file wsx writes cannot be written (full disk, read-only, no permission,
    a path under a file) or another run holds the --out directory."""


class ExecutorError(WsxError):
    """Candidates cannot be scored where the executor was asked to score them: a Ray cluster that
    cannot be reached, workers running another wsx or unable to import the model's code, a clustering
    that differs between the driver and a worker, or every worker lost."""


class SearchStopped(Exception):
    """Internal: the budget or the time limit ended the search; what was scored stands."""
