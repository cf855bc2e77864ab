// CPU (OpenMP) tile-based Gaussian rasterizer: binning, front-to-back forward, back-to-front backward.
// Semantics match gsplat's rasterize_to_pixels (see gs_common.h for the per-pair maths, shared with
// the CUDA kernels, and gs_tile_cpu.h for the pair walk, shared by forward and backward).
//
// Speed notes (issue #3): binning is a radix depth sort plus a parallel counting sort (gs_bin_cpu.cpp);
// per-Gaussian work (alpha ellipse box, row-span constants) is done once per call, not per tile;
// each tile's splats are gathered contiguously; pixels are processed 8 at a time as SIMD lanes (AVX2
// or AVX-512 builds of the tile kernels are picked at run time; the AVX-512 forward takes 16, a tile
// row per chunk: issue #14); chunks and tiles whose pixels are all saturated are skipped; the backward
// keeps per-lane gradient sums in registers and adds each splat's total once per tile into a
// per-thread buffer reduced at the end (no atomics). A forward-only render (gs_render) keeps no
// per-pixel list ends for a backward pass.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "gs_bin_cpu.h"
#include "gs_cpu_ops.h"

// The compositing code relies on if-converted selects inside SIMD loops; GCC only does that for
// float compares when it may assume they do not trap (they never do here: no FP exceptions are
// enabled), and sqrt must not keep a libm fallback call for errno. Applies to the functions below,
// including the shared per-pair maths they inline; results are unchanged (IEEE arithmetic).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math", "no-math-errno")
#endif
#include "gs_tile_cpu.h"

namespace {

using a3d_gs::kLanes;
using a3d_gs::kStride;
using a3d_gs::kTile;
using a3d_gs::kTilePix;
using a3d_gs::PairEval;
using a3d_gs::Prepared;
using a3d_gs::Splat;
using a3d_gs::TileSplats;

// Per-(camera, Gaussian) splat + alpha box, computed once per call (parallel over C*N).
template <typename scalar_t>
std::vector<Prepared<scalar_t>> prepare(const scalar_t* m, const scalar_t* cn, const scalar_t* op, const int32_t* rad,
                                        int64_t CN, int W, int H) {
  std::vector<Prepared<scalar_t>> prep(CN);
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < CN; ++k)
    prep[k] = a3d_gs::prepare_splat<scalar_t>(m[2 * k], m[2 * k + 1], cn[3 * k], cn[3 * k + 1], cn[3 * k + 2], op[k],
                                              rad[2 * k], rad[2 * k + 1], W, H);
  return prep;
}

// ------------------------------------------------------------------------------------------- forward

// Per-tile state of the front-to-back pass: chunks of L pixels, rows kS = 16 + L entries apart,
// channel-major colour sums. kLast: record each pixel's end of list (what the backward pass needs); a
// forward-only render skips it.
template <typename T, bool kLast, int L>
struct FwdState {
  static constexpr int kL = L, kS = kTile + L, kP = kTile * kS;
  T Tr[kP];
  int32_t alive[kP];        // 1 while the pixel composites (0: saturated, or padding outside the image)
  int32_t end[kP];          // one past the last composited list position
  std::vector<T> acc;       // (D, kP)
  const T* fcur = nullptr;  // features of the splat being walked
  int D = 0;
  uint32_t live[kTile];     // per row: bit x set while pixel x is alive (padding bits 16.. stay 0)
  int32_t i = 0;            // list position of the splat being walked
  int ndone = 0;            // pixels that stopped during this splat

  A3D_FORCE_INLINE void chunk(const Splat<T>& s, int p0, T px0, T py) {
    const int row = p0 / kS, x0 = p0 % kS;
    if (((live[row] >> x0) & ((1u << L) - 1)) == 0) return;  // every lane already saturated
    T w[L];
    int nstop = 0;
#pragma omp simd reduction(+ : nstop)
    for (int l = 0; l < L; ++l) {
      const PairEval<T> e = a3d_gs::eval_pair(s, px0 + T(l), py);
      int stop;
      T tr = Tr[p0 + l], wl;
      const int contrib = a3d_gs::composite_forward(e, alive[p0 + l], tr, wl, stop);
      w[l] = wl;
      Tr[p0 + l] = tr;
      if (kLast) end[p0 + l] = contrib ? i + 1 : end[p0 + l];
      alive[p0 + l] = stop ? 0 : alive[p0 + l];
      nstop += stop;
    }
    if (nstop) {
      ndone += nstop;
      for (int l = 0; l < L; ++l)
        if (!alive[p0 + l]) live[row] &= ~(1u << (x0 + l));
    }
    for (int d = 0; d < D; ++d) {
      const T fd = fcur[d];
      T* a = &acc[(size_t)d * kP + p0];
#pragma omp simd
      for (int l = 0; l < L; ++l) a[l] += fd * w[l];
    }
  }
};

// Composites one tile of camera c into images/alphas/last (last only with kLast). ts holds the tile's gathered splats.
template <typename T, bool kLast, int L>
A3D_FORCE_INLINE void forward_tile_body(const TileSplats<T>& ts, FwdState<T, kLast, L>& st, int W, int H, const T* bgc,
                                        T* img, T* alp, int32_t* lst) {
  constexpr int S = FwdState<T, kLast, L>::kS, P = FwdState<T, kLast, L>::kP;
  const int D = st.D;
  const int nx = std::min(kTile, W - ts.X0), ny = std::min(kTile, H - ts.Y0);
  for (int p = 0; p < P; ++p) {
    st.Tr[p] = T(1);
    st.end[p] = 0;
    st.alive[p] = (p % S < nx && p / S < ny) ? 1 : 0;
  }
  for (int y = 0; y < kTile; ++y) st.live[y] = y < ny ? (1u << nx) - 1 : 0u;
  std::fill(st.acc.begin(), st.acc.end(), T(0));
  int left = nx * ny;
  for (int64_t i = 0; i < ts.n && left > 0; ++i) {
    if (ts.pr[i].box.empty()) continue;
    st.i = (int32_t)i;
    st.fcur = &ts.feat[i * D];
    st.ndone = 0;
    a3d_gs::walk_pairs(ts, i, st);
    left -= st.ndone;
  }
  for (int y = 0; y < ny; ++y)
    for (int x = 0; x < nx; ++x) {
      const int p = y * S + x;
      const int64_t pix = (int64_t)(ts.Y0 + y) * W + ts.X0 + x;
      for (int d = 0; d < D; ++d) img[pix * D + d] = st.acc[(size_t)d * P + p] + (bgc ? st.Tr[p] * bgc[d] : T(0));
      alp[pix] = T(1) - st.Tr[p];
      if (kLast) lst[pix] = st.end[p];
    }
}

// ------------------------------------------------------------------------------------------ backward

// Per-tile state of the back-to-front pass; per-lane gradient sums of the current splat.
template <typename T>
struct BwdState {
  static constexpr int kL = kLanes;  // 8-pixel chunks, rows kStride apart
  T Tr[kTilePix];
  T tail[kTilePix];
  int32_t endp[kTilePix];
  std::vector<T> vout;   // (D, kTilePix) dL/dpixel, channel-major
  std::vector<T> gfeat;  // (D, kLanes) per-lane feature-gradient sums
  T g[6][kLanes];        // per-lane sums of d(mean x, mean y, conic a, b, c, opacity)
  int32_t chunk_end[kTilePix / kLanes];  // max of endp over each aligned 8-pixel group
  const T* fcur = nullptr;
  int D = 0;
  int32_t i = 0;

  A3D_FORCE_INLINE void chunk(const Splat<T>& s, int p0, T px0, T py) {
    // the splat lies behind every lane's stopping point (lanes span two aligned groups at most)
    if (i >= chunk_end[p0 / kLanes] && i >= chunk_end[(p0 + kLanes - 1) / kLanes]) return;
    T fv[kLanes], w[kLanes];
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) fv[l] = T(0);
    for (int d = 0; d < D; ++d) {
      const T fd = fcur[d];
      const T* v = &vout[(size_t)d * kTilePix + p0];
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) fv[l] += fd * v[l];
    }
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      const PairEval<T> e = a3d_gs::eval_pair(s, px0 + T(l), py);
      const int use = e.ok & (i < endp[p0 + l]);
      T tr = Tr[p0 + l], tl = tail[p0 + l];
      const a3d_gs::PairGrad<T> r = a3d_gs::composite_backward(s, e, use, fv[l], tr, tl);
      Tr[p0 + l] = tr;
      tail[p0 + l] = tl;
      w[l] = r.w;
      g[0][l] += r.mx;
      g[1][l] += r.my;
      g[2][l] += r.a;
      g[3][l] += r.b;
      g[4][l] += r.c;
      g[5][l] += r.op;
    }
    for (int d = 0; d < D; ++d) {
      const T* v = &vout[(size_t)d * kTilePix + p0];
      T* gf = &gfeat[(size_t)d * kLanes];
#pragma omp simd
      for (int l = 0; l < kLanes; ++l) gf[l] += w[l] * v[l];
    }
  }
};

// Back-to-front over one tile; adds each splat's gradient record (6 + D) into gbuf rows
// (indexed by Gaussian id within camera c), and the background gradient into bgbuf.
template <typename T>
A3D_FORCE_INLINE void backward_tile_body(const TileSplats<T>& ts, const int32_t* ids, BwdState<T>& st, int W, int H,
                                         const T* bgc, const T* alp, const int32_t* lst, const T* vi, const T* va,
                                         T* gbuf, T* bgbuf) {
  const int D = st.D, G = 6 + D;
  const int nx = std::min(kTile, W - ts.X0), ny = std::min(kTile, H - ts.Y0);
  int32_t maxend = 0;
  for (int p = 0; p < kTilePix; ++p) {
    st.Tr[p] = T(1);
    st.tail[p] = T(0);
    st.endp[p] = 0;
  }
  std::fill(st.vout.begin(), st.vout.end(), T(0));
  for (int y = 0; y < ny; ++y)
    for (int x = 0; x < nx; ++x) {
      const int p = y * kStride + x;
      const int64_t pix = (int64_t)(ts.Y0 + y) * W + ts.X0 + x;
      const T Tfinal = T(1) - alp[pix];
      const T* vo = vi + pix * D;
      // tail = vA Tfinal - sum_d v_d Tfinal bg_d (nothing composited behind the last splat yet)
      T tl = va[pix] * Tfinal;
      for (int d = 0; d < D; ++d) {
        st.vout[(size_t)d * kTilePix + p] = vo[d];
        if (bgc) {
          bgbuf[d] += Tfinal * vo[d];
          tl -= vo[d] * Tfinal * bgc[d];
        }
      }
      st.Tr[p] = Tfinal;
      st.tail[p] = tl;
      st.endp[p] = lst[pix];
      maxend = std::max(maxend, st.endp[p]);
    }
  for (int k = 0; k < kTilePix / kLanes; ++k)
    st.chunk_end[k] = *std::max_element(st.endp + k * kLanes, st.endp + (k + 1) * kLanes);
  for (int64_t i = (int64_t)maxend - 1; i >= 0; --i) {
    if (ts.pr[i].box.empty()) continue;
    st.i = (int32_t)i;
    st.fcur = &ts.feat[i * D];
    for (int k = 0; k < 6; ++k)
      for (int l = 0; l < kLanes; ++l) st.g[k][l] = T(0);
    std::fill(st.gfeat.begin(), st.gfeat.end(), T(0));
    a3d_gs::walk_pairs(ts, i, st);
    T* dst = gbuf + (int64_t)ids[i] * G;
    for (int k = 0; k < 6; ++k) {
      T s = 0;
      for (int l = 0; l < kLanes; ++l) s += st.g[k][l];
      dst[k] += s;
    }
    for (int d = 0; d < D; ++d) {
      T s = 0;
      for (int l = 0; l < kLanes; ++l) s += st.gfeat[(size_t)d * kLanes + l];
      dst[6 + d] += s;
    }
  }
}

// The tile kernels are compiled for the baseline ISA and, on x86-64 with GCC/Clang, for AVX2+FMA and
// for AVX-512 (still 8 lanes, but 32 vector registers keep the exp constants and tile state in
// registers, and mask registers replace blends); the best one the CPU has is picked at run time,
// since the extension build uses no -march flag. Only these leaf functions carry target
// attributes, so nothing compiled for a newer ISA can leak into shared code.
enum class Isa { kBase, kAvx2, kAvx512 };

#define A3D_GS_TILE_KERNELS(SUFFIX, ATTR, FWD_ATTR)                                                               \
  template <typename T, bool kLast, int L>                                                                       \
  FWD_ATTR void forward_tile_##SUFFIX(const TileSplats<T>& ts, FwdState<T, kLast, L>& st, int W, int H, const T* bgc, \
                                  T* img, T* alp, int32_t* lst) {                                                \
    forward_tile_body(ts, st, W, H, bgc, img, alp, lst);                                                         \
  }                                                                                                              \
  template <typename T>                                                                                          \
  ATTR void backward_tile_##SUFFIX(const TileSplats<T>& ts, const int32_t* ids, BwdState<T>& st, int W, int H,    \
                                   const T* bgc, const T* alp, const int32_t* lst, const T* vi, const T* va,      \
                                   T* gbuf, T* bgbuf) {                                                          \
    backward_tile_body(ts, ids, st, W, H, bgc, alp, lst, vi, va, gbuf, bgbuf);                                   \
  }

A3D_GS_TILE_KERNELS(base, , )
#if defined(__GNUC__) && defined(__x86_64__)
#define A3D_GS_X86 1
#define A3D_GS_AVX2 __attribute__((target("avx2,fma")))
#define A3D_GS_AVX512 "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma"
A3D_GS_TILE_KERNELS(avx2, A3D_GS_AVX2, A3D_GS_AVX2)
// the forward's 16-lane chunks as single zmm vectors (GCC's default tuning would split them in two ymm halves)
A3D_GS_TILE_KERNELS(avx512, __attribute__((target(A3D_GS_AVX512))),
                    __attribute__((target(A3D_GS_AVX512 ",prefer-vector-width=512"))))
#endif

// Which build of the tile kernels to run; float only (double is for tests and gradcheck).
// AVATAR3D_GS_ISA=base|avx2 caps the choice (tests compare the builds on one machine).
template <typename T>
Isa pick_isa() {
#ifdef A3D_GS_X86
  static const Isa isa = [] {
    __builtin_cpu_init();
    const char* cap = std::getenv("AVATAR3D_GS_ISA");
    const std::string want = cap ? cap : "";
    if (want == "base") return Isa::kBase;
    if (want != "avx2" && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
      return Isa::kAvx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
    return Isa::kBase;
  }();
  return std::is_same<T, float>::value ? isa : Isa::kBase;
#else
  return Isa::kBase;
#endif
}

template <typename T, bool kLast, int L>
void forward_tile(Isa isa, const TileSplats<T>& ts, FwdState<T, kLast, L>& st, int W, int H, const T* bgc, T* img, T* alp,
                  int32_t* lst) {
#ifdef A3D_GS_X86
  if (isa == Isa::kAvx512) return forward_tile_avx512(ts, st, W, H, bgc, img, alp, lst);
  if (isa == Isa::kAvx2) return forward_tile_avx2(ts, st, W, H, bgc, img, alp, lst);
#endif
  forward_tile_base(ts, st, W, H, bgc, img, alp, lst);
}

template <typename T>
void backward_tile(Isa isa, const TileSplats<T>& ts, const int32_t* ids, BwdState<T>& st, int W, int H, const T* bgc,
                   const T* alp, const int32_t* lst, const T* vi, const T* va, T* gbuf, T* bgbuf) {
#ifdef A3D_GS_X86
  if (isa == Isa::kAvx512) return backward_tile_avx512(ts, ids, st, W, H, bgc, alp, lst, vi, va, gbuf, bgbuf);
  if (isa == Isa::kAvx2) return backward_tile_avx2(ts, ids, st, W, H, bgc, alp, lst, vi, va, gbuf, bgbuf);
#endif
  backward_tile_base(ts, ids, st, W, H, bgc, alp, lst, vi, va, gbuf, bgbuf);
}

void check(const at::Tensor& t, const char* name, at::ScalarType dt) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == dt, name, " has the wrong dtype");
}

template <typename scalar_t, bool kLast, int L>
void forward_tiles(Isa isa, const Prepared<scalar_t>* prep, const scalar_t* f, const scalar_t* bg, const int64_t* offs,
                   const int32_t* ids, int C, int N, int D, int W, int H, scalar_t* img, scalar_t* alp, int32_t* lst);

// kLast: also fill `last` (each pixel's end of list, for the backward pass); without it `last` is not touched.
template <typename scalar_t, bool kLast>
void forward_impl(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& opacities,
                  const at::Tensor& features, const at::Tensor& radii, const at::Tensor& depths,
                  const at::Tensor& backgrounds, bool has_bg, int C, int N, int D, int W, int H, at::Tensor& images,
                  at::Tensor& alphas, at::Tensor& last, at::Tensor& offsets_t, at::Tensor& ids_t) {
  const scalar_t *m = means2d.data_ptr<scalar_t>(), *cn = conics.data_ptr<scalar_t>(), *op = opacities.data_ptr<scalar_t>(),
                 *f = features.data_ptr<scalar_t>(), *bg = has_bg ? backgrounds.data_ptr<scalar_t>() : nullptr;
  const int32_t* rad = radii.data_ptr<int32_t>();
  std::tie(offsets_t, ids_t) = a3d_gs::bin_gaussians_cpu<scalar_t>(m, rad, depths.data_ptr<scalar_t>(), C, N, W, H);
  const std::vector<Prepared<scalar_t>> prep = prepare(m, cn, op, rad, (int64_t)C * N, W, H);
  const int64_t* offs = offsets_t.data_ptr<int64_t>();
  const int32_t* ids = ids_t.data_ptr<int32_t>();
  scalar_t *img = images.data_ptr<scalar_t>(), *alp = alphas.data_ptr<scalar_t>();
  int32_t* lst = kLast ? last.data_ptr<int32_t>() : nullptr;
  const Isa isa = pick_isa<scalar_t>();
  // 16-lane chunks (a tile row each) where a vector holds 16 floats, else 8 (same results: lanes are pixels)
  if (isa == Isa::kAvx512)
    forward_tiles<scalar_t, kLast, 16>(isa, prep.data(), f, bg, offs, ids, C, N, D, W, H, img, alp, lst);
  else
    forward_tiles<scalar_t, kLast, kLanes>(isa, prep.data(), f, bg, offs, ids, C, N, D, W, H, img, alp, lst);
}

// The tile loop of forward_impl with L-pixel chunks (parallel over (camera, tile)).
template <typename scalar_t, bool kLast, int L>
void forward_tiles(Isa isa, const Prepared<scalar_t>* prep, const scalar_t* f, const scalar_t* bg, const int64_t* offs,
                   const int32_t* ids, int C, int N, int D, int W, int H, scalar_t* img, scalar_t* alp, int32_t* lst) {
  const int tiles_w = A3D_DIV_UP(W, kTile);
  const int64_t T = (int64_t)tiles_w * A3D_DIV_UP(H, kTile);
#pragma omp parallel
  {
    TileSplats<scalar_t> ts;
    FwdState<scalar_t, kLast, L> st;
    st.D = D;
    st.acc.resize((size_t)D * st.kP);
#pragma omp for schedule(dynamic, 1)
    for (int64_t ct = 0; ct < C * T; ++ct) {
      const int c = ct / T, tile = ct % T;
      ts.gather(prep + (int64_t)c * N, f + (int64_t)c * N * D, ids + offs[ct], offs[ct + 1] - offs[ct], D,
                tile % tiles_w, tile / tiles_w);
      const scalar_t* bgc = bg ? bg + (int64_t)c * D : nullptr;
      scalar_t *ic = img + (int64_t)c * H * W * D, *ac = alp + (int64_t)c * H * W;
      int32_t* lc = kLast ? lst + (int64_t)c * H * W : nullptr;
      forward_tile(isa, ts, st, W, H, bgc, ic, ac, lc);
    }
  }
}

template <typename scalar_t>
void backward_impl(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& opacities,
                   const at::Tensor& features, const at::Tensor& radii, const at::Tensor& backgrounds,
                   const at::Tensor& alphas, const at::Tensor& last, const at::Tensor& offsets, const at::Tensor& ids_t,
                   const at::Tensor& v_images, const at::Tensor& v_alphas, bool has_bg, int C, int N, int D, int W,
                   int H, at::Tensor& v_means2d, at::Tensor& v_conics, at::Tensor& v_opac, at::Tensor& v_feat,
                   at::Tensor& v_bg) {
  const int tiles_w = A3D_DIV_UP(W, kTile);
  const int64_t T = (int64_t)tiles_w * A3D_DIV_UP(H, kTile);
  const int G = 6 + D;  // per-Gaussian gradient record: mx, my, a, b, c, opacity, features...
  const int nthreads = omp_get_max_threads();
  const scalar_t *m = means2d.data_ptr<scalar_t>(), *cn = conics.data_ptr<scalar_t>(), *op = opacities.data_ptr<scalar_t>(),
                 *f = features.data_ptr<scalar_t>(), *bg = has_bg ? backgrounds.data_ptr<scalar_t>() : nullptr,
                 *alp = alphas.data_ptr<scalar_t>(), *vi = v_images.data_ptr<scalar_t>(), *va = v_alphas.data_ptr<scalar_t>();
  const int32_t* lst = last.data_ptr<int32_t>();
  const int32_t* rad = radii.data_ptr<int32_t>();
  const int64_t* offs = offsets.data_ptr<int64_t>();
  const int32_t* ids = ids_t.data_ptr<int32_t>();
  const std::vector<Prepared<scalar_t>> prep = prepare(m, cn, op, rad, (int64_t)C * N, W, H);
  const int64_t CN = (int64_t)C * N;
  // one gradient buffer per thread over all (camera, Gaussian) records, reduced after the tile loop
  // (uninitialised here: each thread zeroes its own slice, in parallel and on its own memory)
  std::unique_ptr<scalar_t[]> bufs(new scalar_t[(size_t)nthreads * CN * G]);
  std::vector<scalar_t> bg_bufs((size_t)nthreads * C * D, scalar_t(0));
  const Isa isa = pick_isa<scalar_t>();
  // OpenMP may give fewer threads than asked (OMP_THREAD_LIMIT, nested regions): only the slices of
  // the threads that ran are zeroed and written, so only those are reduced below.
  int team = nthreads;
#pragma omp parallel num_threads(nthreads)
  {
    const int tid = omp_get_thread_num();
    scalar_t* gbuf = &bufs[(size_t)tid * CN * G];
    std::fill(gbuf, gbuf + CN * G, scalar_t(0));  // first touch by its own thread
    scalar_t* bgbuf = &bg_bufs[(size_t)tid * C * D];
    TileSplats<scalar_t> ts;
    BwdState<scalar_t> st;
    st.D = D;
    st.vout.resize((size_t)D * kTilePix);
    st.gfeat.resize((size_t)D * kLanes);
#pragma omp single
    team = omp_get_num_threads();
#pragma omp for schedule(dynamic, 1)
    for (int64_t ct = 0; ct < C * T; ++ct) {
      const int c = ct / T, tile = ct % T;
      const int64_t n = offs[ct + 1] - offs[ct];
      if (n == 0 && !bg) continue;
      ts.gather(prep.data() + (int64_t)c * N, f + (int64_t)c * N * D, ids + offs[ct], n, D, tile % tiles_w,
                tile / tiles_w);
      const scalar_t* bgc = bg ? bg + (int64_t)c * D : nullptr;
      const int64_t HW = (int64_t)H * W;
      const scalar_t *ac = alp + c * HW, *vic = vi + c * HW * D, *vac = va + c * HW;
      const int32_t* lc = lst + c * HW;
      scalar_t* gb = gbuf + (int64_t)c * N * G;
      scalar_t* bgb = bgbuf + (int64_t)c * D;
      backward_tile(isa, ts, ids + offs[ct], st, W, H, bgc, ac, lc, vic, vac, gb, bgb);
    }
  }
  scalar_t *vm = v_means2d.data_ptr<scalar_t>(), *vc = v_conics.data_ptr<scalar_t>(), *vo = v_opac.data_ptr<scalar_t>(),
           *vf = v_feat.data_ptr<scalar_t>(), *vb = v_bg.data_ptr<scalar_t>();
#pragma omp parallel for schedule(static)
  for (int64_t k = 0; k < CN; ++k) {
    scalar_t r[64];
    std::vector<scalar_t> big;
    scalar_t* acc = r;
    if (G > 64) {
      big.assign(G, 0);
      acc = big.data();
    }
    for (int j = 0; j < G; ++j) acc[j] = 0;
    for (int t = 0; t < team; ++t) {
      const scalar_t* src = &bufs[((size_t)t * CN + k) * G];
      for (int j = 0; j < G; ++j) acc[j] += src[j];
    }
    vm[2 * k] = acc[0];
    vm[2 * k + 1] = acc[1];
    vc[3 * k] = acc[2];
    vc[3 * k + 1] = acc[3];
    vc[3 * k + 2] = acc[4];
    vo[k] = acc[5];
    for (int d = 0; d < D; ++d) vf[k * D + d] = acc[6 + d];
  }
  for (int t = 0; t < team; ++t)
    for (int j = 0; j < C * D; ++j) vb[j] += bg_bufs[(size_t)t * C * D + j];
}

}  // namespace

// The forward inputs' dtypes and devices checked (the layout of gs_forward's comment); returns their shared dtype.
static at::ScalarType check_forward_inputs(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& opacities,
                                          const at::Tensor& features, const at::Tensor& radii, const at::Tensor& depths,
                                          const at::Tensor& backgrounds) {
  const auto dt = means2d.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kDouble, "means2d must be float32 or float64");
  check(means2d, "means2d", dt); check(conics, "conics", dt); check(opacities, "opacities", dt);
  check(features, "features", dt); check(radii, "radii", at::kInt); check(depths, "depths", dt);
  if (backgrounds.numel() > 0) check(backgrounds, "backgrounds", dt);
  return dt;
}

// The forward pass behind both entry points; kLists: keep what the backward pass needs (`last`, the tile lists),
// else those three come back undefined. Same images and alphas either way, bit for bit.
template <bool kLists>
static std::vector<at::Tensor> forward_entry(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& opacities,
                                             const at::Tensor& features, const at::Tensor& radii, const at::Tensor& depths,
                                             const at::Tensor& backgrounds, int64_t width, int64_t height) {
  const auto dt = check_forward_inputs(means2d, conics, opacities, features, radii, depths, backgrounds);
  const int C = means2d.size(0), N = means2d.size(1), D = features.size(2);
  const int W = width, H = height;
  const bool has_bg = backgrounds.numel() > 0;
  auto opts = means2d.options();
  auto images = at::empty({C, H, W, D}, opts);
  auto alphas = at::empty({C, H, W, 1}, opts);
  at::Tensor last, offsets_t, ids_t;
  if (kLists) last = at::empty({C, H, W}, opts.dtype(at::kInt));
  if (dt == at::kDouble)
    forward_impl<double, kLists>(means2d, conics, opacities, features, radii, depths, backgrounds, has_bg, C, N, D, W, H, images, alphas, last, offsets_t, ids_t);
  else
    forward_impl<float, kLists>(means2d, conics, opacities, features, radii, depths, backgrounds, has_bg, C, N, D, W, H, images, alphas, last, offsets_t, ids_t);
  return {images, alphas, last, offsets_t, ids_t};
}

// means2d (C,N,2), conics (C,N,3), opacities (C,N), features (C,N,D), radii (C,N,2) int32,
// depths (C,N), backgrounds (C,D) or empty. Returns images (C,H,W,D), alphas (C,H,W,1),
// last (C,H,W) int32 = end of the contributing prefix of each pixel's tile list,
// tile_offsets (C*tiles+1) int64, flat_ids (M) int32.
std::vector<at::Tensor> gs_forward(at::Tensor means2d, at::Tensor conics, at::Tensor opacities,
                                     at::Tensor features, at::Tensor radii, at::Tensor depths,
                                     at::Tensor backgrounds, int64_t width, int64_t height) {
  return forward_entry<true>(means2d, conics, opacities, features, radii, depths, backgrounds, width, height);
}

// gs_forward without what only the backward pass needs (no `last`, the tile lists dropped): the same
// images and alphas, bit for bit. Returns images (C,H,W,D), alphas (C,H,W,1).
std::vector<at::Tensor> gs_render(at::Tensor means2d, at::Tensor conics, at::Tensor opacities, at::Tensor features,
                                  at::Tensor radii, at::Tensor depths, at::Tensor backgrounds, int64_t width,
                                  int64_t height) {
  auto out = forward_entry<false>(means2d, conics, opacities, features, radii, depths, backgrounds, width, height);
  return {out[0], out[1]};
}

// Gradients for gs_forward's float inputs. v_images (C,H,W,D), v_alphas (C,H,W,1).
// Returns v_means2d (C,N,2), v_conics (C,N,3), v_opacities (C,N), v_features (C,N,D), v_backgrounds (C,D).
std::vector<at::Tensor> gs_backward(at::Tensor means2d, at::Tensor conics, at::Tensor opacities,
                                      at::Tensor features, at::Tensor radii, at::Tensor backgrounds,
                                      at::Tensor alphas, at::Tensor last, at::Tensor offsets, at::Tensor ids,
                                      at::Tensor v_images, at::Tensor v_alphas, int64_t width, int64_t height) {
  const auto dt = means2d.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kDouble, "means2d must be float32 or float64");
  check(means2d, "means2d", dt); check(conics, "conics", dt); check(opacities, "opacities", dt);
  check(features, "features", dt);
  check(v_images, "v_images", dt); check(v_alphas, "v_alphas", dt); check(alphas, "alphas", dt);
  check(radii, "radii", at::kInt); check(last, "last", at::kInt); check(offsets, "tile_offsets", at::kLong); check(ids, "flat_ids", at::kInt);
  const int C = means2d.size(0), N = means2d.size(1), D = features.size(2);
  const int W = width, H = height;
  const bool has_bg = backgrounds.numel() > 0;
  if (has_bg) check(backgrounds, "backgrounds", dt);
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

std::string gs_simd() {
  switch (pick_isa<float>()) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "baseline";
  }
}
