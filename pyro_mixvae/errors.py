"""User-facing errors.

Everything that a user can get wrong (a data file, a setting, a device, an output path)
raises a :class:`MixVAEError` with a one-line message that names the problem. The CLI
turns it into ``mixvae: error: <message>`` and a non-zero exit, never a traceback.
"""


class MixVAEError(Exception):
    """Base class of errors caused by the user's input, reported in one line."""


class DataError(MixVAEError, ValueError):
    """A data set that cannot be found, read or used as it is."""


class ConfigError(MixVAEError, ValueError):
    """A setting (model name, ``--set`` key, epoch count, device, path) that is not valid."""


class NonFiniteLossError(MixVAEError, FloatingPointError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class ClusterCollapseWarning(UserWarning):
    """Training left clusters empty that its start used: the result may be a collapsed clustering."""


class RunError(MixVAEError, ValueError):
    """A run directory that is damaged, in use by another process, or does not match the command."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's ``KeyboardInterrupt`` so that the same clean-up runs (exit status 143)."""
