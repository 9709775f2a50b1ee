"""Loading libfasvd.so.0 and declaring its C API for ctypes.

Search order for the library:

1. the path in the environment variable ``FASVD_LIBRARY`` (if it is set, it
   must load: nothing else is tried);
2. where ``meson install`` put the library beside this package (the libdir
   recorded in the generated ``fasvd/_config.py``, taken relative to where
   the package really is, then as configured);
3. in a source checkout (``PYTHONPATH=bindings/python``), the repository's
   build tree, ``build/lib/libfasvd.so.0``;
4. the system: ``ctypes.util.find_library("fasvd")``, then ``libfasvd.so.0``
   through the dynamic loader's search path (``ldconfig``,
   ``LD_LIBRARY_PATH``), then the usual install directories of the
   ``/usr/local`` and ``sys.prefix`` prefixes.

The error raised when none loads lists every place tried.

Every function the binding uses is declared below with its ``argtypes`` and
``restype``; a function the loaded library lacks is recorded and reported
when it is first needed (``fasvd.Error`` naming the function and the path),
so an older library still serves the rest. The library's version must be
compatible with ``EXPECTED_VERSION``: the same major and the same or a newer
minor. A newer library's structs may be longer than the binding's; the
binding passes its own size in `size` and the library reads and writes only
that much (docs/abi.md, "Versioned structs").
"""

import ctypes
import ctypes.util
import os
import sys
import sysconfig

from . import _blas

# The OpenBLAS kernels, decided before anything loads OpenBLAS: numpy, which
# errors imports (Debian's numpy uses the system OpenBLAS), or the library
# (fasvd._blas).
coretype_set = _blas.prepare()

from . import _version  # noqa: E402
from . import errors  # noqa: E402

#: (major, minor) of this package, from its one version source (_version).
EXPECTED_VERSION = _version.major_minor(_version.package_version())

c_int = ctypes.c_int
c_unsigned = ctypes.c_uint
c_int64 = ctypes.c_int64
c_uint64 = ctypes.c_uint64
c_size_t = ctypes.c_size_t
c_double = ctypes.c_double
c_float = ctypes.c_float
c_char_p = ctypes.c_char_p
c_void_p = ctypes.c_void_p
P = ctypes.POINTER
c_enum = ctypes.c_int  # C enums are int-sized on every ABI libfasvd supports

# ----------------------------------------------------------------- constants

COMPUTE_F32 = 1
COMPUTE_F64 = 2
CTX_THREADS = 1
CTX_COMPUTE = 2

DTYPE_F64, DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_F8_E4M3, DTYPE_F8_E5M2 = 1, 2, 3, 4, 5, 6
# ggml's block-quantised types (GGUF tensors; include/fasvd/tensor.h)
(DTYPE_Q4_0, DTYPE_Q4_1, DTYPE_Q5_0, DTYPE_Q5_1, DTYPE_Q8_0, DTYPE_Q2_K, DTYPE_Q3_K, DTYPE_Q4_K,
 DTYPE_Q5_K, DTYPE_Q6_K, DTYPE_IQ4_NL, DTYPE_IQ4_XS) = range(7, 19)

LAYOUT_ROW_MAJOR = 101
LAYOUT_COL_MAJOR = 102
AXIS_ROWS = 0
AXIS_COLS = 1
DECODE_ALLOW_NONFINITE = 0x1

BACKENDS = {"auto": 0, "gesdd": 1, "gesvd": 2, "gesvdx": 3, "gram": 4, "randomized": 5}
STACK_NORMS = {"sigma1": 0, "frobenius": 1, "none": 2}
STACK_METHODS = {"auto": 0, "gram": 1, "direct": 2}
SUBSPACE_SIDES = {"input": 0, "output": 1}
SUBSPACE_WEIGHTS = {"none": 0, "sigma1": 1, "frobenius": 2}
FACTOR_SPLITS = {"balanced": 0, "left": 1, "right": 2}
FACTOR_RANK_TAU = -1
NORM_KINDS = {0: "none", 1: "rms", 2: "rms_gemma", 3: "layer"}
MODEL_REQUIRE_ALL = 0x1
LAYER_HEAD, LAYER_STACK, LAYER_SUB = 0x1, 0x2, 0x4
ST_NO_SCALES = 0x1

# ----------------------------------------------------------------- handles


class _Opaque(ctypes.Structure):
    _fields_ = []


ctx_p = P(type("fasvd_ctx", (_Opaque,), {}))
tensor_p = P(type("fasvd_tensor", (_Opaque,), {}))
heads_p = P(type("fasvd_heads", (_Opaque,), {}))
rfactors_p = P(type("fasvd_rfactors", (_Opaque,), {}))
subspace_p = P(type("fasvd_subspace", (_Opaque,), {}))
spectra_p = P(type("fasvd_spectra", (_Opaque,), {}))
st_p = P(type("fasvd_st", (_Opaque,), {}))
gguf_p = P(type("fasvd_gguf", (_Opaque,), {}))
model_p = P(type("fasvd_model", (_Opaque,), {}))
layer_p = P(type("fasvd_model_layer", (_Opaque,), {}))

# ----------------------------------------------------------------- structs
# Each mirrors its C declaration field by field. Structs whose C side has an
# *_init function are filled by it, within the binding's own size (a newer
# library's may be larger), and passed with that size: see struct_init().


class Bounds(ctypes.Structure):
    _fields_ = [("error", c_int), ("lower", c_int64), ("upper", c_int64)]


class BlasInfo(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("name", c_char_p), ("version", c_char_p),
                ("config", c_char_p), ("core", c_char_p), ("threads", c_int),
                ("dynamic", c_int), ("fallback", c_int), ("recommended", c_char_p),
                ("cpu_features", c_char_p)]


class SvdOpts(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("compute", c_enum), ("backend", c_enum),
                ("rank", c_int64), ("oversample", c_int64), ("power_iters", c_int64),
                ("seed", c_uint64)]


class SvdReport(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("backend", c_enum), ("fallback", c_int),
                ("error_estimate", c_double)]


class RfactorsOpts(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("compute", c_enum), ("keep_q", c_int)]


class StackOpts(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("compute", c_enum), ("norm", c_enum),
                ("method", c_enum), ("head_norms", P(c_double))]


class StackReport(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("method", c_enum), ("rows", c_int64), ("cols", c_int64),
                ("solved_rows", c_int64), ("solved_cols", c_int64),
                ("error_bound", c_double)]


class SubspaceOpts(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("compute", c_enum), ("side", c_enum), ("rank", c_int64),
                ("tau", c_double), ("center", c_int), ("weight", c_enum)]


class AttnmapOpts(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("compute", c_enum), ("causal", c_int),
                ("scale", c_double)]


class Progress(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("stage", c_char_p), ("layer", c_int64),
                ("tensor", c_char_p), ("steps_done", c_int64), ("steps_total", c_int64),
                ("bytes_done", c_uint64), ("bytes_total", c_uint64),
                ("elapsed_s", c_double)]


PROGRESS_FN = ctypes.CFUNCTYPE(c_int, c_void_p, P(Progress))


class AnalyzeOpts(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("layer_first", c_int64), ("layer_last", c_int64),
                ("taus", P(c_double)), ("n_taus", c_int64), ("fold_norms", c_int),
                ("stack_norm", c_enum), ("compute", c_enum),
                ("tensor_globs", P(c_char_p)), ("n_tensor_globs", c_int64),
                ("resume", c_int), ("json_path", c_char_p), ("csv_path", c_char_p),
                ("progress", PROGRESS_FN), ("progress_user", c_void_p), ("force", c_int),
                ("shard_index", c_int64), ("shard_count", c_int64),
                ("rope_offsets", P(c_int64)), ("n_rope_offsets", c_int64)]


class MergeOpts(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("force", c_int)]


class SurveyEvent(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("state", c_char_p), ("index", c_int64),
                ("count", c_int64), ("model", c_char_p), ("name", c_char_p),
                ("spectra", c_char_p), ("steps_total", c_int64), ("steps_resumed", c_int64),
                ("elapsed_s", c_double), ("error", c_char_p)]


SURVEY_FN = ctypes.CFUNCTYPE(c_int, c_void_p, P(SurveyEvent))


class SurveyOpts(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("analyze", P(AnalyzeOpts)), ("force", c_int),
                ("progress", SURVEY_FN), ("progress_user", c_void_p)]


class ModelInfo(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("model_type", c_char_p), ("arch", c_char_p),
                ("dir", c_char_p), ("config_path", c_char_p), ("layer_prefix", c_char_p),
                ("mla", c_int), ("nested_config", c_int), ("norm", c_enum),
                ("n_layers", c_int64), ("n_heads", c_int64), ("n_kv_heads", c_int64),
                ("hidden", c_int64), ("head_dim", c_int64),
                ("q_head", c_int64), ("q_rope", c_int64), ("k_head", c_int64),
                ("v_head", c_int64), ("q_in", c_int64), ("kv_in", c_int64),
                ("q_lora_rank", c_int64), ("kv_lora_rank", c_int64),
                ("block_rows", c_int64), ("block_cols", c_int64),
                ("weight_dtypes", c_char_p), ("has_bias", c_int), ("n_shards", c_int64),
                ("n_needed", c_int64), ("n_missing", c_int64), ("bytes_needed", c_uint64)]


class ModelInput(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("layer", c_int64), ("role", c_char_p),
                ("name", c_char_p), ("is_norm", c_int), ("present", c_int),
                ("dtype", c_char_p), ("file", c_char_p), ("ndim", c_int),
                ("shape", c_int64 * 2), ("nbytes", c_uint64), ("scale_name", c_char_p),
                ("scale_present", c_int), ("scale_file", c_char_p),
                ("scale_nbytes", c_uint64), ("has_bias", c_int), ("factored", c_int),
                ("rank", c_int64), ("factor_heads", c_int64)]


class ModelLayerOpts(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("fold_norms", c_int)]


class LayerDesc(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("n_heads", c_int64), ("n_kv_heads", c_int64),
                ("q", heads_p), ("q_pe", heads_p), ("k", heads_p), ("v", heads_p),
                ("o", heads_p), ("qa", tensor_p), ("kva", tensor_p), ("kva_pe", tensor_p),
                ("qa_col_scale", P(c_double)), ("kva_col_scale", P(c_double)),
                ("kva_pe_col_scale", P(c_double))]


class LayerOpts(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("compute", c_enum), ("stack_norm", c_enum),
                ("stack_method", c_enum), ("groups", c_unsigned)]


ST_MAX_DIMS = 8


class StInfo(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("name", c_char_p), ("dtype", c_char_p), ("ndim", c_int),
                ("shape", c_int64 * ST_MAX_DIMS), ("nbytes", c_uint64), ("file", c_char_p)]


class MetricSummary(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("n", c_int64), ("nonzero", c_int64),
                ("spectral", c_double), ("frobenius", c_double), ("nuclear", c_double),
                ("stable_rank", c_double), ("entropy_rank", c_double)]


CANCEL_FN = ctypes.CFUNCTYPE(c_int, c_void_p)


class FactorOpts(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("rank", c_int64), ("tau", c_double),
                ("max_rank", c_int64), ("split", c_enum), ("dtype", c_enum),
                ("compute", c_enum), ("backend", c_enum), ("oversample", c_int64),
                ("power_iters", c_int64), ("seed", c_uint64), ("heads", c_int64),
                ("verify", c_int), ("cancel", CANCEL_FN), ("cancel_arg", c_void_p),
                ("calibration", tensor_p), ("calibration_cholesky", c_int),
                ("calibration_eps", c_double), ("whiten", c_int)]


class FactorReport(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("rows", c_int64), ("cols", c_int64), ("heads", c_int64),
                ("rank", c_int64), ("inner", c_int64), ("full_rank", c_int64),
                ("energy", c_double), ("energy_lost", c_double), ("spectrum_exact", c_int),
                ("rel_error_sq", c_double), ("params_before", c_int64),
                ("params_after", c_int64), ("backend", c_enum), ("error_estimate", c_double),
                ("optimal_energy_lost", c_double), ("approximate", c_int),
                ("act_energy", c_double), ("act_energy_lost", c_double),
                ("act_optimal_energy_lost", c_double), ("calibration_shift", c_double)]


class FactorSharedOpts(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("side", c_enum), ("center", c_int), ("weight", c_enum)]


class TruncateOpts(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("factor", P(FactorOpts)), ("dtype", c_enum),
                ("patterns", P(c_char_p)), ("n_patterns", c_int64), ("per_head", c_int),
                ("shared_o", c_int), ("only_if_smaller", c_int), ("format", c_enum),
                ("calibration", c_char_p)]


class TruncateEntry(ctypes.Structure):
    _fields_ = [("size", c_size_t), ("name", c_char_p), ("a_name", c_char_p),
                ("b_name", c_char_p), ("role", c_char_p), ("skipped", c_int),
                ("in_dtype", c_enum), ("dtype", c_enum), ("report", FactorReport)]


TRUNCATE_FN = ctypes.CFUNCTYPE(c_int, c_void_p, P(TruncateEntry))

# ----------------------------------------------------------------- prototypes
# name: (restype, [argtypes]). `int`-returning functions are error-checked by
# call(); the others return values directly.

_PROTOTYPES = {
    # core.h
    "fasvd_version_number": (c_unsigned, []),
    "fasvd_version_string": (c_char_p, []),
    "fasvd_strerror": (c_char_p, [c_int]),
    "fasvd_last_error": (c_char_p, []),
    "fasvd_clear_error": (None, []),
    "fasvd_ctx_new": (c_int, [P(ctx_p), c_void_p]),
    "fasvd_ctx_free": (None, [ctx_p]),
    "fasvd_ctx_param_bounds": (Bounds, [c_enum]),
    "fasvd_ctx_set_param": (c_int, [ctx_p, c_enum, c_int64]),
    "fasvd_ctx_get_param": (c_int, [P(c_int64), ctx_p, c_enum]),
    # blas.h
    "fasvd_blas_info_init": (c_int, [P(BlasInfo), c_size_t]),
    "fasvd_blas_info_get": (c_int, [P(BlasInfo)]),
    # tensor.h
    "fasvd_dtype_size": (c_size_t, [c_enum]),
    "fasvd_dtype_name": (c_char_p, [c_enum]),
    "fasvd_dtype_from_name": (c_int, [P(c_enum), c_char_p]),
    "fasvd_dtype_decode": (c_int, [P(c_double), c_enum, c_void_p, c_size_t]),
    "fasvd_dtype_encode": (c_int, [c_void_p, c_enum, P(c_double), c_size_t]),
    "fasvd_tensor_new_borrowed": (c_int, [P(tensor_p), ctx_p, c_enum, c_void_p, c_int64,
                                          c_int64, c_int64, c_int64]),
    "fasvd_tensor_new": (c_int, [P(tensor_p), ctx_p, c_enum, c_int64, c_int64]),
    "fasvd_tensor_free": (None, [tensor_p]),
    "fasvd_tensor_rows": (c_int64, [tensor_p]),
    "fasvd_tensor_cols": (c_int64, [tensor_p]),
    "fasvd_tensor_row_stride": (c_int64, [tensor_p]),
    "fasvd_tensor_col_stride": (c_int64, [tensor_p]),
    "fasvd_tensor_dtype": (c_enum, [tensor_p]),
    "fasvd_tensor_data": (c_void_p, [tensor_p]),
    "fasvd_tensor_set_name": (c_int, [tensor_p, c_char_p]),
    "fasvd_tensor_name": (c_char_p, [tensor_p]),
    "fasvd_tensor_set_block_scales": (c_int, [tensor_p, tensor_p, c_int64, c_int64]),
    "fasvd_tensor_has_block_scales": (c_int, [tensor_p]),
    "fasvd_tensor_to_f64": (c_int, [P(c_double), c_int64, c_enum, tensor_p, c_unsigned]),
    # svd.h
    "fasvd_svd_opts_init": (c_int, [P(SvdOpts), c_size_t]),
    "fasvd_svd_report_init": (c_int, [P(SvdReport), c_size_t]),
    "fasvd_backend_name": (c_char_p, [c_enum]),
    "fasvd_svdvals": (c_int, [P(c_double), c_int64, ctx_p, tensor_p, P(SvdOpts), P(SvdReport)]),
    "fasvd_svd": (c_int, [P(tensor_p), P(c_double), c_int64, P(tensor_p), ctx_p, tensor_p,
                          P(SvdOpts), P(SvdReport)]),
    # metrics.h
    "fasvd_metric_energy_rank": (c_int, [P(c_int64), P(c_double), c_int64, c_double]),
    "fasvd_metric_energy_loss": (c_int, [P(c_double), P(c_double), c_int64, c_int64]),
    "fasvd_metric_energy_kept": (c_int, [P(c_double), P(c_double), c_int64, c_int64]),
    "fasvd_metric_components_for_energy": (c_int, [P(c_int64), P(c_double), c_int64, c_double]),
    "fasvd_metric_stable_rank": (c_int, [P(c_double), P(c_double), c_int64]),
    "fasvd_metric_entropy_rank": (c_int, [P(c_double), P(c_double), c_int64]),
    "fasvd_metric_spectral_norm": (c_int, [P(c_double), P(c_double), c_int64]),
    "fasvd_metric_frobenius_norm": (c_int, [P(c_double), P(c_double), c_int64]),
    "fasvd_metric_nuclear_norm": (c_int, [P(c_double), P(c_double), c_int64]),
    "fasvd_metric_powerlaw": (c_int, [P(c_double), P(c_double), P(c_double), P(c_int64),
                                      P(c_double), c_int64]),
    "fasvd_metric_alpha_weighted": (c_int, [P(c_double), P(c_double), c_int64]),
    "fasvd_metric_log_norms": (c_int, [P(c_double), P(c_double), P(c_double), c_int64]),
    "fasvd_metric_marchenko_pastur": (c_int, [P(c_double), P(c_double), P(c_int64),
                                              P(c_double), c_int64, c_int64, c_int64]),
    "fasvd_metric_summary_init": (c_int, [P(MetricSummary), c_size_t]),
    "fasvd_metric_summarize": (c_int, [P(MetricSummary), P(c_int64), P(c_double), c_int64,
                                       P(c_double), c_int64]),
    # heads.h, rfactors.h, fuse.h, stack.h, subspace.h, attnmap.h, spectra.h, layer.h
    "fasvd_heads_new": (c_int, [P(heads_p), ctx_p, tensor_p, c_enum, c_int64, c_int64,
                                c_int64, c_int64]),
    "fasvd_heads_free": (None, [heads_p]),
    "fasvd_heads_set_col_scale": (c_int, [heads_p, P(c_double), c_int64]),
    "fasvd_heads_count": (c_int64, [heads_p]),
    "fasvd_heads_rows": (c_int64, [heads_p]),
    "fasvd_heads_cols": (c_int64, [heads_p]),
    "fasvd_heads_decode_f64": (c_int, [P(c_double), c_int64, c_enum, heads_p, c_int64]),
    "fasvd_gqa_group": (c_int64, [c_int64, c_int64, c_int64]),
    "fasvd_rfactors_opts_init": (c_int, [P(RfactorsOpts), c_size_t]),
    "fasvd_rfactors_new": (c_int, [P(rfactors_p), ctx_p, heads_p, P(RfactorsOpts)]),
    "fasvd_rfactors_free": (None, [rfactors_p]),
    "fasvd_rfactors_svdvals": (c_int, [P(c_double), c_int64, rfactors_p]),
    "fasvd_fuse_count": (c_int64, [rfactors_p, rfactors_p]),
    "fasvd_fuse_svdvals": (c_int, [P(c_double), c_int64, ctx_p, rfactors_p, rfactors_p]),
    "fasvd_fuse_norms": (c_int, [P(c_double), ctx_p, rfactors_p, rfactors_p]),
    "fasvd_stack_opts_init": (c_int, [P(StackOpts), c_size_t]),
    "fasvd_stack_report_init": (c_int, [P(StackReport), c_size_t]),
    "fasvd_stack_svdvals": (c_int, [P(c_double), c_int64, ctx_p, heads_p, P(StackOpts),
                                    P(StackReport)]),
    "fasvd_stack_fused_svdvals": (c_int, [P(c_double), c_int64, ctx_p, rfactors_p, rfactors_p,
                                          P(StackOpts), P(StackReport)]),
    "fasvd_subspace_opts_init": (c_int, [P(SubspaceOpts), c_size_t]),
    "fasvd_subspace_new": (c_int, [P(subspace_p), ctx_p, heads_p, P(SubspaceOpts)]),
    "fasvd_subspace_free": (None, [subspace_p]),
    "fasvd_subspace_rank": (c_int64, [subspace_p]),
    "fasvd_subspace_count": (c_int64, [subspace_p]),
    "fasvd_subspace_spectrum": (P(c_double), [P(c_int64), subspace_p]),
    "fasvd_subspace_energy_lost": (c_double, [subspace_p]),
    "fasvd_subspace_basis": (tensor_p, [subspace_p]),
    "fasvd_subspace_factor": (tensor_p, [subspace_p, c_int64]),
    "fasvd_subspace_mean": (tensor_p, [subspace_p]),
    "fasvd_subspace_error": (c_int, [P(c_double), P(c_double), subspace_p, c_int64]),
    "fasvd_subspace_reconstruct": (c_int, [P(c_double), c_int64, c_enum, subspace_p, c_int64]),
    "fasvd_attnmap_opts_init": (c_int, [P(AttnmapOpts), c_size_t]),
    "fasvd_attnmap": (c_int, [P(tensor_p), ctx_p, tensor_p, tensor_p, P(AttnmapOpts)]),
    "fasvd_attnmap_svdvals": (c_int, [P(c_double), c_int64, ctx_p, tensor_p, tensor_p,
                                      P(AttnmapOpts)]),
    "fasvd_spectra_free": (None, [spectra_p]),
    "fasvd_spectra_count": (c_int64, [spectra_p]),
    "fasvd_spectra_name": (c_char_p, [spectra_p, c_int64]),
    "fasvd_spectra_data": (P(c_double), [spectra_p, c_int64]),
    "fasvd_spectra_shape": (c_int, [P(c_int64), P(c_int64), P(c_int64), P(c_int64), spectra_p,
                                    c_int64]),
    "fasvd_spectra_max_rank": (c_int, [P(c_int64), spectra_p, c_int64]),
    "fasvd_layer_desc_init": (c_int, [P(LayerDesc), c_size_t]),
    "fasvd_layer_opts_init": (c_int, [P(LayerOpts), c_size_t]),
    "fasvd_layer_spectra": (c_int, [P(spectra_p), ctx_p, P(LayerDesc), P(LayerOpts)]),
    # safetensors.h (reader)
    "fasvd_st_open": (c_int, [P(st_p), ctx_p, c_char_p]),
    "fasvd_st_free": (None, [st_p]),
    "fasvd_st_count": (c_int64, [st_p]),
    "fasvd_st_name": (c_char_p, [st_p, c_int64]),
    "fasvd_st_info_init": (c_int, [P(StInfo), c_size_t]),
    "fasvd_st_info_get": (c_int, [P(StInfo), st_p, c_char_p]),
    "fasvd_st_tensor": (c_int, [P(tensor_p), st_p, c_char_p, c_unsigned]),
    "fasvd_st_metadata": (c_int, [P(c_char_p), st_p, c_char_p]),
    # gguf.h (reader)
    "fasvd_gguf_open": (c_int, [P(gguf_p), ctx_p, c_char_p]),
    "fasvd_gguf_free": (None, [gguf_p]),
    "fasvd_gguf_tensor_count": (c_int64, [gguf_p]),
    "fasvd_gguf_tensor_name": (c_char_p, [gguf_p, c_int64]),
    "fasvd_gguf_tensor": (c_int, [P(tensor_p), gguf_p, c_char_p]),
    # model.h
    "fasvd_arch_count": (c_int64, []),
    "fasvd_arch_name": (c_char_p, [c_int64]),
    "fasvd_arch_supported": (c_int, [c_char_p]),
    "fasvd_model_open": (c_int, [P(model_p), ctx_p, c_char_p, c_unsigned]),
    "fasvd_model_free": (None, [model_p]),
    "fasvd_model_info_init": (c_int, [P(ModelInfo), c_size_t]),
    "fasvd_model_info_get": (c_int, [P(ModelInfo), model_p]),
    "fasvd_model_checkpoint": (st_p, [model_p]),
    "fasvd_model_config_json": (c_char_p, [model_p]),
    "fasvd_model_input_init": (c_int, [P(ModelInput), c_size_t]),
    "fasvd_model_input_count": (c_int64, [model_p]),
    "fasvd_model_input_get": (c_int, [P(ModelInput), model_p, c_int64]),
    "fasvd_model_layer_opts_init": (c_int, [P(ModelLayerOpts), c_size_t]),
    "fasvd_model_layer_open": (c_int, [P(layer_p), model_p, c_int64, P(ModelLayerOpts)]),
    "fasvd_model_layer_free": (None, [layer_p]),
    "fasvd_model_layer_desc": (P(LayerDesc), [layer_p]),
    "fasvd_model_layer_rope_bands": (c_int, [P(c_double), c_int64, P(c_double), P(c_int64),
                                             layer_p]),
    # analyze.h
    "fasvd_analyze_opts_init": (c_int, [P(AnalyzeOpts), c_size_t]),
    "fasvd_analyze": (c_int, [ctx_p, c_char_p, c_char_p, P(AnalyzeOpts)]),
    "fasvd_merge_opts_init": (c_int, [P(MergeOpts), c_size_t]),
    "fasvd_merge": (c_int, [ctx_p, P(c_char_p), c_int64, c_char_p, P(MergeOpts)]),
    "fasvd_survey_opts_init": (c_int, [P(SurveyOpts), c_size_t]),
    "fasvd_survey": (c_int, [ctx_p, P(c_char_p), c_int64, c_char_p, P(SurveyOpts)]),
    "fasvd_survey_name": (c_int, [c_char_p, c_size_t, P(c_char_p), c_int64, c_int64]),
    # factor.h
    "fasvd_factor_opts_init": (c_int, [P(FactorOpts), c_size_t]),
    "fasvd_factor_report_init": (c_int, [P(FactorReport), c_size_t]),
    "fasvd_factor_split_name": (c_char_p, [c_enum]),
    "fasvd_factor": (c_int, [P(tensor_p), P(tensor_p), ctx_p, tensor_p, P(FactorOpts),
                             P(FactorReport)]),
    "fasvd_factor_fused": (c_int, [P(tensor_p), P(tensor_p), ctx_p, heads_p, heads_p,
                                   P(FactorOpts), P(FactorReport)]),
    "fasvd_factor_shared_opts_init": (c_int, [P(FactorSharedOpts), c_size_t]),
    "fasvd_factor_shared": (c_int, [P(tensor_p), P(tensor_p), P(tensor_p), ctx_p, P(heads_p),
                                    c_int64, P(FactorOpts), P(FactorSharedOpts),
                                    P(FactorReport)]),
    "fasvd_truncate_opts_init": (c_int, [P(TruncateOpts), c_size_t]),
    "fasvd_truncate": (c_int, [ctx_p, c_char_p, c_char_p, P(TruncateOpts), TRUNCATE_FN,
                               c_void_p]),
}

# Which *_init function fills which struct (struct_init()).
_INITS = {
    BlasInfo: "fasvd_blas_info_init",
    SvdOpts: "fasvd_svd_opts_init", SvdReport: "fasvd_svd_report_init",
    RfactorsOpts: "fasvd_rfactors_opts_init", StackOpts: "fasvd_stack_opts_init",
    StackReport: "fasvd_stack_report_init", SubspaceOpts: "fasvd_subspace_opts_init",
    AttnmapOpts: "fasvd_attnmap_opts_init", AnalyzeOpts: "fasvd_analyze_opts_init",
    MergeOpts: "fasvd_merge_opts_init", SurveyOpts: "fasvd_survey_opts_init",
    ModelInfo: "fasvd_model_info_init",
    ModelInput: "fasvd_model_input_init", ModelLayerOpts: "fasvd_model_layer_opts_init",
    LayerDesc: "fasvd_layer_desc_init", LayerOpts: "fasvd_layer_opts_init",
    StInfo: "fasvd_st_info_init", MetricSummary: "fasvd_metric_summary_init",
    FactorOpts: "fasvd_factor_opts_init", FactorSharedOpts: "fasvd_factor_shared_opts_init",
    FactorReport: "fasvd_factor_report_init", TruncateOpts: "fasvd_truncate_opts_init",
}

# ----------------------------------------------------------------- loading


class LibraryNotFound(ImportError):
    """libfasvd.so.0 could not be found or loaded (tests skip on this one)."""


SONAME = "libfasvd.so.0"


def _installed_libdirs():
    """The libdir meson install recorded beside this package: relative to
    where the package is now (a DESTDIR staging tree or a moved prefix),
    then the absolute configured one."""
    try:
        from . import _config
    except ImportError:
        return []
    if not getattr(_config, "LIBDIR", None):
        return []  # pip install: the library is not beside the package
    out = []
    if getattr(_config, "PYTHONDIR", None):
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out.append(os.path.normpath(os.path.join(
            here, os.path.relpath(_config.LIBDIR, _config.PYTHONDIR))))
    if _config.LIBDIR not in out:
        out.append(_config.LIBDIR)
    return out


def _prefix_libdirs():
    """lib/<multiarch>, lib64 and lib of /usr/local and sys.prefix: where
    `meson install` and other installs put the library under a standard
    prefix, found here even before `ldconfig` has run."""
    arch = sysconfig.get_config_var("MULTIARCH")
    subdirs = (["lib/" + arch] if arch else []) + ["lib64", "lib"]
    out = []
    for prefix in ("/usr/local", sys.prefix):
        for sub in subdirs:
            d = os.path.join(prefix, sub)
            if d not in out:
                out.append(d)
    return out


def _candidates():
    """(paths to try in order, whether they come from FASVD_LIBRARY)."""
    env = os.environ.get("FASVD_LIBRARY")
    if env:
        return [env], True
    out = [os.path.join(d, SONAME) for d in _installed_libdirs()]
    if _version.from_meson_build(_version.CHECKOUT_MESON_BUILD):
        repo = os.path.dirname(_version.CHECKOUT_MESON_BUILD)
        out.append(os.path.join(repo, "build", "lib", SONAME))
    found = ctypes.util.find_library("fasvd")
    if found:
        out.append(found)
    out.append(SONAME)
    out += [os.path.join(d, SONAME) for d in _prefix_libdirs()]
    return out, False


def _load():
    cands, from_env = _candidates()
    failures = []
    for path in cands:
        if os.sep in path and not os.path.exists(path):
            failures.append("%s: no such file" % path)
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            failures.append("%s: %s" % (path, e))
    where = "FASVD_LIBRARY" if from_env else "any of the places searched"
    raise LibraryNotFound("fasvd: cannot load %s from %s. Tried: %s. Install libfasvd "
                          "(meson install, then ldconfig), build it in this checkout "
                          "(make build), or set FASVD_LIBRARY to the path of %s."
                          % (SONAME, where, "; ".join(failures), SONAME))


lib, path = _load()

_missing = set()
for _name, (_res, _args) in _PROTOTYPES.items():
    try:
        _f = getattr(lib, _name)
    except AttributeError:
        _missing.add(_name)
        continue
    _f.restype = _res
    _f.argtypes = _args


def compatible(number, expected):
    """Whether a library of version `number` (MAJOR*10000 + MINOR*100 +
    PATCH) serves a binding written for `expected` = (major, minor): the same
    major and the same or a newer minor (docs/abi.md: a release only adds to
    the ABI of the earlier ones of its major version)."""
    major, minor = number // 10000, (number // 100) % 100
    exp_major, exp_minor = expected
    return major == exp_major and minor >= exp_minor


def _check_version():
    for name in ("fasvd_version_number", "fasvd_version_string"):
        if name in _missing:
            raise ImportError("fasvd: %s does not export %s: not a libfasvd library"
                              % (path, name))
    number = lib.fasvd_version_number()
    exp_major, exp_minor = EXPECTED_VERSION
    if not compatible(number, EXPECTED_VERSION):
        raise ImportError("fasvd: %s is libfasvd %s; this binding needs %d.%d or a later %d.x"
                          % (path, lib.fasvd_version_string().decode(), exp_major, exp_minor,
                             exp_major))
    return number


version_number = _check_version()
version = lib.fasvd_version_string().decode()


def available(name):
    """True if the loaded library exports C function `name`."""
    return name not in _missing and name in _PROTOTYPES


def fn(name):
    """The ctypes function `name`, or fasvd.Error when the library lacks it."""
    if name in _missing:
        raise errors.StateError("libfasvd at %s (version %s) does not provide %s(); "
                                "a newer libfasvd is needed" % (path, version, name),
                                function=name)
    return getattr(lib, name)


def decode(b):
    return None if b is None else b.decode("utf-8", "replace")


def last_error():
    return decode(lib.fasvd_last_error()) or ""


def raise_error(code, function):
    """Raise the Error subclass of `code` with the library's detail message."""
    detail = last_error()
    strerr = decode(lib.fasvd_strerror(code))
    msg = "%s (%s)" % (detail, strerr) if detail else strerr
    raise errors.error_class(code)(msg, code=code, function=function)


def call(name, *args):
    """Call int-returning C function `name`; raise on a negative result."""
    f = fn(name)
    lib.fasvd_clear_error()
    rc = f(*args)
    if rc < 0:
        raise_error(rc, name)
    return rc


def struct_init(cls):
    """A new struct of `cls` holding the defaults of its C *_init function,
    its `size` the binding's sizeof.

    The init writes only the binding's ctypes.sizeof(cls) bytes: a newer
    library, whose struct may be larger, fills the members the binding knows
    and then takes the struct as an older caller's. A library that refuses
    the binding's size (its struct's first published size is larger: a
    library of another major version, or a binding that disagrees with the
    headers) raises InternalError instead of corrupting memory.
    """
    name = _INITS[cls]
    init = fn(name)
    s = cls()
    lib.fasvd_clear_error()
    rc = init(ctypes.byref(s), ctypes.sizeof(cls))
    if rc < 0:
        raise errors.InternalError(
            "struct %s: the library %s (version %s) refuses the binding's size of %d "
            "bytes: binding and library disagree (%s)"
            % (cls.__name__, path, version, ctypes.sizeof(cls), last_error()),
            code=rc, function=name)
    return s


def struct_from_library(p, cls, function):
    """The library's struct at pointer `p` (a callback argument) as `cls`:
    a newer library's may be longer (its extra members are ignored), a
    shorter one raises InternalError."""
    s = p.contents
    if s.size < ctypes.sizeof(cls):
        raise errors.InternalError("%s: the library's size is %d bytes, shorter than the "
                                   "binding's %d" % (cls.__name__, s.size, ctypes.sizeof(cls)),
                                   function=function)
    return s


def check_struct_sizes():
    """Initialise every struct with an *_init the library exports (tests use
    it): the library accepts the binding's size of each. Returns the names of
    the structs checked."""
    done = []
    for cls, init in _INITS.items():
        if available(init):
            struct_init(cls)
            done.append(cls.__name__)
    return done


def blas_info():
    """The BLAS libfasvd runs on (fasvd_blas_info_get) as a dict: name,
    version, config, core, threads, dynamic, fallback, recommended,
    cpu_features, and coretype_set_by_fasvd (the core the binding set in
    OPENBLAS_CORETYPE before loading the library, or None)."""
    info = struct_init(BlasInfo)
    call("fasvd_blas_info_get", ctypes.byref(info))
    out = {name: getattr(info, name) for name, _ in BlasInfo._fields_[1:]}
    for k, v in out.items():
        if isinstance(v, bytes):
            out[k] = decode(v)
    out["dynamic"], out["fallback"] = bool(info.dynamic), bool(info.fallback)
    out["coretype_set_by_fasvd"] = coretype_set
    return out


if available("fasvd_blas_info_get"):
    _blas.check(blas_info(), coretype_set)
