"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class SpatialAlignError(Exception):
    """Bad user input or a missing/corrupt file: the message is shown to the user as is."""
