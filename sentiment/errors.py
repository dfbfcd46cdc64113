"""Errors that are the user's to fix: the CLI prints them as one clear line, no traceback."""


class SentimentError(Exception):
    """Base class for problems with input, storage or models that a user can act on."""


class InputError(SentimentError):
    """Input data is missing, empty, malformed or lacks a required column."""


class StorageError(SentimentError):
    """Object storage or a filesystem path cannot be reached or written."""


class ModelError(SentimentError):
    """A model path does not hold a loadable sentiment model."""


class ResourceError(SentimentError):
    """The Ray cluster cannot provide what a command asks for, and no autoscaler can add it."""
