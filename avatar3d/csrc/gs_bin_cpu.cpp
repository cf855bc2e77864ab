// Tile binning of projected Gaussians on the CPU (used by gs_raster_cpu.cpp): per camera a stable
// radix sort by depth, then a counting sort into 16x16 tiles, in parallel over slices of the depth
// order. Lists match bin_gaussians_torch in avatar3d/render/gaussians.py (tested) and gsplat's.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "gs_bin_cpu.h"
#include "gs_common.h"

namespace {

// Float -> unsigned key with the same order (-0 and +0 equal, as with operator<).
inline uint32_t sortable(float v) { return a3d::float_order_bits(v == 0.f ? 0.f : v); }

// Stable LSD radix sort (3 passes of 11 bits) of Gaussian indices by depth: ties keep index order,
// exactly like a stable comparison sort, at a fraction of its cost for 100k keys.
void depth_order(const uint32_t* keys_in, std::vector<int32_t>& idx) {
  const size_t n = idx.size();
  std::vector<int32_t> tmp(n);
  std::vector<uint32_t> k(n), ktmp(n);
  for (size_t j = 0; j < n; ++j) k[j] = keys_in[idx[j]];
  for (int shift = 0; shift < 32; shift += 11) {
    uint32_t hist[2049] = {0};
    for (size_t j = 0; j < n; ++j) hist[((k[j] >> shift) & 2047u) + 1]++;
    for (int b = 0; b < 2048; ++b) hist[b + 1] += hist[b];
    for (size_t j = 0; j < n; ++j) {
      const uint32_t dst = hist[(k[j] >> shift) & 2047u]++;
      tmp[dst] = idx[j];
      ktmp[dst] = k[j];
    }
    idx.swap(tmp);
    k.swap(ktmp);
  }
}

}  // namespace

namespace a3d_gs {

// (See gs_bin_cpu.h.) The counting and scattering run in parallel over contiguous slices of the
// depth order (per-thread counts), so the order is kept.
template <typename scalar_t>
std::pair<at::Tensor, at::Tensor> bin_gaussians_cpu(const scalar_t* means2d, const int32_t* radii, const scalar_t* depths,
                                                int C, int N, int W, int H) {
  const int tiles_w = A3D_DIV_UP(W, A3D_GS_TILE), tiles_h = A3D_DIV_UP(H, A3D_GS_TILE);
  const int64_t T = (int64_t)tiles_w * tiles_h, CT = C * T, CN = (int64_t)C * N;
  std::vector<uint32_t> keys(CN);
  std::vector<int> rect((size_t)CN * 4);
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < CN; ++k) {
    keys[k] = sortable((float)depths[k]);
    int* r = &rect[4 * k];
    a3d_gs::tile_range((float)means2d[2 * k], (float)means2d[2 * k + 1], (float)radii[2 * k], (float)radii[2 * k + 1],
                       tiles_w, tiles_h, r[0], r[1], r[2], r[3]);  // read only for the valid ones (flat, below)
  }
  // flat (c * N + n) keys of the valid Gaussians, camera-major, depth-ordered within each camera
  std::vector<std::vector<int32_t>> order(C);
#pragma omp parallel for schedule(dynamic, 1)
  for (int c = 0; c < C; ++c) {
    std::vector<int32_t>& o = order[c];
    o.reserve(N);
    for (int n = 0; n < N; ++n) {
      const int64_t k = (int64_t)c * N + n;
      if (radii[2 * k] > 0 && radii[2 * k + 1] > 0) o.push_back(n);
    }
    depth_order(keys.data() + (int64_t)c * N, o);
  }
  std::vector<int64_t> flat;
  flat.reserve(CN);
  for (int c = 0; c < C; ++c)
    for (int32_t n : order[c]) flat.push_back((int64_t)c * N + n);
  const int64_t M = (int64_t)flat.size();
  const int nth = std::max(1, std::min<int>(omp_get_max_threads(), (int)(M / 4096) + 1));
  std::vector<int64_t> cnt((size_t)nth * CT, 0);  // per slice, per (camera, tile)
  auto for_tiles = [&](int64_t k, auto&& fn) {
    const int* r = &rect[4 * k];
    const int64_t base = (k / N) * T;
    for (int ty = r[2]; ty < r[3]; ++ty)
      for (int tx = r[0]; tx < r[1]; ++tx) fn(base + (int64_t)ty * tiles_w + tx);
  };
#pragma omp parallel for schedule(static, 1) num_threads(nth)
  for (int t = 0; t < nth; ++t) {
    int64_t* ct = &cnt[(size_t)t * CT];
    for (int64_t j = M * t / nth; j < M * (t + 1) / nth; ++j) for_tiles(flat[j], [&](int64_t q) { ct[q]++; });
  }
  at::Tensor offsets_t = at::empty({CT + 1}, at::kLong);
  int64_t* offs = offsets_t.data_ptr<int64_t>();
  int64_t run = 0;
  for (int64_t q = 0; q < CT; ++q) {
    offs[q] = run;
    for (int t = 0; t < nth; ++t) {  // turn counts into each slice's write position
      const int64_t c = cnt[(size_t)t * CT + q];
      cnt[(size_t)t * CT + q] = run;
      run += c;
    }
  }
  offs[CT] = run;
  at::Tensor ids_t = at::empty({run}, at::kInt);
  int32_t* ids = ids_t.data_ptr<int32_t>();
#pragma omp parallel for schedule(static, 1) num_threads(nth)
  for (int t = 0; t < nth; ++t) {
    int64_t* pos = &cnt[(size_t)t * CT];
    for (int64_t j = M * t / nth; j < M * (t + 1) / nth; ++j) {
      const int32_t n = (int32_t)(flat[j] % N);
      for_tiles(flat[j], [&](int64_t q) { ids[pos[q]++] = n; });
    }
  }
  return {offsets_t, ids_t};
}

template std::pair<at::Tensor, at::Tensor> bin_gaussians_cpu<float>(const float*, const int32_t*, const float*, int, int,
                                                                    int, int);
template std::pair<at::Tensor, at::Tensor> bin_gaussians_cpu<double>(const double*, const int32_t*, const double*, int,
                                                                     int, int, int);

}  // namespace a3d_gs
