/* libfasvd — spectra, effective ranks and low-rank factorisations of
 * transformer attention weights. Umbrella header: include this one.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef FASVD_H
#define FASVD_H

#include <fasvd/core.h>
#include <fasvd/tensor.h>
#include <fasvd/svd.h>
#include <fasvd/metrics.h>
#include <fasvd/safetensors.h>
#include <fasvd/engine.h>
#include <fasvd/model.h>
#include <fasvd/analyze.h>
#include <fasvd/factor.h>

#endif /* FASVD_H */
