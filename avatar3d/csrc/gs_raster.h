// Launchers of the CUDA Gaussian kernels (gs_raster.cu, gs_project.cu); raw float32 pointers so the .cu file needs
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

// EWA projection (gs_project.cu). means (N,3), quats (N,4), scales (N,3), viewmats (C,4,4), Ks (C,3,3);
// outputs radii (C,N,2) int32, means2d (C,N,2), depths (C,N), conics (C,N,3). Backward writes (not
// accumulates) v_means (N,3), v_quats (N,4), v_scales (N,3).
void launch_project_forward(const float* means, const float* quats, const float* scales, const float* viewmats,
                            const float* Ks, int C, int64_t N, int W, int H, float near_plane, float far_plane,
                            float eps2d, int32_t* radii, float* means2d, float* depths, float* conics, void* stream);
void launch_project_backward(const float* means, const float* quats, const float* scales, const float* viewmats,
                             const float* Ks, int C, int64_t N, int W, int H, float near_plane, float far_plane,
                             float eps2d, const float* v_means2d, const float* v_depths, const float* v_conics,
                             float* v_means, float* v_quats, float* v_scales, void* stream);

}  // namespace a3d_gs
