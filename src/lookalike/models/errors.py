"""The exception every model module raises for the user (kept apart so torch-free modules share it)."""


class ModelError(Exception):
    """A model that cannot be resolved or loaded; the message is one line for the user."""
