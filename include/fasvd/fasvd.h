/* libfasvd — spectra, effective ranks and low-rank factorisations of
 * transformer attention weights. Umbrella header: include this one.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef FASVD_H
#define FASVD_H

#include <fasvd/core.h>
#include <fasvd/blas.h>
#include <fasvd/tensor.h>
#include <fasvd/svd.h>
#include <fasvd/metrics.h>
#include <fasvd/safetensors.h>
#include <fasvd/gguf.h>
#include <fasvd/heads.h>
#include <fasvd/rfactors.h>
#include <fasvd/fuse.h>
#include <fasvd/stack.h>
#include <fasvd/subspace.h>
#include <fasvd/attnmap.h>
#include <fasvd/spectra.h>
#include <fasvd/layer.h>
#include <fasvd/model.h>
#include <fasvd/analyze.h>
#include <fasvd/factor.h>
#include <fasvd/onload.h>
#include <fasvd/truncate.h>

#endif /* FASVD_H */
