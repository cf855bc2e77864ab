// Mesh rasterization maths shared by the CPU (mesh_cpu.cpp) and CUDA (mesh_kernels.cu) kernels.
//
// Everything here is per triangle / per pixel, header-only and usable from host and device, so the
// two implementations cannot drift apart. The float evaluation order deliberately matches
// avatar3d/render/mesh_reference.py so CPU results equal the reference (same triangle ids).
//
// Conventions (nvdiffrast): pos is clip space (x, y, z, w); pixel (row i, col j) samples NDC
// ((2j+1)/W - 1, (2i+1)/H - 1); rast = (u, v, z/w, id+1) with point = u*v0 + v*v1 + (1-u-v)*v2.
//
// Coverage uses homogeneous rasterization: with M = [v0 v1 v2] over (x, y, w) and p = (px, py, 1),
// the pixel ray hits the triangle's plane at barycentrics proportional to s = adj(M) p, where the
// rows of adj(M) are n_i = v_j x v_k (i, j, k cyclic). Covered <=> all s_i / det(M) >= 0. This
// needs no clipping and is exact for triangles crossing the eye plane.
#pragma once

#include <math.h>
#include <stdint.h>

#include "common.h"

namespace a3d {

// ---------------------------------------------------------------------------------------- setup
template <typename T>
struct Tri {
  T n[3][3];  // edge normals n_i = v_j x v_k over (x, y, w)
  T det;      // det(M) = n_0 . v_0
};

template <typename T>
A3D_HD void cross3(const T a[3], const T b[3], T out[3]) {
  out[0] = a[1] * b[2] - a[2] * b[1];
  out[1] = a[2] * b[0] - a[0] * b[2];
  out[2] = a[0] * b[1] - a[1] * b[0];
}

// p0, p1, p2: clip-space corners (4 values each).
template <typename T>
A3D_HD void tri_setup(const T* p0, const T* p1, const T* p2, Tri<T>& t) {
  const T v0[3] = {p0[0], p0[1], p0[3]}, v1[3] = {p1[0], p1[1], p1[3]}, v2[3] = {p2[0], p2[1], p2[3]};
  cross3(v1, v2, t.n[0]);
  cross3(v2, v0, t.n[1]);
  cross3(v0, v1, t.n[2]);
  t.det = (t.n[0][0] * v0[0] + t.n[0][1] * v0[1]) + t.n[0][2] * v0[2];
}

template <typename T>
A3D_HD T pixel_center(int i, int n) {
  return (T)(2 * i + 1) / (T)n - (T)1;
}

// Edge values s_i at NDC point (px, py).
template <typename T>
A3D_HD void tri_edges(const Tri<T>& t, T px, T py, T s[3]) {
  for (int i = 0; i < 3; ++i) s[i] = (t.n[i][0] * px + t.n[i][1] * py) + t.n[i][2];
}

// Coverage with a tie rule: a pixel centre exactly on an edge belongs to the triangle whose
// interior-facing edge normal (a, b, c) is lexicographically positive; the neighbour across the
// edge has the exactly negated normal, so exactly one of them takes the pixel.
template <typename T>
A3D_HD bool tri_covers(const Tri<T>& t, const T s[3]) {
  if (t.det == (T)0) return false;
  const T sg = t.det > (T)0 ? (T)1 : (T)-1;
  for (int i = 0; i < 3; ++i) {
    const T ss = s[i] * sg;
    if (ss > (T)0) continue;
    if (!(ss == (T)0)) return false;  // negative or NaN
    const T a = t.n[i][0] * sg, b = t.n[i][1] * sg, c = t.n[i][2] * sg;
    const bool tie = (a > (T)0) || (a == (T)0 && b > (T)0) || (a == (T)0 && b == (T)0 && c > (T)0);
    if (!tie) return false;
  }
  return true;
}

// z/w at the pixel from the edge values; -1..1 inside the depth range.
template <typename T>
A3D_HD T tri_depth(const T s[3], const T* p0, const T* p1, const T* p2) {
  const T Z = (s[0] * p0[2] + s[1] * p1[2]) + s[2] * p2[2];
  const T Wd = (s[0] * p0[3] + s[1] * p1[3]) + s[2] * p2[3];
  return Z / Wd;
}

template <typename T>
A3D_HD bool finite4(const T* p) {
  return isfinite(p[0]) && isfinite(p[1]) && isfinite(p[2]) && isfinite(p[3]);
}

template <typename T>
A3D_HD T min3(T a, T b, T c) { return a < b ? (a < c ? a : c) : (b < c ? b : c); }
template <typename T>
A3D_HD T max3(T a, T b, T c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }
template <typename T>
A3D_HD T clampv(T x, T lo, T hi) { return x < lo ? lo : (x > hi ? hi : x); }

// Inclusive pixel bounding box; returns false when the triangle cannot cover any pixel.
template <typename T>
A3D_HD bool tri_bbox(const T* p0, const T* p1, const T* p2, int H, int W, int& x0, int& x1, int& y0, int& y1) {
  if (!(finite4(p0) && finite4(p1) && finite4(p2))) return false;
  const bool a0 = p0[3] > (T)0, a1 = p1[3] > (T)0, a2 = p2[3] > (T)0;
  if (!(a0 || a1 || a2)) return false;  // wholly behind the eye
  if (!(a0 && a1 && a2)) {              // crosses the eye plane: test every pixel (rare)
    x0 = 0; x1 = W - 1; y0 = 0; y1 = H - 1;
    return true;
  }
  const T hw = (T)W * (T)0.5, hh = (T)H * (T)0.5;
  const T sx0 = (p0[0] / p0[3] + (T)1) * hw - (T)0.5, sx1 = (p1[0] / p1[3] + (T)1) * hw - (T)0.5, sx2 = (p2[0] / p2[3] + (T)1) * hw - (T)0.5;
  const T sy0 = (p0[1] / p0[3] + (T)1) * hh - (T)0.5, sy1 = (p1[1] / p1[3] + (T)1) * hh - (T)0.5, sy2 = (p2[1] / p2[3] + (T)1) * hh - (T)0.5;
  x0 = (int)clampv(floor(min3(sx0, sx1, sx2)), (T)0, (T)W);
  x1 = (int)clampv(ceil(max3(sx0, sx1, sx2)), (T)-1, (T)(W - 1));
  y0 = (int)clampv(floor(min3(sy0, sy1, sy2)), (T)0, (T)H);
  y1 = (int)clampv(ceil(max3(sy0, sy1, sy2)), (T)-1, (T)(H - 1));
  return x0 <= x1 && y0 <= y1;
}

// Depth-then-id key for an atomic 64-bit min: smaller depth wins, ties go to the smaller id.
template <typename T>
A3D_HD uint64_t depth_key(T d, int tid) {
  return ((uint64_t)float_order_bits((float)d) << 32) | (uint32_t)tid;
}

// -------------------------------------------------------------------------------- per pixel ops
// Resolve a pixel whose winning triangle is known: rast (u, v, z/w, id+1) and rast_db.
template <typename T>
A3D_HD void raster_resolve(const T* p0, const T* p1, const T* p2, int tid, T px, T py, T pw, T ph, T* out, T* db) {
  Tri<T> t;
  tri_setup(p0, p1, p2, t);
  T s[3];
  tri_edges(t, px, py, s);
  const T S = (s[0] + s[1]) + s[2];
  out[0] = s[0] / S;
  out[1] = s[1] / S;
  out[2] = tri_depth(s, p0, p1, p2);
  out[3] = (T)(tid + 1);
  // d b_i / d ndc = (n_i - b_i * sum_j n_j) / S; a pixel is pw = 2/W (ph = 2/H) NDC units
  const T snx = (t.n[0][0] + t.n[1][0]) + t.n[2][0], sny = (t.n[0][1] + t.n[1][1]) + t.n[2][1];
  db[0] = (t.n[0][0] - out[0] * snx) / S * pw;
  db[1] = (t.n[0][1] - out[0] * sny) / S * ph;
  db[2] = (t.n[1][0] - out[1] * snx) / S * pw;
  db[3] = (t.n[1][1] - out[1] * sny) / S * ph;
}

// Gradient of (u, v, z/w) at a pixel w.r.t. the three clip-space corners: g (3 x 4) = d/d p_k.
template <typename T>
A3D_HD void raster_grad(const T* p0, const T* p1, const T* p2, T px, T py, T gu, T gv, T gd, T g[3][4]) {
  const T* P[3] = {p0, p1, p2};
  T v[3][3];
  for (int k = 0; k < 3; ++k) { v[k][0] = P[k][0]; v[k][1] = P[k][1]; v[k][2] = P[k][3]; }
  Tri<T> t;
  tri_setup(p0, p1, p2, t);
  T s[3];
  tri_edges(t, px, py, s);
  const T S = (s[0] + s[1]) + s[2];
  const T u = s[0] / S, vv = s[1] / S;
  const T Z = (s[0] * p0[2] + s[1] * p1[2]) + s[2] * p2[2];
  const T Wd = (s[0] * p0[3] + s[1] * p1[3]) + s[2] * p2[3];
  const T d = Z / Wd;
  const T common_ = (gu * u + gv * vv);
  T gs[3];
  for (int i = 0; i < 3; ++i) {
    const T gb = (i == 0 ? gu : (i == 1 ? gv : (T)0));
    gs[i] = (gb - common_) / S + gd * (P[i][2] - d * P[i][3]) / Wd;
  }
  const T p[3] = {px, py, (T)1};
  for (int k = 0; k < 3; ++k) { g[k][0] = g[k][1] = g[k][3] = (T)0; g[k][2] = gd * s[k] / Wd; }
  for (int i = 0; i < 3; ++i) {
    const int j = (i + 1) % 3, k = (i + 2) % 3;
    T a[3], b[3];
    cross3(v[k], p, a);  // d s_i / d v_j
    cross3(p, v[j], b);  // d s_i / d v_k
    g[j][0] += gs[i] * a[0]; g[j][1] += gs[i] * a[1]; g[j][3] += gs[i] * a[2];
    g[k][0] += gs[i] * b[0]; g[k][1] += gs[i] * b[1]; g[k][3] += gs[i] * b[2];
  }
  for (int k = 0; k < 3; ++k) g[k][3] += -gd * d * s[k] / Wd;  // explicit w in the depth denominator
}

// Texture boundary handling: returns false when the texel reads as zero.
A3D_HD bool tex_index(int i, int n, int mode, int& out) {
  if (mode == 0) { int m = i % n; out = m < 0 ? m + n : m; return true; }
  if (mode == 1) { out = i < 0 ? 0 : (i >= n ? n - 1 : i); return true; }
  out = i < 0 ? 0 : (i >= n ? n - 1 : i);
  return i >= 0 && i < n;
}

// The four bilinear taps (or one nearest tap) of a texture lookup. idx = texel offsets (row*Wt+col).
template <typename T>
struct Taps {
  int n;
  int idx[4];
  T w[4];       // weights (0 for zero-boundary texels)
  T dwx[4];     // d w / d x (texel units)
  T dwy[4];
};

template <typename T>
A3D_HD void tex_taps(T u, T v, int Ht, int Wt, int filt, int bound, Taps<T>& tp) {
  const T x = u * (T)Wt - (T)0.5, y = v * (T)Ht - (T)0.5;
  if (filt == 0) {
    int ix, iy;
    const bool okx = tex_index((int)floor(x + (T)0.5), Wt, bound, ix);
    const bool oky = tex_index((int)floor(y + (T)0.5), Ht, bound, iy);
    tp.n = 1; tp.idx[0] = iy * Wt + ix; tp.w[0] = (okx && oky) ? (T)1 : (T)0; tp.dwx[0] = tp.dwy[0] = (T)0;
    return;
  }
  const T x0f = floor(x), y0f = floor(y);
  const T fx = x - x0f, fy = y - y0f;
  const int x0 = (int)x0f, y0 = (int)y0f;
  tp.n = 4;
  for (int k = 0; k < 4; ++k) {
    const int dx = k & 1, dy = k >> 1;
    int ix, iy;
    const bool ok = tex_index(x0 + dx, Wt, bound, ix) & tex_index(y0 + dy, Ht, bound, iy);
    const T wx = dx ? fx : (T)1 - fx, wy = dy ? fy : (T)1 - fy;
    const T m = ok ? (T)1 : (T)0;
    tp.idx[k] = iy * Wt + ix;
    tp.w[k] = wy * wx * m;
    tp.dwx[k] = (dx ? (T)1 : (T)-1) * wy * m;
    tp.dwy[k] = (dy ? (T)1 : (T)-1) * wx * m;
  }
}

// ------------------------------------------------------------------------------------ antialias
// One pixel pair (first = (r, c), second = (r, c+1) if horiz else (r+1, c)).
template <typename T>
struct AAPair {
  bool tgt_first;  // which pixel receives the blend
  T alpha;         // fraction of the other pixel's colour it takes
  int vj, vk;      // vertex ids of the silhouette edge
  T da[2][4];      // d alpha / d clip (x, y, z, w) of vj, vk
};

// Screen orientation of triangle f: sign of det[v0 v1 v2] over (x, y, w): +1, -1, or 0 (degenerate).
// Precomputed once per view (orient array) so silhouette tests are a lookup.
template <typename T>
A3D_HD signed char tri_orient(const T* pos, const int* tri, int f) {
  Tri<T> t;
  tri_setup(pos + 4 * tri[3 * f], pos + 4 * tri[3 * f + 1], pos + 4 * tri[3 * f + 2], t);
  return t.det > (T)0 ? 1 : (t.det < (T)0 ? -1 : 0);
}

// pos: this view's (V,4) positions; orient: this view's (F,) orientations; ta/tb triangle ids
// (-1 = background) and depths of the pair.
template <typename T>
A3D_HD bool aa_pair(const T* pos, const int* tri, const int* adj, const signed char* orient, int H, int W, int r, int c,
                    bool horiz, int ta, int tb, T da, T db, AAPair<T>& out) {
  if (ta == tb) return false;
  if (ta < 0) da = (T)INFINITY;
  if (tb < 0) db = (T)INFINITY;
  if (!(da != db)) return false;
  const bool a_front = da < db;
  const int f = a_front ? ta : tb;
  const signed char of = orient[f];
  const T ca[2] = {(T)c + (T)0.5, (T)r + (T)0.5};
  const int ax = horiz ? 0 : 1, ot = 1 - ax;
  const T hw = (T)W * (T)0.5, hh = (T)H * (T)0.5;
  for (int e = 0; e < 3; ++e) {
    const int j = tri[3 * f + e], k = tri[3 * f + (e + 1) % 3];
    const T* pj = pos + 4 * j;
    const T* pk = pos + 4 * k;
    if (!(pj[3] > (T)0) || !(pk[3] > (T)0)) continue;
    // does the projected edge cross the segment between the two pixel centres?
    const T A[2] = {(pj[0] / pj[3] + (T)1) * hw, (pj[1] / pj[3] + (T)1) * hh};
    const T B[2] = {(pk[0] / pk[3] + (T)1) * hw, (pk[1] / pk[3] + (T)1) * hh};
    const T den = B[ot] - A[ot];
    if (den == (T)0) continue;
    // each edge is handled along one axis only (the pair axis it is closer to perpendicular to);
    // blending a 45-degree edge along both axes would count its coverage twice
    const T ext_ax = B[ax] - A[ax];
    if ((ext_ax < (T)0 ? -ext_ax : ext_ax) > (den < (T)0 ? -den : den)) continue;
    const T tau = (ca[ot] - A[ot]) / den;
    const T cr = A[ax] + tau * (B[ax] - A[ax]);
    const T tt = cr - ca[ax];
    if (!(tau >= (T)0 && tau <= (T)1 && tt >= (T)0 && tt <= (T)1)) continue;
    // silhouette: a mesh boundary, or the neighbour across the edge faces the other way (or is degenerate)
    const int nb = adj[3 * f + e];
    if (nb >= 0) {
      const signed char on = orient[nb];
      if (!((on > 0) != (of > 0) || on == 0)) continue;
    }
    const T tf = a_front ? tt : (T)1 - tt;
    out.alpha = tf > (T)0.5 ? tf - (T)0.5 : (T)0.5 - tf;
    out.tgt_first = tf > (T)0.5 ? !a_front : a_front;
    out.vj = j;
    out.vk = k;
    // d alpha / d cross, then through tau and the perspective divide to clip space
    const T sgn = (tf > (T)0.5 ? (T)1 : (tf < (T)0.5 ? (T)-1 : (T)0)) * (a_front ? (T)1 : (T)-1);
    T dA[2], dB[2];  // d cross / d A, d B (screen)
    dA[ax] = (T)1 - tau;
    dB[ax] = tau;
    dA[ot] = (B[ax] - A[ax]) * (tau - (T)1) / den;
    dB[ot] = -(B[ax] - A[ax]) * tau / den;
    const T sc[2] = {hw, hh};
    const T* P[2] = {pj, pk};
    const T* D[2] = {dA, dB};
    for (int q = 0; q < 2; ++q) {
      const T iw = (T)1 / P[q][3];
      out.da[q][0] = sgn * D[q][0] * sc[0] * iw;
      out.da[q][1] = sgn * D[q][1] * sc[1] * iw;
      out.da[q][2] = (T)0;
      out.da[q][3] = -sgn * (D[q][0] * sc[0] * P[q][0] + D[q][1] * sc[1] * P[q][1]) * iw * iw;
    }
    return true;
  }
  return false;
}

// The four pairs a pixel (r, c) belongs to, q = 0..3: right (it is first), left (second), down
// (first), up (second). Evaluates the pair; `other` = the neighbour's pixel index, `first` = whether
// (r, c) is the pair's first pixel. ra: this view's rast (H*W*4).
template <typename T>
A3D_HD bool aa_pixel_pair(const T* pos, const int* tri, const int* adj, const signed char* orient, const T* ra, int H, int W,
                          int r, int c, int q, long long& other, bool& first, AAPair<T>& res) {
  const int dr = (q == 2) ? 1 : (q == 3 ? -1 : 0);
  const int dc = (q == 0) ? 1 : (q == 1 ? -1 : 0);
  first = (q == 0 || q == 2);
  const bool horiz = q < 2;
  const int r2 = r + dr, c2 = c + dc;
  if (r2 < 0 || r2 >= H || c2 < 0 || c2 >= W) return false;
  other = (long long)r2 * W + c2;
  const long long me = (long long)r * W + c;
  const long long fi = first ? me : other, se = first ? other : me;
  return aa_pair(pos, tri, adj, orient, H, W, first ? r : r2, first ? c : c2, horiz, (int)ra[4 * fi + 3] - 1,
                 (int)ra[4 * se + 3] - 1, ra[4 * fi + 2], ra[4 * se + 2], res);
}

}  // namespace a3d
