// CUDA EWA projection: forward one thread per (camera, Gaussian); backward one thread per Gaussian
// looping over cameras (each thread owns its gradient rows: no atomics). Maths in gs_project.h.
#include <cuda_runtime.h>

#include "gs_project.h"
#include "gs_raster.h"

namespace a3d_gs {
namespace {

__device__ ProjIn<float> load_in(const float* means, const float* quats, const float* scales, const float* vm,
                                 const float* K, int64_t n, int c) {
  ProjIn<float> in;
  for (int i = 0; i < 3; ++i) { in.m[i] = means[3 * n + i]; in.s[i] = scales[3 * n + i]; }
  for (int i = 0; i < 4; ++i) in.q[i] = quats[4 * n + i];
  const float* V = vm + 16 * c;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) in.R[3 * i + j] = V[4 * i + j];
    in.t[i] = V[4 * i + 3];
  }
  const float* k = K + 9 * c;
  in.fx = k[0]; in.fy = k[4]; in.cx = k[2]; in.cy = k[5];
  return in;
}

__global__ void project_forward_kernel(const float* means, const float* quats, const float* scales, const float* vm,
                                       const float* K, int C, int64_t N, int W, int H, float near_plane,
                                       float far_plane, float eps2d, int32_t* radii, float* means2d, float* depths,
                                       float* conics) {
  const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= C * N) return;
  const int c = (int)(k / N);
  ProjState<float> st;
  int r[2];
  project_forward(load_in(means, quats, scales, vm, K, k % N, c), W, H, near_plane, far_plane, eps2d, st,
                  means2d + 2 * k, depths + k, conics + 3 * k, r);
  radii[2 * k] = r[0];
  radii[2 * k + 1] = r[1];
}

__global__ void project_backward_kernel(const float* means, const float* quats, const float* scales, const float* vm,
                                        const float* K, int C, int64_t N, int W, int H, float near_plane,
                                        float far_plane, float eps2d, const float* v_means2d, const float* v_depths,
                                        const float* v_conics, float* v_means, float* v_quats, float* v_scales) {
  const int64_t n = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (n >= N) return;
  float g[10] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  for (int c = 0; c < C; ++c) {
    const int64_t k = (int64_t)c * N + n;
    const ProjIn<float> in = load_in(means, quats, scales, vm, K, n, c);
    ProjState<float> st;
    float m2[2], dep, con[3];
    int r[2];
    project_forward(in, W, H, near_plane, far_plane, eps2d, st, m2, &dep, con, r);
    project_backward(in, st, v_means2d + 2 * k, v_depths[k], v_conics + 3 * k, g);
  }
  for (int i = 0; i < 3; ++i) { v_means[3 * n + i] = g[i]; v_scales[3 * n + i] = g[7 + i]; }
  for (int i = 0; i < 4; ++i) v_quats[4 * n + i] = g[3 + i];
}

}  // namespace

void launch_project_forward(const float* means, const float* quats, const float* scales, const float* viewmats,
                            const float* Ks, int C, int64_t N, int W, int H, float near_plane, float far_plane,
                            float eps2d, int32_t* radii, float* means2d, float* depths, float* conics, void* stream) {
  const int64_t total = C * N;
  if (total == 0) return;
  project_forward_kernel<<<(unsigned)A3D_DIV_UP(total, 256), 256, 0, (cudaStream_t)stream>>>(
      means, quats, scales, viewmats, Ks, C, N, W, H, near_plane, far_plane, eps2d, radii, means2d, depths, conics);
}

void launch_project_backward(const float* means, const float* quats, const float* scales, const float* viewmats,
                             const float* Ks, int C, int64_t N, int W, int H, float near_plane, float far_plane,
                             float eps2d, const float* v_means2d, const float* v_depths, const float* v_conics,
                             float* v_means, float* v_quats, float* v_scales, void* stream) {
  if (N == 0) return;
  project_backward_kernel<<<(unsigned)A3D_DIV_UP(N, 256), 256, 0, (cudaStream_t)stream>>>(
      means, quats, scales, viewmats, Ks, C, N, W, H, near_plane, far_plane, eps2d, v_means2d, v_depths, v_conics,
      v_means, v_quats, v_scales);
}

}  // namespace a3d_gs
