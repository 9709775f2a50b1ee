/* libfasvd — recognising file formats by their first bytes (io/sniff.h). */
#include "io/sniff.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/internal.h"
#include "io/st_int.h"

typedef struct fmt_info {
	const char *name;  /* what the file is, short */
	const char *about; /* more about it */
	const char *hint;  /* what to do about it */
} fmt_info;

static const fmt_info formats[] = {
	[FASVD__FORMAT_GGUF] = {"a GGUF file", "llama.cpp's format",
	                        "use the model's Hugging Face safetensors release"},
	[FASVD__FORMAT_GGML] = {"a GGML/GGJT file", "llama.cpp's format before GGUF",
	                        "use the model's Hugging Face safetensors release"},
	[FASVD__FORMAT_ZIP] = {"a ZIP archive", "a PyTorch checkpoint such as pytorch_model.bin, "
	                       "or a NumPy .npz",
	                       "convert it with safetensors.torch.save_file"},
	[FASVD__FORMAT_PICKLE] = {"a Python pickle", "a legacy PyTorch checkpoint",
	                          "convert it with safetensors.torch.save_file"},
	[FASVD__FORMAT_NUMPY] = {"a NumPy array", ".npy",
	                         "write it with safetensors.numpy.save_file"},
	[FASVD__FORMAT_HDF5] = {"an HDF5 file", "Keras / TensorFlow weights",
	                        "use the model's safetensors release"},
	[FASVD__FORMAT_ONNX] = {"an ONNX model", "by its name",
	                        "use the model's safetensors release"},
	[FASVD__FORMAT_GIT_LFS] = {"a Git LFS pointer", "not the file itself",
	                           "fetch the file with git lfs pull"},
	[FASVD__FORMAT_GZIP] = {"a gzip file", "compressed", "decompress it first"},
};

static bool starts(const unsigned char *h, size_t n, const char *magic, size_t len)
{
	return n >= len && memcmp(h, magic, len) == 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* A safetensors header: a plausible little-endian length, then '{'. */
static bool is_safetensors(const unsigned char *h, size_t n)
{
	if (n < 9 || h[8] != '{')
		return false;
	uint64_t len = 0;
	for (int i = 7; i >= 0; i--)
		len = (len << 8) | h[i];
	return len >= 2 && len <= FASVD__ST_MAX_HEADER;
}

fasvd__format fasvd__sniff_format(const char *name, const void *head, size_t n)
{
	const unsigned char *h = head;
	if (!h)
		n = 0;
	if (is_safetensors(h, n))
		return FASVD__FORMAT_SAFETENSORS;
	if (starts(h, n, "GGUF", 4))
		return FASVD__FORMAT_GGUF;
	/* The old llama.cpp magics, written as little-endian uint32. */
	static const char *const ggml[] = {"lmgg", "fmgg", "tjgg", "algg", "nsgg"};
	for (size_t i = 0; i < sizeof ggml / sizeof *ggml; i++)
		if (starts(h, n, ggml[i], 4))
			return FASVD__FORMAT_GGML;
	if (starts(h, n, "PK\3\4", 4))
		return FASVD__FORMAT_ZIP;
	if (n >= 2 && h[0] == 0x80 && h[1] >= 2 && h[1] <= 5)
		return FASVD__FORMAT_PICKLE;
	if (starts(h, n, "\x93NUMPY", 6))
		return FASVD__FORMAT_NUMPY;
	if (starts(h, n, "\x89HDF\r\n\x1a\n", 8))
		return FASVD__FORMAT_HDF5;
	if (starts(h, n, "version https://git-lfs", 23))
		return FASVD__FORMAT_GIT_LFS;
	if (starts(h, n, "\x1f\x8b", 2))
		return FASVD__FORMAT_GZIP;
	if (name && ends_with(name, ".onnx"))
		return FASVD__FORMAT_ONNX;
	return FASVD__FORMAT_UNKNOWN;
}

fasvd__format fasvd__sniff_file(const char *path)
{
	unsigned char head[FASVD__SNIFF_BYTES];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return FASVD__FORMAT_UNKNOWN;
	ssize_t got = read(fd, head, sizeof head);
	close(fd);
	return fasvd__sniff_format(path, head, got > 0 ? (size_t)got : 0);
}

const char *fasvd__format_name(fasvd__format f)
{
	if ((size_t)f >= sizeof formats / sizeof *formats || !formats[f].name)
		return "";
	return formats[f].name;
}

int fasvd__format_error(const char *path, fasvd__format f)
{
	static const fmt_info other = {"not a safetensors file", "unknown format",
	                               "convert it to safetensors"};
	if (f == FASVD__FORMAT_GGUF) /* read elsewhere: say where */
		return fasvd__error(FASVD_EFORMAT,
		                    "%s is a GGUF file (llama.cpp's format): it is read as a model "
		                    "(fasvd info, svdvals and analyze; fasvd_model_open) or with "
		                    "fasvd_gguf_open(); this step reads safetensors files only "
		                    "(docs/gguf.md)",
		                    path);
	const fmt_info *i = (size_t)f < sizeof formats / sizeof *formats && formats[f].name ?
	                            &formats[f] :
	                            &other;
	return fasvd__error(FASVD_EFORMAT,
	                    "%s is %s (%s); libfasvd reads safetensors checkpoints: %s "
	                    "(docs/user-guide.md, \"Checkpoint formats\")",
	                    path, i->name, i->about, i->hint);
}

/* Append "name" or "name (format)" for entry `nm` of `dir` to buf. */
static void describe_entry(const char *dir, const char *nm, char *buf, size_t n)
{
	char path[4096];
	fasvd__format f = FASVD__FORMAT_UNKNOWN;
	if (snprintf(path, sizeof path, "%s/%s", dir, nm) < (int)sizeof path)
		f = fasvd__sniff_file(path);
	size_t used = strlen(buf);
	const char *what = fasvd__format_name(f);
	snprintf(buf + used, n - used, "%s%s%s%s%s", used ? ", " : "", nm, what[0] ? " (" : "",
	         what, what[0] ? ")" : "");
}

void fasvd__describe_dir(const char *dir, char *buf, size_t n)
{
	enum { SHOWN = 8 };
	if (n == 0)
		return;
	buf[0] = '\0';
	DIR *d = opendir(dir);
	if (!d) {
		snprintf(buf, n, "nothing");
		return;
	}
	int count = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (count++ < SHOWN)
			describe_entry(dir, de->d_name, buf, n);
	}
	closedir(d);
	size_t used = strlen(buf);
	if (count == 0)
		snprintf(buf, n, "nothing");
	else if (count > SHOWN)
		snprintf(buf + used, n - used, " and %d more", count - SHOWN);
}
