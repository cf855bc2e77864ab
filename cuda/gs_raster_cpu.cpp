// CPU (OpenMP) tile-based Gaussian rasterizer: binning, front-to-back forward, back-to-front backward.
// Semantics match gsplat's rasterize_to_pixels (see gs_common.h). Work is split over (camera, tile)
// pairs; the backward pass accumulates per-Gaussian gradients first per tile (list order, no
// contention), then into a per-thread buffer that is reduced once at the end (no atomics).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <omp.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "gs_common.h"
#include "gs_cpu_ops.h"

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

// Pixel rectangle of one tile ([X0, X1) x [Y0, Y1)) and, per splat, its 3.33-sigma box clipped to it.
struct TileRect {
  int X0, X1, Y0, Y1;
};

// Columns [xa, xb] of pixel row y (already clipped to the splat's box [x0, x1]) where the splat can
// reach alpha >= 1/255: sigma <= smax = log(255 opacity) + 0.01 (the 1% alpha margin absorbs rounding,
// floor/ceil add up to a pixel). Solving the quadratic skips the box corners and, for faint splats,
// most of the box; pixels outside the span would be skipped by the exact test anyway.
struct RowQuad {  // per-splat constants of the row-span quadratic (see row_span); inv_2a = 1 / (2 half_a)
  double smax, half_a, inv_2a, b, half_c, mx, my;
};

inline bool row_span(const RowQuad& q, int y, int x0, int x1, int& xa, int& xb) {
  if (!(q.half_a > 0)) { xa = x0; xb = x1; return x0 <= x1; }  // degenerate conic: test the whole row
  const double dy = y + 0.5 - q.my;
  const double B = q.b * dy, Cq = q.half_c * dy * dy - q.smax;
  const double disc = B * B - 4 * q.half_a * Cq;
  if (disc < 0) return false;
  const double sq = std::sqrt(disc), base = q.mx - 0.5;
  // +-1 instead of floor/ceil: same guarantee (at least the exact span), cheaper
  const double lo = base + (-B - sq) * q.inv_2a - 1, hi = base + (-B + sq) * q.inv_2a + 1;
  xa = lo > x0 ? (int)lo : x0;
  xb = hi < x1 ? (int)hi : x1;
  return xa <= xb;
}

template <typename scalar_t>
void gather_tile(const Bins& b, int64_t ct, int c, int N, int D, const scalar_t* means2d, const scalar_t* conics,
                 const scalar_t* opacities, const scalar_t* features, const int32_t* radii, const TileRect& t,
                 std::vector<Splat<scalar_t>>& sp, std::vector<scalar_t>& feat, std::vector<int>& box,
                 std::vector<RowQuad>& smax) {
  const int64_t s0 = b.offsets[ct], n = b.offsets[ct + 1] - s0;
  sp.resize(n);
  feat.resize(n * D);
  box.resize(n * 4);
  smax.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t k = (int64_t)c * N + b.ids[s0 + i];
    sp[i] = Splat<scalar_t>{means2d[2 * k], means2d[2 * k + 1], conics[3 * k], conics[3 * k + 1], conics[3 * k + 2], opacities[k]};
    for (int d = 0; d < D; ++d) feat[i * D + d] = features[k * D + d];
    // Pixels whose centre lies outside mean +- radius have sigma >= 0.5 * 3.33^2 = 5.54, i.e.
    // alpha <= 0.00391 < 1/255 (the radius bounds the ellipse's axis-aligned extent), so gsplat would
    // skip them anyway: visiting only the box is exact, and much cheaper for small splats.
    const double mx = (double)sp[i].mx - 0.5, my = (double)sp[i].my - 0.5, rx = radii[2 * k], ry = radii[2 * k + 1];
    box[4 * i + 0] = (int)std::max<double>(t.X0, std::ceil(mx - rx));
    box[4 * i + 1] = (int)std::min<double>(t.X1 - 1, std::floor(mx + rx));
    box[4 * i + 2] = (int)std::max<double>(t.Y0, std::ceil(my - ry));
    box[4 * i + 3] = (int)std::min<double>(t.Y1 - 1, std::floor(my + ry));
    // alpha <= opacity (sigma >= 0): a splat fainter than 1/255 never contributes
    const double o255 = 255.0 * (double)sp[i].opacity;
    if (!(o255 >= 1.0)) box[4 * i + 3] = box[4 * i + 2] - 1;  // empty box
    const double ha = 0.5 * (double)sp[i].a;
    smax[i] = RowQuad{o255 >= 1.0 ? std::log(o255) + 0.01 : 0.0, ha, ha > 0 ? 0.5 / ha : 0.0, (double)sp[i].b,
                      0.5 * (double)sp[i].c, (double)sp[i].mx, (double)sp[i].my};
  }
}

TileRect tile_rect(int tile, int tiles_w, int W, int H) {
  const int tx = tile % tiles_w, ty = tile / tiles_w;
  return TileRect{tx * A3D_GS_TILE, std::min(W, (tx + 1) * A3D_GS_TILE), ty * A3D_GS_TILE, std::min(H, (ty + 1) * A3D_GS_TILE)};
}

void check(const at::Tensor& t, const char* name, at::ScalarType dt) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == dt, name, " has the wrong dtype");
}

template <typename scalar_t>
void forward_impl(at::Tensor means2d, at::Tensor conics, at::Tensor opacities, at::Tensor features,
                  at::Tensor radii, at::Tensor depths, at::Tensor backgrounds, bool has_bg, int C, int N, int D,
                  int W, int H, at::Tensor& images, at::Tensor& alphas, at::Tensor& last,
                  at::Tensor& offsets_t, at::Tensor& ids_t) {
    Bins b = bin_gaussians<scalar_t>(means2d.data_ptr<scalar_t>(), radii.data_ptr<int32_t>(), depths.data_ptr<scalar_t>(), C, N, W, H);
    const int64_t T = (int64_t)b.tiles_w * b.tiles_h;
    const scalar_t *m = means2d.data_ptr<scalar_t>(), *cn = conics.data_ptr<scalar_t>(), *op = opacities.data_ptr<scalar_t>(),
                   *f = features.data_ptr<scalar_t>(), *bg = has_bg ? backgrounds.data_ptr<scalar_t>() : nullptr;
    scalar_t *img = images.data_ptr<scalar_t>(), *alp = alphas.data_ptr<scalar_t>();
    int32_t* lst = last.data_ptr<int32_t>();
    const int32_t* rad = radii.data_ptr<int32_t>();
#pragma omp parallel
    {
      std::vector<Splat<scalar_t>> sp;
      std::vector<scalar_t> feat, acc, Tr;
      std::vector<int> box;
      std::vector<RowQuad> smax;
      std::vector<int32_t> end;
      std::vector<char> done;
#pragma omp for schedule(dynamic, 1)
      for (int64_t ct = 0; ct < C * T; ++ct) {
        const int c = ct / T;
        const TileRect t = tile_rect(ct % T, b.tiles_w, W, H);
        gather_tile(b, ct, c, N, D, m, cn, op, f, rad, t, sp, feat, box, smax);
        const int64_t n = sp.size();
        const int tw = t.X1 - t.X0, np = tw * (t.Y1 - t.Y0);
        // Splat-major traversal with per-pixel state; each pixel still sees the splats in depth order
        // and stops exactly where gsplat's per-pixel loop stops.
        acc.assign((size_t)np * D, scalar_t(0));
        Tr.assign(np, scalar_t(1));
        end.assign(np, 0);
        done.assign(np, 0);
        int ndone = 0;
        for (int64_t i = 0; i < n && ndone < np; ++i) {
          const Splat<scalar_t> s = sp[i];
          const scalar_t* fi = &feat[i * D];
          for (int y = box[4 * i + 2]; y <= box[4 * i + 3]; ++y) {
            int xa, xb;
            if (!row_span(smax[i], y, box[4 * i], box[4 * i + 1], xa, xb)) continue;
            for (int x = xa; x <= xb; ++x) {
              const int p = (y - t.Y0) * tw + (x - t.X0);
              if (done[p]) continue;
              scalar_t dx, dy;
              const scalar_t sigma = a3d_gs::splat_sigma(s, x + scalar_t(0.5), y + scalar_t(0.5), dx, dy);
              if (sigma < 0) continue;
              const scalar_t alpha = std::min(scalar_t(A3D_GS_ALPHA_MAX), s.opacity * std::exp(-sigma));
              if (alpha < scalar_t(A3D_GS_ALPHA_MIN)) continue;
              const scalar_t nextT = Tr[p] * (1 - alpha);
              if (nextT <= scalar_t(A3D_GS_T_EPS)) {  // this splat is not composited (gsplat)
                done[p] = 1;
                ++ndone;
                continue;
              }
              const scalar_t w = alpha * Tr[p];
              scalar_t* ap = &acc[(size_t)p * D];
              for (int d = 0; d < D; ++d) ap[d] += fi[d] * w;
              Tr[p] = nextT;
              end[p] = (int32_t)(i + 1);
            }
          }
        }
        for (int y = t.Y0; y < t.Y1; ++y)
          for (int x = t.X0; x < t.X1; ++x) {
            const int p = (y - t.Y0) * tw + (x - t.X0);
            const int64_t pix = ((int64_t)c * H + y) * W + x;
            for (int d = 0; d < D; ++d) img[pix * D + d] = acc[(size_t)p * D + d] + (bg ? Tr[p] * bg[c * D + d] : scalar_t(0));
            alp[pix] = 1 - Tr[p];
            lst[pix] = end[p];
          }
      }
    }
    offsets_t = at::from_blob(b.offsets.data(), {(int64_t)b.offsets.size()}, at::kLong).clone();
    ids_t = at::from_blob(b.ids.data(), {(int64_t)b.ids.size()}, at::kInt).clone();
}

template <typename scalar_t>
void backward_impl(at::Tensor means2d, at::Tensor conics, at::Tensor opacities, at::Tensor features,
                   at::Tensor radii, at::Tensor backgrounds, at::Tensor alphas, at::Tensor last, at::Tensor offsets,
                   at::Tensor ids, at::Tensor v_images, at::Tensor v_alphas, bool has_bg, int C, int N, int D,
                   int W, int H, at::Tensor& v_means2d, at::Tensor& v_conics, at::Tensor& v_opac,
                   at::Tensor& v_feat, at::Tensor& v_bg) {
  const int tiles_w = A3D_DIV_UP(W, A3D_GS_TILE), tiles_h = A3D_DIV_UP(H, A3D_GS_TILE);
  const int64_t T = (int64_t)tiles_w * tiles_h;
  const int G = 6 + D;  // per-Gaussian gradient record: mx, my, a, b, c, opacity, features...
  const int nthreads = omp_get_max_threads();
    const scalar_t *m = means2d.data_ptr<scalar_t>(), *cn = conics.data_ptr<scalar_t>(), *op = opacities.data_ptr<scalar_t>(),
                   *f = features.data_ptr<scalar_t>(), *bg = has_bg ? backgrounds.data_ptr<scalar_t>() : nullptr,
                   *alp = alphas.data_ptr<scalar_t>(), *vi = v_images.data_ptr<scalar_t>(), *va = v_alphas.data_ptr<scalar_t>();
    const int32_t* lst = last.data_ptr<int32_t>();
    const int32_t* rad = radii.data_ptr<int32_t>();
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
      std::vector<scalar_t> feat, g, Tr, tail;
      std::vector<int> box;
      std::vector<RowQuad> smax;
      std::vector<int32_t> endp;
#pragma omp for schedule(dynamic, 1)
      for (int64_t ct = 0; ct < C * T; ++ct) {
        const int c = ct / T;
        const TileRect t = tile_rect(ct % T, tiles_w, W, H);
        gather_tile(b, ct, c, N, D, m, cn, op, f, rad, t, sp, feat, box, smax);
        const int64_t n = sp.size();
        if (n == 0 && !bg) continue;
        const int tw = t.X1 - t.X0, np = tw * (t.Y1 - t.Y0);
        g.assign(n * G, scalar_t(0));
        Tr.resize(np);
        tail.resize(np);
        endp.resize(np);
        int32_t maxend = 0;
        for (int y = t.Y0; y < t.Y1; ++y)
          for (int x = t.X0; x < t.X1; ++x) {
            const int p = (y - t.Y0) * tw + (x - t.X0);
            const int64_t pix = ((int64_t)c * H + y) * W + x;
            const scalar_t Tfinal = 1 - alp[pix];
            const scalar_t* vout = vi + pix * D;
            // dL/dalpha_i = sum_d v_d (f_id T_i - (S_d + Tfinal bg_d) / (1 - a_i)) + vA Tfinal / (1 - a_i),
            // S_d = sum_{j>i} f_jd a_j T_j. tail = vA Tfinal - sum_d v_d (S_d + Tfinal bg_d), updated back to front.
            scalar_t tl = va[pix] * Tfinal;
            if (bg)
              for (int d = 0; d < D; ++d) {
                bgbuf[c * D + d] += Tfinal * vout[d];
                tl -= vout[d] * Tfinal * bg[c * D + d];
              }
            Tr[p] = Tfinal;
            tail[p] = tl;
            endp[p] = lst[pix];
            maxend = std::max(maxend, endp[p]);
          }
        for (int64_t i = (int64_t)maxend - 1; i >= 0; --i) {
          const Splat<scalar_t> s = sp[i];
          scalar_t* gi = &g[i * G];
          const scalar_t* fi = &feat[i * D];
          for (int y = box[4 * i + 2]; y <= box[4 * i + 3]; ++y) {
            int xa, xb;
            if (!row_span(smax[i], y, box[4 * i], box[4 * i + 1], xa, xb)) continue;
            for (int x = xa; x <= xb; ++x) {
              const int p = (y - t.Y0) * tw + (x - t.X0);
              if (i >= endp[p]) continue;  // behind the pixel's stopping point
              scalar_t dx, dy;
              const scalar_t sigma = a3d_gs::splat_sigma(s, x + scalar_t(0.5), y + scalar_t(0.5), dx, dy);
              if (sigma < 0) continue;
              const scalar_t vis = std::exp(-sigma);
              const scalar_t raw = s.opacity * vis;
              const scalar_t alpha = std::min(scalar_t(A3D_GS_ALPHA_MAX), raw);
              if (alpha < scalar_t(A3D_GS_ALPHA_MIN)) continue;
              const scalar_t ra = 1 / (1 - alpha);
              const scalar_t Ti = Tr[p] * ra;  // transmittance in front of splat i
              const scalar_t w = alpha * Ti;
              const scalar_t* vout = vi + (((int64_t)c * H + y) * W + x) * D;
              scalar_t fv = 0;
              for (int d = 0; d < D; ++d) {
                gi[6 + d] += w * vout[d];
                fv += fi[d] * vout[d];
              }
              const scalar_t v_alpha = tail[p] * ra + fv * Ti;
              tail[p] -= fv * w;  // splat i joins S for the splats in front of it
              if (raw <= scalar_t(A3D_GS_ALPHA_MAX)) a3d_gs::splat_alpha_backward(s, dx, dy, vis, v_alpha, gi);
              Tr[p] = Ti;
            }
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
std::vector<at::Tensor> gs_forward(at::Tensor means2d, at::Tensor conics, at::Tensor opacities,
                                     at::Tensor features, at::Tensor radii, at::Tensor depths,
                                     at::Tensor backgrounds, int64_t width, int64_t height) {
  const auto dt = means2d.scalar_type();
  check(means2d, "means2d", dt); check(conics, "conics", dt); check(opacities, "opacities", dt);
  check(features, "features", dt); check(radii, "radii", at::kInt); check(depths, "depths", dt);
  const int C = means2d.size(0), N = means2d.size(1), D = features.size(2);
  const int W = width, H = height;
  const bool has_bg = backgrounds.numel() > 0;
  if (has_bg) check(backgrounds, "backgrounds", dt);
  auto opts = means2d.options();
  auto images = at::empty({C, H, W, D}, opts);
  auto alphas = at::empty({C, H, W, 1}, opts);
  auto last = at::empty({C, H, W}, opts.dtype(at::kInt));
  at::Tensor offsets_t, ids_t;
  if (dt == at::kDouble)
    forward_impl<double>(means2d, conics, opacities, features, radii, depths, backgrounds, has_bg, C, N, D, W, H, images, alphas, last, offsets_t, ids_t);
  else
    forward_impl<float>(means2d, conics, opacities, features, radii, depths, backgrounds, has_bg, C, N, D, W, H, images, alphas, last, offsets_t, ids_t);
  return {images, alphas, last, offsets_t, ids_t};
}

// Gradients for gs_forward's float inputs. v_images (C,H,W,D), v_alphas (C,H,W,1).
// Returns v_means2d (C,N,2), v_conics (C,N,3), v_opacities (C,N), v_features (C,N,D), v_backgrounds (C,D).
std::vector<at::Tensor> gs_backward(at::Tensor means2d, at::Tensor conics, at::Tensor opacities,
                                      at::Tensor features, at::Tensor radii, at::Tensor backgrounds,
                                      at::Tensor alphas, at::Tensor last, at::Tensor offsets, at::Tensor ids,
                                      at::Tensor v_images, at::Tensor v_alphas, int64_t width, int64_t height) {
  const auto dt = means2d.scalar_type();
  check(v_images, "v_images", dt); check(v_alphas, "v_alphas", dt); check(alphas, "alphas", dt);
  check(radii, "radii", at::kInt); check(last, "last", at::kInt); check(offsets, "tile_offsets", at::kLong); check(ids, "flat_ids", at::kInt);
  const int C = means2d.size(0), N = means2d.size(1), D = features.size(2);
  const int W = width, H = height;
  const bool has_bg = backgrounds.numel() > 0;
  auto opts = means2d.options();
  auto v_bg = at::zeros({C, D}, opts);
  auto v_means2d = at::empty({C, N, 2}, opts), v_conics = at::empty({C, N, 3}, opts);
  auto v_opac = at::empty({C, N}, opts), v_feat = at::empty({C, N, D}, opts);
  if (dt == at::kDouble)
    backward_impl<double>(means2d, conics, opacities, features, radii, backgrounds, alphas, last, offsets, ids, v_images, v_alphas, has_bg, C, N, D, W, H, v_means2d, v_conics, v_opac, v_feat, v_bg);
  else
    backward_impl<float>(means2d, conics, opacities, features, radii, backgrounds, alphas, last, offsets, ids, v_images, v_alphas, has_bg, C, N, D, W, H, v_means2d, v_conics, v_opac, v_feat, v_bg);
  return {v_means2d, v_conics, v_opac, v_feat, v_bg};
}

int64_t gs_num_threads() { return omp_get_max_threads(); }
