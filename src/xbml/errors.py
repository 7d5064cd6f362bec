"""Errors a user can act on: the message names the problem and the fix."""


class XbmlError(Exception):
    """Raised for bad input; the CLI prints the message without a traceback."""


class ConfigError(XbmlError):
    pass


class DataError(XbmlError):
    pass


class CheckpointError(XbmlError):
    pass


class TrainingDiverged(XbmlError):
    pass
