// CPU (OpenMP) tile-based Gaussian rasterizer: binning, front-to-back forward, back-to-front backward.
// Semantics match gsplat's rasterize_to_pixels (see gs_common.h). Work is split over (camera, tile)
// pairs; the backward pass accumulates per-Gaussian gradients first per tile (list order, no
// contention), then into a per-thread buffer that is reduced once at the end (no atomics).
#include <torch/extension.h>

#include <omp.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "gs_common.h"

namespace {

using a3d_gs::Splat;

struct Bins {
  int tiles_w, tiles_h;
  std::vector<int64_t> offsets;  // (C * tiles + 1,) start of each tile's list in ids
  std::vector<int32_t> ids;      // Gaussian index (within its camera), front to back per tile
};

// Per-camera depth sort, then counting-sort into tiles: lists come out depth-ordered (ties by index).
template <typename scalar_t>
Bins bin_gaussians(const scalar_t* means2d, const int32_t* radii, const scalar_t* depths, int C, int N, int W, int H) {
  Bins b;
  b.tiles_w = A3D_DIV_UP(W, A3D_GS_TILE);
  b.tiles_h = A3D_DIV_UP(H, A3D_GS_TILE);
  const int64_t T = (int64_t)b.tiles_w * b.tiles_h;
  std::vector<int64_t> counts(C * T + 1, 0);
  std::vector<std::vector<int32_t>> order(C);
  std::vector<int> rect((size_t)C * N * 4);
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; ++c) {
    std::vector<int32_t>& o = order[c];
    o.reserve(N);
    for (int n = 0; n < N; ++n) {
      const int64_t k = (int64_t)c * N + n;
      if (radii[2 * k] > 0 && radii[2 * k + 1] > 0) o.push_back(n);
    }
    const scalar_t* d = depths + (int64_t)c * N;
    std::stable_sort(o.begin(), o.end(), [d](int32_t i, int32_t j) { return (float)d[i] < (float)d[j]; });
    for (int n = 0; n < N; ++n) {
      const int64_t k = (int64_t)c * N + n;
      int* r = &rect[4 * k];
      a3d_gs::tile_range((float)means2d[2 * k], (float)means2d[2 * k + 1], (float)radii[2 * k], (float)radii[2 * k + 1],
                         b.tiles_w, b.tiles_h, r[0], r[1], r[2], r[3]);
    }
  }
  for (int c = 0; c < C; ++c)
    for (int32_t n : order[c]) {
      const int* r = &rect[4 * ((int64_t)c * N + n)];
      for (int ty = r[2]; ty < r[3]; ++ty)
        for (int tx = r[0]; tx < r[1]; ++tx) counts[c * T + (int64_t)ty * b.tiles_w + tx + 1]++;
    }
  std::partial_sum(counts.begin(), counts.end(), counts.begin());
  b.offsets = counts;
  b.ids.resize(counts.back());
  std::vector<int64_t> fill(counts.begin(), counts.end() - 1);
  for (int c = 0; c < C; ++c)
    for (int32_t n : order[c]) {
      const int* r = &rect[4 * ((int64_t)c * N + n)];
      for (int ty = r[2]; ty < r[3]; ++ty)
        for (int tx = r[0]; tx < r[1]; ++tx) b.ids[fill[c * T + (int64_t)ty * b.tiles_w + tx]++] = n;
    }
  return b;
}

template <typename scalar_t>
void gather_tile(const Bins& b, int64_t ct, int c, int N, int D, const scalar_t* means2d, const scalar_t* conics,
                 const scalar_t* opacities, const scalar_t* features, std::vector<Splat<scalar_t>>& sp,
                 std::vector<scalar_t>& feat) {
  const int64_t s0 = b.offsets[ct], n = b.offsets[ct + 1] - s0;
  sp.resize(n);
  feat.resize(n * D);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = (int64_t)c * N + b.ids[s0 + i];
    sp[i] = Splat<scalar_t>{means2d[2 * k], means2d[2 * k + 1], conics[3 * k], conics[3 * k + 1], conics[3 * k + 2], opacities[k]};
    for (int d = 0; d < D; ++d) feat[i * D + d] = features[k * D + d];
  }
}

void check(const torch::Tensor& t, const char* name, torch::ScalarType dt) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == dt, name, " has the wrong dtype");
}

template <typename scalar_t>
void forward_impl(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities, torch::Tensor features,
                  torch::Tensor radii, torch::Tensor depths, torch::Tensor backgrounds, bool has_bg, int C, int N, int D,
                  int W, int H, torch::Tensor& images, torch::Tensor& alphas, torch::Tensor& last,
                  torch::Tensor& offsets_t, torch::Tensor& ids_t) {
    Bins b = bin_gaussians<scalar_t>(means2d.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(), depths.data_ptr<scalar_t>(), C, N, W, H);
    const int64_t T = (int64_t)b.tiles_w * b.tiles_h;
    const scalar_t *m = means2d.data_ptr<scalar_t>(), *cn = conics.data_ptr<scalar_t>(), *op = opacities.data_ptr<scalar_t>(),
                   *f = features.data_ptr<scalar_t>(), *bg = has_bg ? backgrounds.data_ptr<scalar_t>() : nullptr;
    scalar_t *img = images.data_ptr<scalar_t>(), *alp = alphas.data_ptr<scalar_t>();
    int32_t* lst = last.data_ptr<int32_t>();
#pragma omp parallel
    {
      std::vector<Splat<scalar_t>> sp;
      std::vector<scalar_t> feat, acc(D);
#pragma omp for schedule(dynamic, 1)
      for (int64_t ct = 0; ct < C * T; ++ct) {
        const int c = ct / T, tile = ct % T, tx = tile % b.tiles_w, ty = tile / b.tiles_w;
        gather_tile(b, ct, c, N, D, m, cn, op, f, sp, feat);
        const int64_t n = sp.size();
        for (int y = ty * A3D_GS_TILE; y < std::min(H, (ty + 1) * A3D_GS_TILE); ++y)
          for (int x = tx * A3D_GS_TILE; x < std::min(W, (tx + 1) * A3D_GS_TILE); ++x) {
            const scalar_t px = x + scalar_t(0.5), py = y + scalar_t(0.5);
            scalar_t Tr = 1;
            int32_t end = 0;
            std::fill(acc.begin(), acc.end(), scalar_t(0));
            for (int64_t i = 0; i < n; ++i) {
              scalar_t dx, dy;
              const scalar_t sigma = a3d_gs::splat_sigma(sp[i], px, py, dx, dy);
              if (sigma < 0) continue;
              const scalar_t alpha = std::min(scalar_t(A3D_GS_ALPHA_MAX), sp[i].opacity * std::exp(-sigma));
              if (alpha < scalar_t(A3D_GS_ALPHA_MIN)) continue;
              const scalar_t nextT = Tr * (1 - alpha);
              if (nextT <= scalar_t(A3D_GS_T_EPS)) break;  // this Gaussian is not composited (gsplat)
              const scalar_t w = alpha * Tr;
              const scalar_t* fi = &feat[i * D];
              for (int d = 0; d < D; ++d) acc[d] += fi[d] * w;
              Tr = nextT;
              end = (int32_t)(i + 1);
            }
            const int64_t pix = ((int64_t)c * H + y) * W + x;
            for (int d = 0; d < D; ++d) img[pix * D + d] = acc[d] + (bg ? Tr * bg[c * D + d] : scalar_t(0));
            alp[pix] = 1 - Tr;
            lst[pix] = end;
          }
      }
    }
    offsets_t = torch::from_blob(b.offsets.data(), {(int64_t)b.offsets.size()}, torch::kInt64).clone();
    ids_t = torch::from_blob(b.ids.data(), {(int64_t)b.ids.size()}, torch::kInt32).clone();
}

template <typename scalar_t>
void backward_impl(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities, torch::Tensor features,
                   torch::Tensor backgrounds, torch::Tensor alphas, torch::Tensor last, torch::Tensor offsets,
                   torch::Tensor ids, torch::Tensor v_images, torch::Tensor v_alphas, bool has_bg, int C, int N, int D,
                   int W, int H, torch::Tensor& v_means2d, torch::Tensor& v_conics, torch::Tensor& v_opac,
                   torch::Tensor& v_feat, torch::Tensor& v_bg) {
  const int tiles_w = A3D_DIV_UP(W, A3D_GS_TILE), tiles_h = A3D_DIV_UP(H, A3D_GS_TILE);
  const int64_t T = (int64_t)tiles_w * tiles_h;
  const int G = 6 + D;  // per-Gaussian gradient record: mx, my, a, b, c, opacity, features...
  const int nthreads = omp_get_max_threads();
    const scalar_t *m = means2d.data_ptr<scalar_t>(), *cn = conics.data_ptr<scalar_t>(), *op = opacities.data_ptr<scalar_t>(),
                   *f = features.data_ptr<scalar_t>(), *bg = has_bg ? backgrounds.data_ptr<scalar_t>() : nullptr,
                   *alp = alphas.data_ptr<scalar_t>(), *vi = v_images.data_ptr<scalar_t>(), *va = v_alphas.data_ptr<scalar_t>();
    const int32_t* lst = last.data_ptr<int32_t>();
    Bins b;
    b.tiles_w = tiles_w; b.tiles_h = tiles_h;
    b.offsets.assign(offsets.data_ptr<int64_t>(), offsets.data_ptr<int64_t>() + offsets.numel());
    b.ids.assign(ids.data_ptr<int32_t>(), ids.data_ptr<int32_t>() + ids.numel());
    // one gradient buffer per thread over all (camera, Gaussian) records, reduced after the tile loop
    std::vector<scalar_t> bufs((size_t)nthreads * C * N * G, scalar_t(0));
    std::vector<scalar_t> bg_bufs((size_t)nthreads * C * D, scalar_t(0));
#pragma omp parallel num_threads(nthreads)
    {
      const int tid = omp_get_thread_num();
      scalar_t* gbuf = &bufs[(size_t)tid * C * N * G];
      scalar_t* bgbuf = &bg_bufs[(size_t)tid * C * D];
      std::vector<Splat<scalar_t>> sp;
      std::vector<scalar_t> feat, g, S(D), bgv(D);
#pragma omp for schedule(dynamic, 1)
      for (int64_t ct = 0; ct < C * T; ++ct) {
        const int c = ct / T, tile = ct % T, tx = tile % tiles_w, ty = tile / tiles_w;
        gather_tile(b, ct, c, N, D, m, cn, op, f, sp, feat);
        const int64_t n = sp.size();
        if (n == 0 && !bg) continue;
        g.assign(n * G, scalar_t(0));
        for (int d = 0; d < D; ++d) bgv[d] = bg ? bg[c * D + d] : scalar_t(0);
        for (int y = ty * A3D_GS_TILE; y < std::min(H, (ty + 1) * A3D_GS_TILE); ++y)
          for (int x = tx * A3D_GS_TILE; x < std::min(W, (tx + 1) * A3D_GS_TILE); ++x) {
            const int64_t pix = ((int64_t)c * H + y) * W + x;
            const scalar_t Tfinal = 1 - alp[pix];
            const scalar_t* vout = vi + pix * D;
            const scalar_t vA = va[pix];
            if (bg)
              for (int d = 0; d < D; ++d) bgbuf[c * D + d] += Tfinal * vout[d];
            // dL/dalpha_i = sum_d v_d (f_id T_i - (S_d + Tfinal bg_d) / (1 - a_i)) + vA Tfinal / (1 - a_i),
            // S_d = sum_{j>i} f_jd a_j T_j, accumulated while walking back to front.
            scalar_t tail = vA * Tfinal;  // running  sum_d v_d (S_d + Tfinal bg_d) subtracted + vA Tfinal
            for (int d = 0; d < D; ++d) tail -= vout[d] * Tfinal * bgv[d];
            scalar_t Tr = Tfinal;
            const scalar_t px = x + scalar_t(0.5), py = y + scalar_t(0.5);
            for (int64_t i = (int64_t)lst[pix] - 1; i >= 0; --i) {
              scalar_t dx, dy;
              const scalar_t sigma = a3d_gs::splat_sigma(sp[i], px, py, dx, dy);
              if (sigma < 0) continue;
              const scalar_t vis = std::exp(-sigma);
              const scalar_t raw = sp[i].opacity * vis;
              const scalar_t alpha = std::min(scalar_t(A3D_GS_ALPHA_MAX), raw);
              if (alpha < scalar_t(A3D_GS_ALPHA_MIN)) continue;
              const scalar_t ra = 1 / (1 - alpha);
              const scalar_t Ti = Tr * ra;  // transmittance in front of Gaussian i
              const scalar_t w = alpha * Ti;
              scalar_t* gi = &g[i * G];
              const scalar_t* fi = &feat[i * D];
              scalar_t v_alpha = tail * ra;
              scalar_t fv = 0;
              for (int d = 0; d < D; ++d) {
                gi[6 + d] += w * vout[d];
                fv += fi[d] * vout[d];
              }
              v_alpha += fv * Ti;
              tail -= fv * w;  // Gaussian i joins S for the ones in front of it
              if (raw <= scalar_t(A3D_GS_ALPHA_MAX)) a3d_gs::splat_alpha_backward(sp[i], dx, dy, vis, v_alpha, gi);
              Tr = Ti;
            }
          }
        const int64_t s0 = b.offsets[ct];
        for (int64_t i = 0; i < n; ++i) {
          scalar_t* dst = gbuf + ((int64_t)c * N + b.ids[s0 + i]) * G;
          const scalar_t* src = &g[i * G];
          for (int k = 0; k < G; ++k) dst[k] += src[k];
        }
      }
    }
    scalar_t *vm = v_means2d.data_ptr<scalar_t>(), *vc = v_conics.data_ptr<scalar_t>(), *vo = v_opac.data_ptr<scalar_t>(),
             *vf = v_feat.data_ptr<scalar_t>(), *vb = v_bg.data_ptr<scalar_t>();
    const int64_t CN = (int64_t)C * N;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < CN; ++k) {
      scalar_t r[64];
      std::vector<scalar_t> big;
      scalar_t* acc = r;
      if (G > 64) { big.assign(G, 0); acc = big.data(); }
      for (int j = 0; j < G; ++j) acc[j] = 0;
      for (int t = 0; t < nthreads; ++t) {
        const scalar_t* src = &bufs[((size_t)t * CN + k) * G];
        for (int j = 0; j < G; ++j) acc[j] += src[j];
      }
      vm[2 * k] = acc[0]; vm[2 * k + 1] = acc[1];
      vc[3 * k] = acc[2]; vc[3 * k + 1] = acc[3]; vc[3 * k + 2] = acc[4];
      vo[k] = acc[5];
      for (int d = 0; d < D; ++d) vf[k * D + d] = acc[6 + d];
    }
    for (int t = 0; t < nthreads; ++t)
      for (int j = 0; j < C * D; ++j) vb[j] += bg_bufs[(size_t)t * C * D + j];
}

}  // namespace

// means2d (C,N,2), conics (C,N,3), opacities (C,N), features (C,N,D), radii (C,N,2) int32,
// depths (C,N), backgrounds (C,D) or empty. Returns images (C,H,W,D), alphas (C,H,W,1),
// last (C,H,W) int32 = end of the contributing prefix of each pixel's tile list,
// tile_offsets (C*tiles+1) int64, flat_ids (M) int32.
std::vector<torch::Tensor> gs_forward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities,
                                     torch::Tensor features, torch::Tensor radii, torch::Tensor depths,
                                     torch::Tensor backgrounds, int64_t width, int64_t height) {
  const auto dt = means2d.scalar_type();
  check(means2d, "means2d", dt); check(conics, "conics", dt); check(opacities, "opacities", dt);
  check(features, "features", dt); check(radii, "radii", torch::kInt32); check(depths, "depths", dt);
  const int C = means2d.size(0), N = means2d.size(1), D = features.size(2);
  const int W = width, H = height;
  const bool has_bg = backgrounds.numel() > 0;
  if (has_bg) check(backgrounds, "backgrounds", dt);
  auto opts = means2d.options();
  auto images = torch::empty({C, H, W, D}, opts);
  auto alphas = torch::empty({C, H, W, 1}, opts);
  auto last = torch::empty({C, H, W}, opts.dtype(torch::kInt32));
  torch::Tensor offsets_t, ids_t;
  if (dt == torch::kFloat64)
    forward_impl<double>(means2d, conics, opacities, features, radii, depths, backgrounds, has_bg, C, N, D, W, H, images, alphas, last, offsets_t, ids_t);
  else
    forward_impl<float>(means2d, conics, opacities, features, radii, depths, backgrounds, has_bg, C, N, D, W, H, images, alphas, last, offsets_t, ids_t);
  return {images, alphas, last, offsets_t, ids_t};
}

// Gradients for gs_forward's float inputs. v_images (C,H,W,D), v_alphas (C,H,W,1).
// Returns v_means2d (C,N,2), v_conics (C,N,3), v_opacities (C,N), v_features (C,N,D), v_backgrounds (C,D).
std::vector<torch::Tensor> gs_backward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities,
                                      torch::Tensor features, torch::Tensor backgrounds, torch::Tensor alphas,
                                      torch::Tensor last, torch::Tensor offsets, torch::Tensor ids,
                                      torch::Tensor v_images, torch::Tensor v_alphas, int64_t width, int64_t height) {
  const auto dt = means2d.scalar_type();
  check(v_images, "v_images", dt); check(v_alphas, "v_alphas", dt); check(alphas, "alphas", dt);
  check(last, "last", torch::kInt32); check(offsets, "tile_offsets", torch::kInt64); check(ids, "flat_ids", torch::kInt32);
  const int C = means2d.size(0), N = means2d.size(1), D = features.size(2);
  const int W = width, H = height;
  const bool has_bg = backgrounds.numel() > 0;
  auto opts = means2d.options();
  auto v_bg = torch::zeros({C, D}, opts);
  auto v_means2d = torch::empty({C, N, 2}, opts), v_conics = torch::empty({C, N, 3}, opts);
  auto v_opac = torch::empty({C, N}, opts), v_feat = torch::empty({C, N, D}, opts);
  if (dt == torch::kFloat64)
    backward_impl<double>(means2d, conics, opacities, features, backgrounds, alphas, last, offsets, ids, v_images, v_alphas, has_bg, C, N, D, W, H, v_means2d, v_conics, v_opac, v_feat, v_bg);
  else
    backward_impl<float>(means2d, conics, opacities, features, backgrounds, alphas, last, offsets, ids, v_images, v_alphas, has_bg, C, N, D, W, H, v_means2d, v_conics, v_opac, v_feat, v_bg);
  return {v_means2d, v_conics, v_opac, v_feat, v_bg};
}

int64_t gs_num_threads() { return omp_get_max_threads(); }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &gs_forward, "Gaussian rasterization forward (CPU)");
  m.def("backward", &gs_backward, "Gaussian rasterization backward (CPU)");
  m.def("num_threads", &gs_num_threads, "OpenMP threads used");
}
