// CUDA Gaussian rasterizer: one 16x16 thread block per (camera, tile), one thread per pixel.
// Forward stages the tile's depth-sorted splats through shared memory in batches of 256 (gsplat's
// scheme) and stops a block once every pixel is saturated. Backward walks each pixel's contributing
// prefix back to front and accumulates gradients with atomics (simple; not yet tuned: the CUDA path
// is unmeasured until a GPU benchmark run exists). The per-pair maths (eval_pair, composite_forward,
// composite_backward) is gs_common.h's, shared with gs_raster_cpu.cpp, so semantics are identical.
#include <cuda_runtime.h>

#include "gs_common.h"
#include "gs_raster.h"

namespace a3d_gs {
namespace {

constexpr int kBlock = A3D_GS_TILE * A3D_GS_TILE;

__device__ __forceinline__ Splat<float> load_splat(const float* means2d, const float* conics, const float* opacities,
                                                   int64_t k) {
  return Splat<float>{means2d[2 * k], means2d[2 * k + 1], conics[3 * k], conics[3 * k + 1], conics[3 * k + 2],
                      opacities[k]};
}

__global__ void forward_kernel(const float* __restrict__ means2d, const float* __restrict__ conics,
                               const float* __restrict__ opacities, const float* __restrict__ features,
                               const float* __restrict__ backgrounds, const int64_t* __restrict__ tile_offsets,
                               const int32_t* __restrict__ flat_ids, int N, int D, int W, int H, int tiles_w,
                               int tiles, float* __restrict__ images, float* __restrict__ alphas,
                               int32_t* __restrict__ last) {
  __shared__ Splat<float> sh[kBlock];
  __shared__ int32_t sid[kBlock];
  const int64_t ct = blockIdx.x;
  const int c = (int)(ct / tiles), tile = (int)(ct % tiles);
  const int x = (tile % tiles_w) * A3D_GS_TILE + (int)threadIdx.x % A3D_GS_TILE;
  const int y = (tile / tiles_w) * A3D_GS_TILE + (int)threadIdx.x / A3D_GS_TILE;
  const bool inside = x < W && y < H;
  const int64_t pix = ((int64_t)c * H + y) * W + x;
  float* out = inside ? images + pix * D : nullptr;
  if (inside)
    for (int d = 0; d < D; ++d) out[d] = 0.f;  // the pixel's thread owns its output: accumulate in place
  const int64_t start = tile_offsets[ct], end = tile_offsets[ct + 1];
  const float px = x + 0.5f, py = y + 0.5f;
  float Tr = 1.f;
  int32_t lastv = 0;
  bool done = !inside;
  for (int64_t b = start; b < end; b += kBlock) {
    // doubles as the barrier that protects the shared batch from being overwritten while in use
    if (__syncthreads_count(done) == kBlock) break;
    const int64_t j = b + threadIdx.x;
    if (j < end) {
      const int32_t g = flat_ids[j];
      sh[threadIdx.x] = load_splat(means2d, conics, opacities, (int64_t)c * N + g);
      sid[threadIdx.x] = g;
    }
    __syncthreads();
    const int cnt = (int)min((int64_t)kBlock, end - b);
    for (int i = 0; i < cnt && !done; ++i) {
      // the same per-pair maths as the CPU kernels (gs_common.h)
      const PairEval<float> e = eval_pair(sh[i], px, py);
      float w;
      int stop;
      if (composite_forward(e, 1, Tr, w, stop)) {
        const float* f = features + ((int64_t)c * N + sid[i]) * D;
        for (int d = 0; d < D; ++d) out[d] += f[d] * w;
        lastv = (int32_t)(b - start + i + 1);
      }
      if (stop) {
        done = true;
        break;
      }
    }
  }
  if (!inside) return;
  if (backgrounds != nullptr)
    for (int d = 0; d < D; ++d) out[d] += Tr * backgrounds[(int64_t)c * D + d];
  alphas[pix] = 1.f - Tr;
  last[pix] = lastv;
}

__global__ void backward_kernel(const float* __restrict__ means2d, const float* __restrict__ conics,
                                const float* __restrict__ opacities, const float* __restrict__ features,
                                const float* __restrict__ backgrounds, const int64_t* __restrict__ tile_offsets,
                                const int32_t* __restrict__ flat_ids, const float* __restrict__ alphas,
                                const int32_t* __restrict__ last, const float* __restrict__ v_images,
                                const float* __restrict__ v_alphas, int N, int D, int W, int H, int tiles_w,
                                int tiles, float* v_means2d, float* v_conics, float* v_opacities,
                                float* v_features, float* v_backgrounds) {
  const int64_t ct = blockIdx.x;
  const int c = (int)(ct / tiles), tile = (int)(ct % tiles);
  const int x = (tile % tiles_w) * A3D_GS_TILE + (int)threadIdx.x % A3D_GS_TILE;
  const int y = (tile / tiles_w) * A3D_GS_TILE + (int)threadIdx.x / A3D_GS_TILE;
  if (x >= W || y >= H) return;
  const int64_t pix = ((int64_t)c * H + y) * W + x;
  const float Tfinal = 1.f - alphas[pix];
  const float* vout = v_images + pix * D;
  float tail = v_alphas[pix] * Tfinal;  // see composite_backward in gs_common.h for the derivation
  for (int d = 0; d < D; ++d) {
    const float bg = backgrounds != nullptr ? backgrounds[(int64_t)c * D + d] : 0.f;
    tail -= vout[d] * Tfinal * bg;
    if (backgrounds != nullptr) atomicAdd(&v_backgrounds[(int64_t)c * D + d], Tfinal * vout[d]);
  }
  const int64_t start = tile_offsets[ct];
  const float px = x + 0.5f, py = y + 0.5f;
  float Tr = Tfinal;
  for (int64_t i = (int64_t)last[pix] - 1; i >= 0; --i) {
    const int64_t k = (int64_t)c * N + flat_ids[start + i];
    const Splat<float> s = load_splat(means2d, conics, opacities, k);
    const PairEval<float> e = eval_pair(s, px, py);  // shared with the CPU kernels (gs_common.h)
    if (!e.ok) continue;
    const float* f = features + k * D;
    float fv = 0.f;
    for (int d = 0; d < D; ++d) fv += f[d] * vout[d];
    const PairGrad<float> g = composite_backward(s, e, 1, fv, Tr, tail);
    for (int d = 0; d < D; ++d) atomicAdd(&v_features[k * D + d], g.w * vout[d]);
    if (e.raw <= A3D_GS_ALPHA_MAX) {  // else alpha is clamped: only the weight has a gradient
      atomicAdd(&v_means2d[2 * k], g.mx);
      atomicAdd(&v_means2d[2 * k + 1], g.my);
      atomicAdd(&v_conics[3 * k], g.a);
      atomicAdd(&v_conics[3 * k + 1], g.b);
      atomicAdd(&v_conics[3 * k + 2], g.c);
      atomicAdd(&v_opacities[k], g.op);
    }
  }
}

}  // namespace

void launch_forward(const float* means2d, const float* conics, const float* opacities, const float* features,
                    const float* backgrounds, const int64_t* tile_offsets, const int32_t* flat_ids, int C, int N,
                    int D, int W, int H, float* images, float* alphas, int32_t* last, void* stream) {
  const int tiles_w = A3D_DIV_UP(W, A3D_GS_TILE), tiles = tiles_w * A3D_DIV_UP(H, A3D_GS_TILE);
  if (C * tiles == 0) return;
  forward_kernel<<<C * tiles, kBlock, 0, (cudaStream_t)stream>>>(means2d, conics, opacities, features, backgrounds,
                                                                  tile_offsets, flat_ids, N, D, W, H, tiles_w, tiles,
                                                                  images, alphas, last);
}

void launch_backward(const float* means2d, const float* conics, const float* opacities, const float* features,
                     const float* backgrounds, const int64_t* tile_offsets, const int32_t* flat_ids,
                     const float* alphas, const int32_t* last, const float* v_images, const float* v_alphas,
                     int C, int N, int D, int W, int H, float* v_means2d, float* v_conics, float* v_opacities,
                     float* v_features, float* v_backgrounds, void* stream) {
  const int tiles_w = A3D_DIV_UP(W, A3D_GS_TILE), tiles = tiles_w * A3D_DIV_UP(H, A3D_GS_TILE);
  if (C * tiles == 0) return;
  backward_kernel<<<C * tiles, kBlock, 0, (cudaStream_t)stream>>>(
      means2d, conics, opacities, features, backgrounds, tile_offsets, flat_ids, alphas, last, v_images, v_alphas,
      N, D, W, H, tiles_w, tiles, v_means2d, v_conics, v_opacities, v_features, v_backgrounds);
}

}  // namespace a3d_gs
