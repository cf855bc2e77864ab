// Launchers of the CUDA Gaussian rasterizer (gs_raster.cu); raw float32 pointers so the .cu file needs
// no torch headers. Shapes: means2d (C,N,2), conics (C,N,3), opacities (C,N), features (C,N,D),
// backgrounds (C,D) or null, tile_offsets (C*tiles+1) int64, flat_ids (M) int32 (depth-sorted lists),
// images (C,H,W,D), alphas (C,H,W,1), last (C,H,W) int32. All on the current CUDA stream.
#pragma once

#include <cstdint>

namespace a3d_gs {

void launch_forward(const float* means2d, const float* conics, const float* opacities, const float* features,
                    const float* backgrounds, const int64_t* tile_offsets, const int32_t* flat_ids, int C, int N,
                    int D, int W, int H, float* images, float* alphas, int32_t* last, void* stream);

// Gradients are accumulated (atomically) into zero-initialised outputs.
void launch_backward(const float* means2d, const float* conics, const float* opacities, const float* features,
                     const float* backgrounds, const int64_t* tile_offsets, const int32_t* flat_ids,
                     const float* alphas, const int32_t* last, const float* v_images, const float* v_alphas,
                     int C, int N, int D, int W, int H, float* v_means2d, float* v_conics, float* v_opacities,
                     float* v_features, float* v_backgrounds, void* stream);

}  // namespace a3d_gs
