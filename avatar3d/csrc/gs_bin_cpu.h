// Tile binning of projected Gaussians on the CPU (gs_bin_cpu.cpp).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <utility>

namespace a3d_gs {

// means2d (C,N,2), radii (C,N,2) (culled when either is 0), depths (C,N), as raw contiguous pointers.
// Returns tile_offsets (C*tiles+1,) int64 and flat_ids (M,) int32: tile t of camera c owns
// flat_ids[offsets[c*tiles+t] : offsets[c*tiles+t+1]], Gaussian indices front to back (ties by index).
template <typename scalar_t>
std::pair<at::Tensor, at::Tensor> bin_gaussians_cpu(const scalar_t* means2d, const int32_t* radii,
                                                    const scalar_t* depths, int C, int N, int W, int H);

}  // namespace a3d_gs
