/* libfasvd — recognising file formats by their first bytes (sniff.c), so
 * that a file libfasvd cannot read is named in the error (a GGUF file, a
 * PyTorch checkpoint ...) instead of failing as a malformed safetensors
 * file. Never installed; hidden. */
#ifndef FASVD_SNIFF_H
#define FASVD_SNIFF_H

#include <stddef.h>

typedef enum fasvd__format {
	FASVD__FORMAT_UNKNOWN = 0,
	FASVD__FORMAT_SAFETENSORS, /* 8-byte header length, then '{' */
	FASVD__FORMAT_GGUF,        /* "GGUF" (llama.cpp, 2023-) */
	FASVD__FORMAT_GGML,        /* llama.cpp before GGUF: ggml, ggmf, ggjt, ggla, ggsn */
	FASVD__FORMAT_ZIP,         /* "PK\3\4": torch.save (pytorch_model.bin, *.pt), .npz */
	FASVD__FORMAT_PICKLE,      /* protocol 2-5: legacy torch.save, pickled state dicts */
	FASVD__FORMAT_NUMPY,       /* "\x93NUMPY" (.npy) */
	FASVD__FORMAT_HDF5,        /* "\x89HDF\r\n\x1a\n" (Keras .h5) */
	FASVD__FORMAT_ONNX,        /* no magic: the .onnx name */
	FASVD__FORMAT_GIT_LFS,     /* a Git LFS pointer left where the file should be */
	FASVD__FORMAT_GZIP,        /* "\x1f\x8b" */
} fasvd__format;

/* Bytes fasvd__sniff_format() looks at (fewer are fine). */
#define FASVD__SNIFF_BYTES 32

/* The format of a file whose first `n` bytes are `head`; `name` (its path,
 * or NULL) is used only for formats without a magic number (ONNX). */
fasvd__format fasvd__sniff_format(const char *name, const void *head, size_t n);

/* The format of the file at `path` (its first bytes read);
 * FASVD__FORMAT_UNKNOWN when it cannot be read. */
fasvd__format fasvd__sniff_file(const char *path);

/* "a GGUF file", "a ZIP archive" ...; "" for UNKNOWN and SAFETENSORS. */
const char *fasvd__format_name(fasvd__format f);

/* Record "PATH is a ZIP archive (...); libfasvd reads safetensors
 * checkpoints: <what to do> (docs/...)" and return FASVD_EFORMAT. A GGUF
 * file is named as read by the model layer, not by the caller's step. */
int fasvd__format_error(const char *path, fasvd__format f);

/* Write into buf[n] a short list of the entries of directory `dir`:
 * "a.gguf (a GGUF file), README.md, ... and 3 more" (hidden entries
 * skipped), or "nothing" when it is empty or cannot be listed. */
void fasvd__describe_dir(const char *dir, char *buf, size_t n);

#endif
