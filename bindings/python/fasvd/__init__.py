"""fasvd: spectra, effective ranks and low-rank factorisations of transformer
attention weights — a thin ctypes + numpy layer over libfasvd.so.0.

Quick start::

    import numpy as np, fasvd
    s = fasvd.svdvals(np.random.rand(300, 200))          # singular values
    with fasvd.open("path/to/model") as m:               # a checkpoint folder
        print(m.info["model_type"], m.info["n_layers"])
        res = m.analyze()                                 # every spectrum
    res.heads[0]["VO"]                # [n_heads, k] per-head fused V·O spectra
    res.stacked[0]["O"]               # sigma1-normalised stack of O heads
    res.effective_ranks[0.01].stacked[0]["VO"]
    fasvd.plot.layer_ranks(res)       # matplotlib figures

The library is found through the environment variable FASVD_LIBRARY (a path
to libfasvd.so.0), then the directory meson installed it into beside this
package, then the repository's build/ tree (in a source checkout), then the
system (see fasvd._lib, whose error lists every place tried). Failures raise
subclasses of :class:`fasvd.Error` carrying the library's detail message.
See docs/python.md for the whole API.
"""

from . import _lib
from . import _version
from . import errors
from .errors import (Error, InvalidArgument, OutOfMemory, IOError, FormatError,  # noqa: A004
                     DtypeError, ShapeError, NonFiniteError, RangeError, LapackError,
                     NotFoundError, ArchError, Cancelled, StateError, InternalError)
from ._core import Context, Tensor, Heads, tensor, heads, dequantize, DTYPES
from .linalg import (svdvals, svd, fused, fused_vo, fused_qk, stacked, shared_subspace,
                     SharedSubspace, attention_map, attention_svdvals, factor, factor_fused,
                     factor_shared)
from . import calibration, metrics
from .metrics import (effective_rank, energy_loss, energy_kept, components_for_energy,
                      stable_rank, entropy_rank, spectral_norm, frobenius_norm, nuclear_norm)
from .spectra import Result, Ranks, LayerSpectra, load_spectra, read_safetensors
from .model import Model, open, architectures, truncate, merge  # noqa: A004 (fasvd.open)
from .survey import Survey, survey, survey_name

#: Version of this Python package: the project version of meson.build (see
#: fasvd._version); it needs a libfasvd of the same major and the same or a
#: newer minor (see fasvd._lib).
__version__ = _version.package_version()
#: Version and path of the libfasvd actually loaded.
library_version = _lib.version
library_path = _lib.path
#: The BLAS libfasvd runs on, its kernels and the CPU's (docs/blas.md).
blas_info = _lib.blas_info


def __getattr__(name):
    # fasvd.plot is imported on first use: it needs matplotlib, the rest does not.
    if name == "plot":
        import importlib
        return importlib.import_module(".plot", __name__)
    raise AttributeError("module 'fasvd' has no attribute %r" % (name,))


__all__ = [
    "blas_info",
    "Error", "InvalidArgument", "OutOfMemory", "FormatError", "DtypeError", "ShapeError",
    "NonFiniteError", "RangeError", "LapackError", "NotFoundError", "ArchError", "Cancelled",
    "StateError", "InternalError",
    "Context", "Tensor", "Heads", "tensor", "heads", "dequantize", "DTYPES",
    "svdvals", "svd", "fused", "fused_vo", "fused_qk", "stacked", "shared_subspace",
    "SharedSubspace", "attention_map", "attention_svdvals", "factor", "factor_fused",
    "factor_shared", "calibration", "metrics", "effective_rank", "energy_loss", "energy_kept", "components_for_energy",
    "stable_rank", "entropy_rank", "spectral_norm", "frobenius_norm", "nuclear_norm",
    "Result", "Ranks", "LayerSpectra", "load_spectra", "read_safetensors",
    "Model", "architectures", "truncate", "merge", "Survey", "survey", "survey_name",
    "__version__", "library_version", "library_path",
]
