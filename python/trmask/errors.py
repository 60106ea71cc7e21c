"""The exception trmask raises when the library refuses a call."""

from __future__ import annotations


class TrmaskError(ValueError):
    """An argument was refused, by the Python checks or by the library itself.

    ``status`` is the library's status code (``TRM_E_*`` in include/trmask.h; 0 when the Python
    layer refused the argument before calling the library) and ``status_name`` its name.
    """

    def __init__(self, message: str, status: int = 0, status_name: str = "TRM_OK"):
        super().__init__(message)
        self.status = status
        self.status_name = status_name


class MissingDependencyError(ImportError):
    """An optional dependency (matplotlib for plots, torch for ``.pt`` files) is not installed;
    the message says what to install."""
