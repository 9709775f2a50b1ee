"""Exceptions raised by the fasvd binding.

Every failure of the C library is raised as a subclass of :class:`Error`,
chosen by the library's error code (``FASVD_E*`` of ``fasvd/core.h``) and
carrying the library's detail message (``fasvd_last_error()``), which names
the argument, tensor or file at fault. Arguments that the binding itself
refuses before calling the library raise the same classes.

Each class also derives from the closest built-in exception, so code that
already catches ``ValueError``, ``MemoryError``, ``OSError``,
``numpy.linalg.LinAlgError`` ... keeps working.
"""

import builtins

import numpy as np

__all__ = [
    "Error", "InvalidArgument", "OutOfMemory", "IOError", "FormatError",
    "DtypeError", "ShapeError", "NonFiniteError", "RangeError", "LapackError",
    "NotFoundError", "ArchError", "Cancelled", "StateError", "InternalError",
    "error_class",
]

# Error codes of fasvd/core.h (pinned by the ABI).
OK = 0
EINVAL = -1
ENOMEM = -2
EIO = -3
EFORMAT = -4
EDTYPE = -5
ESHAPE = -6
ENONFINITE = -7
ERANGE = -8
ELAPACK = -9
ENOTFOUND = -10
EARCH = -11
ECANCELED = -12
ESTATE = -13
EINTERNAL = -14


class Error(Exception):
    """Base class of every fasvd error.

    Attributes: ``code`` (the negative ``FASVD_E*`` value), ``detail`` (the
    library's detail message, or the binding's), ``function`` (the C
    function that failed, or None for a check made in Python).
    """

    code = None

    def __init__(self, detail="", code=None, function=None):
        if code is not None:
            self.code = code
        self.detail = detail
        self.function = function
        text = detail or _DESCRIPTIONS.get(self.code, "error")
        # One name per message (docs/error-model.md): the library's detail
        # may already start with the function's name.
        if function and not text.startswith(function + ":"):
            text = "%s: %s" % (function, text)
        super().__init__(text)


class InvalidArgument(Error, ValueError):
    """FASVD_EINVAL: an invalid argument (NULL, out of range, bad stride)."""
    code = EINVAL


class OutOfMemory(Error, MemoryError):
    """FASVD_ENOMEM: an allocation failed."""
    code = ENOMEM


class IOError(Error, builtins.OSError):  # noqa: A001 - fasvd.IOError, on purpose
    """FASVD_EIO: a file could not be opened, read, mapped or written.

    Also a built-in ``OSError``. Not exported by ``from fasvd import *`` so
    that it never shadows the built-in name; use ``fasvd.IOError``.
    """
    code = EIO


class FormatError(Error, ValueError):
    """FASVD_EFORMAT: a malformed file (safetensors header, JSON, index)."""
    code = EFORMAT


class DtypeError(Error, TypeError):
    """FASVD_EDTYPE: an unsupported or mismatched dtype."""
    code = EDTYPE


class ShapeError(Error, ValueError):
    """FASVD_ESHAPE: a wrong or inconsistent shape."""
    code = ESHAPE


class NonFiniteError(Error, ValueError):
    """FASVD_ENONFINITE: NaN or Inf in an input matrix or spectrum."""
    code = ENONFINITE


class RangeError(Error, OverflowError):
    """FASVD_ERANGE: a size beyond what the library or LAPACK can index, or a
    metric undefined for its spectrum (the fasvd.metrics functions return
    None for those)."""
    code = ERANGE


class LapackError(Error, np.linalg.LinAlgError):
    """FASVD_ELAPACK: LAPACK reported a failure (no convergence ...)."""
    code = ELAPACK


class NotFoundError(Error, LookupError):
    """FASVD_ENOTFOUND: a tensor, key or file that is needed does not exist."""
    code = ENOTFOUND


class ArchError(Error, ValueError):
    """FASVD_EARCH: unknown architecture or inconsistent model config."""
    code = EARCH


class Cancelled(Error):
    """FASVD_ECANCELED: the operation was cancelled (progress callback)."""
    code = ECANCELED


class StateError(Error, RuntimeError):
    """FASVD_ESTATE: a call not valid in the object's current state."""
    code = ESTATE


class InternalError(Error, RuntimeError):
    """FASVD_EINTERNAL (or an unknown code): a bug, please report it."""
    code = EINTERNAL


_CLASSES = {
    EINVAL: InvalidArgument, ENOMEM: OutOfMemory, EIO: IOError,
    EFORMAT: FormatError, EDTYPE: DtypeError, ESHAPE: ShapeError,
    ENONFINITE: NonFiniteError, ERANGE: RangeError, ELAPACK: LapackError,
    ENOTFOUND: NotFoundError, EARCH: ArchError, ECANCELED: Cancelled,
    ESTATE: StateError, EINTERNAL: InternalError,
}

_DESCRIPTIONS = {
    EINVAL: "invalid argument", ENOMEM: "out of memory", EIO: "I/O error",
    EFORMAT: "malformed file", EDTYPE: "unsupported or mismatched dtype",
    ESHAPE: "wrong or inconsistent shape", ENONFINITE: "NaN or Inf in the input",
    ERANGE: "size out of range", ELAPACK: "LAPACK failure",
    ENOTFOUND: "not found", EARCH: "unknown architecture or inconsistent config",
    ECANCELED: "cancelled", ESTATE: "invalid state", EINTERNAL: "internal error",
}


def error_class(code):
    """The exception class for a ``FASVD_E*`` code (InternalError if unknown)."""
    return _CLASSES.get(code, InternalError)
