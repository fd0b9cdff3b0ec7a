"""attndiff: SFBD, structure-preserving diffusion, attention dynamics and CAB-CNN on a shared core."""

__version__ = "0.2.0"


class UserError(ValueError):
    """An error the user can fix (bad config, missing data, wrong shape).

    The CLI prints its message as one line and exits with status 2.
    """
