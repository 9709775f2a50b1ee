/* libfasvd — the whole analysis of a checkpoint: every spectrum of
 * fasvd_layer_spectra (layer.h) for every selected layer, streamed one layer
 * at a time into a spectra file (docs/spectra-schema.md), resumable, with
 * progress reporting.
 *
 * SPDX-License-Identifier: MIT
 *
 * The spectra file is a safetensors file of F64 tensors, descending:
 *   L{layer}.head.{Q,Q_pe,K,V,O,QK,KQ,VO}  [n_heads_of_that_name, min(rows, cols)]
 *   L{layer}.stack.{same}                  [min(rows, cols)]  (normalised stack)
 *   L{layer}.sub.{QA,KVA,KVA_pe}           [min(rows, cols)]  (MLA)
 *   T.{tensor name}                        [min(rows, cols)]  (extra tensors)
 * with string metadata: format = "fasvd.spectra", schema_version = "1",
 * model_type, fold_norms ("true"/"false"), stack_normalisation ("sigma1",
 * "frobenius" or "none"), compute_dtype ("f32"/"f64"), library_version,
 * config (the model's config.json text), layers (the selected range "A-B"),
 * layers_done (comma-separated layer indices whose spectra are in the file),
 * tensors_done (the T.* names done, comma-separated), complete ("true" once
 * every selected layer and tensor is in), matrix_shapes (a JSON object
 * mapping each tensor name to the [rows, cols] of the matrix one row of it
 * describes) and tau_definition.
 *
 * Effective rank at τ (metrics.h) is the smallest r whose lost fraction of
 * squared Frobenius energy, 1 − Σ_{i≤r}σ_i²/Σσ_i², is at most τ: τ is a
 * fraction of squared Frobenius energy, not of the Frobenius norm.
 */
#ifndef FASVD_ANALYZE_H
#define FASVD_ANALYZE_H

#include <fasvd/core.h>
#include <fasvd/stack.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Progress of an analysis, passed to the callback. */
typedef struct fasvd_progress {
	size_t size;                 /* sizeof(fasvd_progress) of the library */
	const char *stage;           /* "start", "layer", "tensor", "done" */
	int64_t layer;               /* layer just finished ("layer"), else -1 */
	const char *tensor;          /* T.* tensor just finished ("tensor"), else NULL */
	int64_t steps_done;          /* layers + extra tensors done, this run included */
	int64_t steps_total;         /* layers + extra tensors selected */
	uint64_t bytes_done;         /* checkpoint bytes processed (resumed steps count) */
	uint64_t bytes_total;        /* checkpoint bytes the analysis reads in all */
	double elapsed_s;            /* seconds since fasvd_analyze started */
} fasvd_progress;

/* Progress callback: called from the thread that called fasvd_analyze, once
 * at the start, after every layer and every extra tensor (once the output
 * file holds it), and at the end. Return 0 to continue; any other value
 * cancels the analysis, which then returns FASVD_ECANCELED and leaves the
 * output file as it was after the last completed step (resumable). */
typedef int (*fasvd_progress_fn)(void *user, const fasvd_progress *progress);

typedef struct fasvd_analyze_opts {
	size_t size;                 /* set by fasvd_analyze_opts_init */
	int64_t layer_first;         /* first layer (default 0) */
	int64_t layer_last;          /* last layer, inclusive (default -1: the last) */
	const double *taus;          /* τ values for the JSON/CSV summaries (borrowed for
	                                the call); NULL: {0.01, 0.001} */
	int64_t n_taus;
	int fold_norms;              /* default 1 (norm folding, model.h) */
	fasvd_stack_norm stack_norm; /* default FASVD_STACK_NORM_SIGMA1 */
	fasvd_compute compute;       /* 0: the context's FASVD_CTX_COMPUTE */
	/* fnmatch(3) patterns of extra 2-D tensors (FFN, experts …) whose
	 * singular values are written as T.{name} (FP8 weights dequantised with
	 * their scales; `*_scale_inv` tensors themselves are never selected);
	 * each pattern must match at least one tensor. Borrowed for the call. */
	const char *const *tensor_globs;
	int64_t n_tensor_globs;
	int resume;                  /* 1: continue an existing output file (same model,
	                                options and selection) instead of replacing it */
	const char *json_path;       /* optional JSON summary (NULL: none) */
	const char *csv_path;        /* optional tidy CSV table (NULL: none) */
	fasvd_progress_fn progress;  /* optional */
	void *progress_user;
	int force;                   /* 1: replace an existing output file that is not the
	                                spectra file of an interrupted run (refused
	                                otherwise), or start afresh over OUT.partial */
	/* Work items (appended in 0.2): with shard_count N > 0, only shard
	 * shard_index (0 ≤ I < N) of the selected steps (layers and extra
	 * tensors) is computed, the steps being dealt to N shards by estimated
	 * cost (fasvd_analyze below); the file written is a partial spectra file
	 * that fasvd_merge() joins with the other N − 1. 0: the whole selection. */
	int64_t shard_index;
	int64_t shard_count;
	/* Position-aware QK (appended in 0.3): for each offset Δ of
	 * rope_offsets (borrowed for the call), L{l}.head.QK@{Δ} and
	 * L{l}.stack.QK@{Δ}: the spectra of W_Qᵀ·R(Δ)ᵀ·W_K, the bilinear form
	 * between a query and the key Δ positions before it under the model's
	 * rotary embedding (docs/spectra-schema.md); MLA models give
	 * L{l}.head.QK_pe@{Δ} and L{l}.stack.QK_pe@{Δ} instead (each head's
	 * Q_pe against the shared k_pe). Models without RoPE and GGUF inputs
	 * are refused (FASVD_EARCH). */
	const int64_t *rope_offsets;
	int64_t n_rope_offsets;
} fasvd_analyze_opts;

/* Defaults as noted above.
 * Call as fasvd_analyze_opts_init(&o, sizeof o) (versioned struct, see core.h). */
FASVD_API int fasvd_analyze_opts_init(fasvd_analyze_opts *opts, size_t size);

/* Analyse the model at `model_path` (a folder with config.json and a
 * safetensors checkpoint, see fasvd_model_open) and write the spectra file
 * `out_path`.
 *
 * Streaming: one layer at a time; only the tensors that layer needs are
 * touched (mapped pages are released after the layer), so peak memory does
 * not grow with the number of layers (the spectra themselves, a few MB per
 * layer for the largest models, are kept).
 * Nothing lost: every output path is checked before any work (its folder
 * exists and is writable; out_path is a regular file or a new path, a
 * symbolic link writing its target; json_path and csv_path may also be a
 * FIFO, a character device or "-" for standard output, written in place as
 * streams). An existing out_path that is not the spectra file of an
 * interrupted run is replaced only with force (or continued with resume).
 * After every layer (and extra tensor) the spectra are rewritten atomically
 * (temporary file + rename): into out_path when it did not exist, else into
 * "out_path.partial" beside its target, renamed over it once every step and
 * the summaries are done, so that a failure at any point (even SIGKILL)
 * leaves every earlier file byte for byte. On failure (cancellation
 * included) the completed steps are kept in the file written, named in the
 * error; with resume = 1 a run continues it (out_path.partial first) and
 * yields exactly the spectra of an uninterrupted run; an existing
 * out_path.partial is replaced only with force. A file this call created
 * with no completed step of its own is removed. Before any computation
 * every needed tensor is checked to exist; the summaries are written only
 * on success (a stream last; a stream whose reader closes it early, as
 * `| head` does, is no failure: the rest of it is dropped).
 * Shards: the selected steps are dealt deterministically (from the model
 * and the options only) by estimated cost: a layer costs 4 × the elements
 * of its weight matrices (per-head, fused and stacked spectra of each), an
 * extra tensor its elements; greedily, largest first (ties: layers in
 * order, then tensors by name), each to the shard with the least cost so
 * far (ties: the lowest index). A shard file has the metadata of a whole
 * run plus shard ("I/N"), shard_layers (its layers, comma-separated),
 * shard_tensors (a JSON array of its extra tensors), shard_plan (a
 * fingerprint of the whole selection and its dealing) and shard_checkpoint
 * (a fingerprint of the checkpoint: names, dtypes, shapes and the first and
 * last bytes of every tensor selected); complete is "true" once its own
 * steps are done. Resume continues a shard file only with the same shard.
 * Threads: the context's thread count (parallel over heads, threaded BLAS
 * for stacks). Not reentrant on the same output path.
 * Errors: FASVD_EINVAL (NULL, bad options, a layer range outside the model,
 * a glob matching nothing, resume with a file written by different options
 * or another model, an existing output without force, out_path a stream), FASVD_ENOTFOUND (a needed tensor is missing: the detail
 * names it and the checkpoint), FASVD_EARCH, FASVD_EFORMAT, FASVD_ESHAPE,
 * FASVD_EDTYPE (from fasvd_model_open / the reader), FASVD_ENONFINITE
 * (NaN/Inf weight: tensor and element named), FASVD_EIO (output not
 * writable), FASVD_ELAPACK, FASVD_ERANGE, FASVD_ENOMEM, FASVD_ECANCELED. */
FASVD_API int fasvd_analyze(fasvd_ctx *ctx, const char *model_path, const char *out_path,
                            const fasvd_analyze_opts *opts);

typedef struct fasvd_merge_opts {
	size_t size;                 /* set by fasvd_merge_opts_init */
	int force;                   /* 1: replace an existing output file */
} fasvd_merge_opts;

/* Defaults: force = 0.
 * Call as fasvd_merge_opts_init(&o, sizeof o) (versioned struct, see core.h). */
FASVD_API int fasvd_merge_opts_init(fasvd_merge_opts *opts, size_t size);

/* Join the shard files parts[0 .. n_parts) (written by fasvd_analyze with
 * shard_count = n_parts, every shard index once, in any order) into the
 * spectra file out_path, byte for byte the file one fasvd_analyze run with
 * the same options writes (and the same thread count: the spectra are
 * copied, not recomputed). Checked first: every part is a complete shard
 * file; all have the same model (config, model type and name, checkpoint
 * fingerprint), options, library version, selection and shard count; each
 * shard index appears once; every selected layer is in exactly one part.
 * The output is written atomically (temporary + rename); an existing
 * out_path is replaced only with force. No model is read.
 * Errors: FASVD_EINVAL (NULL, no part, parts that do not match or do not
 * cover the selection exactly once: the detail names the part and the
 * layer or key; an existing output without force), FASVD_EFORMAT (a part
 * that is not a shard spectra file), FASVD_EIO, FASVD_ENOMEM. */
FASVD_API int fasvd_merge(fasvd_ctx *ctx, const char *const *parts, int64_t n_parts,
                          const char *out_path, const fasvd_merge_opts *opts);

/* ---- many models: fasvd_survey ---- */

/* One model of a survey, passed to the survey's callback. */
typedef struct fasvd_survey_event {
	size_t size;                 /* sizeof(fasvd_survey_event) of the library */
	const char *state;           /* "start", "done" or "failed" */
	int64_t index;               /* the model's index in the list (0-based) */
	int64_t count;               /* models in the list */
	const char *model;           /* its path, as listed */
	const char *name;            /* its name in the survey (file names, table) */
	const char *spectra;         /* its spectra file in the survey folder */
	int64_t steps_total;         /* steps of its analysis (0 before it opened) */
	int64_t steps_resumed;       /* steps found done by an earlier run */
	double elapsed_s;            /* seconds spent on it ("done", "failed") */
	const char *error;           /* the failure ("failed"), else NULL */
} fasvd_survey_event;

/* Called from the thread that called fasvd_survey before and after each
 * model; return 0 to go on, any other value to stop (FASVD_ECANCELED). */
typedef int (*fasvd_survey_fn)(void *user, const fasvd_survey_event *event);

typedef struct fasvd_survey_opts {
	size_t size;                 /* set by fasvd_survey_opts_init */
	/* The options of every analysis (NULL: the defaults), borrowed for the
	 * call; its progress callback is called within each model (and may
	 * cancel). json_path, csv_path, resume, force and the shard must be
	 * unset: the survey sets them. */
	const fasvd_analyze_opts *analyze;
	int force;                   /* 1: start every model afresh (earlier files of the
	                                survey folder are replaced), 0: resume */
	fasvd_survey_fn progress;    /* optional */
	void *progress_user;
} fasvd_survey_opts;

/* Defaults: analyze NULL, force 0, no callback.
 * Call as fasvd_survey_opts_init(&o, sizeof o) (versioned struct, see core.h). */
FASVD_API int fasvd_survey_opts_init(fasvd_survey_opts *opts, size_t size);

/* Analyse every model of models[0 .. n_models) (model folders, as
 * fasvd_analyze takes) with the same options into the folder out_dir
 * (created if missing; its parent must exist): per model NAME, the spectra
 * file NAME.spectra.safetensors and its summaries NAME.json and NAME.csv;
 * then, across all models, survey.csv (the tidy table: a first column
 * `model` (NAME), then the columns of the per-model CSV: layer, kind, name,
 * head, rows, cols, max_rank (the structural rank bound), the metrics and
 * er@τ for each τ) and survey.json (format "fasvd.survey": the settings,
 * the models with their paths and files, and every row with its model).
 * NAME is the last component of the model path (without a .safetensors /
 * .gguf / .json extension, the folder's name for a file inside one),
 * characters outside [A-Za-z0-9._-] replaced by '_'; models whose names
 * collide take as many parent components as tell them apart ("a_ckpt-100",
 * "b_ckpt-100"), then a "-2", "-3" … suffix in list order. A path listed
 * twice is refused.
 * Resumable: each model continues its spectra file (fasvd_analyze with
 * resume), so that a survey killed at any point and run again skips the
 * models done (their files are rewritten unchanged with their summaries)
 * and continues the one it was in. A model that fails does not stop the
 * others: the event says why, the table covers the models done, and the
 * call returns the first failure's code, its detail naming the model and
 * how many failed (a rerun retries them). The survey files are written
 * atomically, last.
 * Errors: FASVD_EINVAL (NULL, no model, a path listed twice, analysis
 * options the survey sets), FASVD_EIO (out_dir cannot be made or written),
 * FASVD_ECANCELED, FASVD_ENOMEM, or the first model's failure (any code of
 * fasvd_analyze). */
FASVD_API int fasvd_survey(fasvd_ctx *ctx, const char *const *models, int64_t n_models,
                           const char *out_dir, const fasvd_survey_opts *opts);

/* The NAME fasvd_survey gives models[index] of models[0 .. n_models) into
 * buf (cap bytes, NUL-terminated; a name is at most 511 bytes), for drivers
 * that compute a survey's models themselves (fasvd-mpi). Quadratic in
 * n_models. Errors: FASVD_EINVAL (bad argument, a path listed twice),
 * FASVD_ERANGE (cap too small), FASVD_ENOMEM. */
FASVD_API int fasvd_survey_name(char *buf, size_t cap, const char *const *models,
                                int64_t n_models, int64_t index);

#ifdef __cplusplus
}
#endif

#endif /* FASVD_ANALYZE_H */
