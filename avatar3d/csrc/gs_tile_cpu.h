// CPU side of the Gaussian compositing (gs_raster_cpu.cpp): per-tile splat gathering and the
// (pixel, splat) pair walk shared by the forward and backward passes. The per-pair maths itself
// (eval_pair, composite_forward/backward) is in gs_common.h, shared with the CUDA kernels.
//
// A tile's per-pixel state is stored with a row stride of 24: columns 16..23 (and pixels outside the
// image) are padding that never composites, so a chunk of 8 lanes can start at the first column a
// splat touches in a row (a splat up to 8 pixels wide costs one chunk per row, not two). A splat
// visits only the row chunks that can hold a pixel with alpha >= 1/255; inside a chunk the 8 pixels
// are evaluated as SIMD lanes with selects, so the exact per-pixel tests (and results) are the same
// as a per-pixel loop's.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "gs_common.h"  // (A3D_FORCE_INLINE comes from common.h)

namespace a3d_gs {

constexpr int kTile = A3D_GS_TILE;
constexpr int kLanes = 8;                  // pixels per chunk: one AVX2 float vector, two SSE ones
constexpr int kStride = kTile + kLanes;    // state row stride: a chunk may start at any column 0..15
constexpr int kTilePix = kTile * kStride;  // per-pixel state entries of a tile (with padding)
// The forward pass of the AVX-512 build takes 16 lanes (one zmm vector: a whole tile row in one chunk);
// a visitor's kL says its chunk width, its rows are kTile + kL entries apart.

// Inclusive pixel box (image or tile-local coordinates); x0 > x1 or y0 > y1 means empty.
struct PixBox {
  int x0, x1, y0, y1;
  bool empty() const { return x0 > x1 || y0 > y1; }
};

// A projected splat with the pixel box outside which its alpha is certainly below 1/255, and the
// constants of the per-row span test (see walk_pairs): the alpha >= 1/255 region is the ellipse
// a dx^2 + 2 b dx dy + c dy^2 <= smax2 = 2 (log(255 opacity) + 0.01); det = a c - b^2 (0: no test).
template <typename T>
struct Prepared {
  Splat<T> s;
  PixBox box;
  T smax2, det;
};

// floor / ceil of v clamped to [-1, n] (huge or far splats: no int overflow); no libm call (the
// extension is built for baseline x86-64, where floor/ceil are calls).
inline int floor_in(double v, int n) {
  v = v < -1.0 ? -1.0 : (v > (double)n ? (double)n : v);
  const int t = (int)v;
  return t > v ? t - 1 : t;
}
inline int ceil_in(double v, int n) {
  v = v < -1.0 ? -1.0 : (v > (double)n ? (double)n : v);
  const int t = (int)v;
  return t < v ? t + 1 : t;
}

// Box of pixel centres where alpha = opacity exp(-sigma) >= 1/255 is possible: sigma <= smax =
// log(255 opacity) is an ellipse whose half-extents are sqrt(2 smax cov_xx), sqrt(2 smax cov_yy)
// (cov = conic^-1). A 0.01 margin on smax and one pixel on each side absorb float rounding; the
// exact per-pixel test still decides. It lies inside gsplat's 3.33-sigma radius box (used as is for
// non-positive-definite conics), and for faint splats it is much smaller.
template <typename T>
Prepared<T> prepare_splat(T mx, T my, T a, T b, T c, T opacity, int rx, int ry, int W, int H) {
  Prepared<T> p{Splat<T>{mx, my, a, b, c, opacity}, PixBox{0, -1, 0, -1}, T(0), T(0)};
  const double o255 = 255.0 * (double)opacity;
  if (!(o255 >= 1.0) || rx <= 0 || ry <= 0) return p;  // alpha <= opacity < 1/255: never composited
  double hx = rx, hy = ry;
  const double da = a, db = b, dc = c, det = da * dc - db * db;  // in double: no cancellation
  if (da > 0 && dc > 0 && det > 0 && std::isfinite(det)) {
    const double smax2 = 2.0 * (log(o255) + 0.01);
    hx = std::min(hx, sqrt(smax2 * dc / det) + 1.0);
    hy = std::min(hy, sqrt(smax2 * da / det) + 1.0);
    p.smax2 = (T)smax2;
    p.det = (T)det;
  }
  // pixel x has its centre at x + 0.5
  const double cx = (double)mx - 0.5, cy = (double)my - 0.5;
  p.box.x0 = std::max(0, ceil_in(cx - hx, W));
  p.box.x1 = std::min(W - 1, floor_in(cx + hx, W));
  p.box.y0 = std::max(0, ceil_in(cy - hy, H));
  p.box.y1 = std::min(H - 1, floor_in(cy + hy, H));
  return p;
}

// One tile's depth-ordered splats, gathered contiguously (front to back, tile-list order), with
// their boxes clipped to the tile in tile-local coordinates and their features (n, D).
template <typename T>
struct TileSplats {
  int X0 = 0, Y0 = 0;  // tile origin in the image
  int64_t n = 0;
  std::vector<Prepared<T>> pr;
  std::vector<T> feat;

  void gather(const Prepared<T>* prep, const T* features, const int32_t* ids, int64_t count, int D, int tx, int ty) {
    X0 = tx * kTile;
    Y0 = ty * kTile;
    n = count;
    pr.resize(n);
    feat.resize(n * D);
    constexpr int kAhead = 8;  // list order is depth order, i.e. random in memory: prefetch
    for (int64_t i = 0; i < n; ++i) {
      if (i + kAhead < n) {
        __builtin_prefetch(prep + ids[i + kAhead]);
        __builtin_prefetch(features + (int64_t)ids[i + kAhead] * D);
      }
      const int32_t g = ids[i];
      Prepared<T> p = prep[g];
      p.box = PixBox{std::max(p.box.x0 - X0, 0), std::min(p.box.x1 - X0, kTile - 1), std::max(p.box.y0 - Y0, 0),
                     std::min(p.box.y1 - Y0, kTile - 1)};
      pr[i] = p;
      const T* f = features + (int64_t)g * D;
      for (int d = 0; d < D; ++d) feat[i * D + d] = f[d];
    }
  }
};

// sqrt inlined (std::sqrt, compiled before the kernels' optimize pragma, stays an out-of-line call in them)
A3D_FORCE_INLINE float tile_sqrt(float v) { return __builtin_sqrtf(v); }
A3D_FORCE_INLINE double tile_sqrt(double v) { return __builtin_sqrt(v); }

// Pixel span [xa, xb] of each row of a splat's box (tile-local) that can hold alpha >= 1/255 (xb < xa:
// none): the roots of the row's quadratic, one pixel of margin. The 16 rows are evaluated as SIMD lanes
// (rows outside the box are computed and ignored) in two vector loops around a scalar sqrt loop: GCC
// keeps sqrt's errno fallback despite the no-math-errno pragma, and a call stops vectorisation.
template <typename T>
A3D_FORCE_INLINE void row_spans(const Prepared<T>& p, int X0, int Y0, int* xa_out, int* xb_out) {
  const PixBox b = p.box;
  const Splat<T> s = p.s;
  const T inv_a = T(1) / s.a;
  T dy[kTile], root[kTile];
#pragma omp simd
  for (int y = 0; y < kTile; ++y) {
    // a dx^2 + 2 b dy dx + c dy^2 <= smax2  <=>  dx in -b dy / a +- sqrt(a smax2 - det dy^2) / a
    dy[y] = T(Y0 + y) + T(0.5) - s.my;
    root[y] = s.a * p.smax2 - p.det * dy[y] * dy[y];
  }
  for (int y = 0; y < kTile; ++y) root[y] = root[y] >= T(0) ? tile_sqrt(root[y]) : T(-1);  // -1: row missed
#pragma omp simd
  for (int y = 0; y < kTile; ++y) {
    const int hit = root[y] >= T(0);
    const T half = (hit ? root[y] : T(0)) * inv_a + T(1);
    const T mid = s.mx - s.b * dy[y] * inv_a - T(X0) - T(0.5);  // tile-local pixel index of the centre
    // clamped to [-1, 16] (no int overflow); then truncating lo + 1 floors lo, and hi + 1 rounds hi
    // up (by a pixel at most: harmless). Plain selects: a libm or std::min call here would be
    // outlined in the AVX2 build and make every chunk reload its constants.
    T lo = mid - half, hi = mid + half;
    lo = lo < T(-1) ? T(-1) : (lo > T(kTile) ? T(kTile) : lo);
    hi = hi < T(-1) ? T(-1) : (hi > T(kTile) ? T(kTile) : hi);
    const int ia = (int)(lo + T(1)) - 1, ib = (int)(hi + T(1));
    const int xa = ia > b.x0 ? ia : b.x0, xb = ib < b.x1 ? ib : b.x1;
    xa_out[y] = xa;
    xb_out[y] = hit ? xb : -1;  // no pixel of this row is inside the ellipse
  }
}

// The pair walk: calls v.chunk(s, p0, px0, py) for every chunk (Visitor::kL pixels) of tile rows that can hold a
// pixel with alpha >= 1/255; p0 = state index (y * (kTile + kL) + x) of its first pixel, (px0 + l, py) =
// centre of lane l. Rows are cut to the ellipse's span (row_spans), so thin or tilted splats skip the
// chunks their box corners would cost.
// Two phases: the chunk list is built branch-free first, then walked in one flat loop, so the CPU
// mispredicts once per splat (not per row) and overlaps the independent chunks' latency chains.
template <typename T, typename Visitor>
A3D_FORCE_INLINE void walk_pairs(const TileSplats<T>& ts, int64_t i, Visitor& v) {
  const Prepared<T>& p = ts.pr[i];
  const PixBox b = p.box;
  int xa_r[kTile], xb_r[kTile];
  if (p.det > T(0)) {
    row_spans(p, ts.X0, ts.Y0, xa_r, xb_r);
  } else {
    for (int y = 0; y < kTile; ++y) { xa_r[y] = b.x0; xb_r[y] = b.x1; }
  }
  constexpr int L = Visitor::kL, S = kTile + L;
  int16_t list[2 * kTile];  // a row needs at most two chunks (clipped width <= 16), one with 16 lanes
  int n = 0;
  for (int y = b.y0; y <= b.y1; ++y) {
    const int xa = xa_r[y], xb = xb_r[y];
    const int p0 = y * S + xa;
    list[n] = (int16_t)p0;
    n += xa <= xb;
    if (L < kTile) {
      list[n] = (int16_t)(p0 + L);
      n += xa + L <= xb;
    }
  }
  const Splat<T> s = p.s;
  const int X0 = ts.X0, Y0 = ts.Y0;
  for (int k = 0; k < n; ++k) {
    const int p0 = list[k], y = p0 / S, x = p0 - y * S;
    v.chunk(s, p0, T(X0 + x) + T(0.5), T(Y0 + y) + T(0.5));
  }
}

}  // namespace a3d_gs
