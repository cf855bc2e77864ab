// Torch-free launchers of the CUDA mesh kernels (mesh_kernels.cu); the torch binding is
// mesh_cuda_bind.cpp. Pointers are device pointers to contiguous arrays; T is float or double.
// "batched" flags say whether an input has one slice per view (else slice 0 is shared).
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

namespace a3d {

// zbuf: B*H*W uint64 scratch; ranges: HOST array (B,2) or nullptr (all triangles for every view).
template <typename T>
void launch_rasterize_fwd(const T* pos, bool pos_batched, int V, const int* tri, int F, const int* ranges_host, int B, int H,
                          int W, unsigned long long* zbuf, T* rast, T* db, cudaStream_t stream);
template <typename T>
void launch_rasterize_bwd(const T* pos, bool pos_batched, int V, const int* tri, const T* rast, const T* grad, int B, int H,
                          int W, T* grad_pos, cudaStream_t stream);
template <typename T>
void launch_interpolate_fwd(const T* attr, bool attr_batched, int V, int A, const T* rast, const int* tri, int B, int H, int W,
                            T* out, cudaStream_t stream);
template <typename T>
void launch_interpolate_bwd(const T* attr, bool attr_batched, int V, int A, const T* rast, const int* tri, const T* grad,
                            int B, int H, int W, T* grad_attr, T* grad_rast, cudaStream_t stream);
template <typename T>
void launch_texture_fwd(const T* tex, bool tex_batched, int Ht, int Wt, int C, const T* uv, int B, int H, int W, int filt,
                        int bound, T* out, cudaStream_t stream);
template <typename T>
void launch_texture_bwd(const T* tex, bool tex_batched, int Ht, int Wt, int C, const T* uv, const T* grad, int B, int H, int W,
                        int filt, int bound, T* grad_tex, T* grad_uv, cudaStream_t stream);
// orient: scratch of (pos_batched ? B : 1) * F bytes (per-view triangle orientations).
template <typename T>
void launch_antialias_fwd(const T* color, const T* rast, const T* pos, bool pos_batched, int V, const int* tri, const int* adj,
                          int F, int B, int H, int W, int C, signed char* orient, T* out, cudaStream_t stream);
template <typename T>
void launch_antialias_bwd(const T* color, const T* rast, const T* pos, bool pos_batched, int V, const int* tri, const int* adj,
                          int F, const T* grad, int B, int H, int W, int C, signed char* orient, T* grad_color, T* grad_pos,
                          cudaStream_t stream);

}  // namespace a3d
