// Gaussian rasterization maths shared by the CPU (gs_raster_cpu.cpp) and CUDA (gs_raster.cu) kernels.
// Conventions follow gsplat: pixel (x, y) is sampled at its centre (x + 0.5, y + 0.5); conic = upper
// triangle (a, b, c) of the inverse 2D covariance, sigma = 0.5 (a dx^2 + c dy^2) + b dx dy;
// alpha = min(0.999, opacity * exp(-sigma)), skipped when sigma < 0 or alpha < 1/255; a pixel stops
// compositing before the Gaussian that would bring its transmittance to <= 1e-4.
#pragma once

#include "common.h"

#include <math.h>

#define A3D_GS_TILE 16
#define A3D_GS_ALPHA_MIN (1.0f / 255.0f)
#define A3D_GS_ALPHA_MAX 0.999f
#define A3D_GS_T_EPS 1e-4f

namespace a3d_gs {

// One projected Gaussian as the compositing loop needs it (gathered per tile for locality).
template <typename T>
struct Splat {
  T mx, my;      // pixel-space mean
  T a, b, c;     // conic
  T opacity;
};

// Mahalanobis half-distance of pixel centre (px, py) to the splat; also returns the offsets.
template <typename T>
A3D_HD T splat_sigma(const Splat<T>& s, T px, T py, T& dx, T& dy) {
  dx = px - s.mx;
  dy = py - s.my;
  return T(0.5) * (s.a * dx * dx + s.c * dy * dy) + s.b * dx * dy;
}

// Gradient of one splat's alpha w.r.t. its parameters, given dL/dalpha.
// g = [mx, my, a, b, c, opacity]; accumulates into g.
template <typename T>
A3D_HD void splat_alpha_backward(const Splat<T>& s, T dx, T dy, T vis, T v_alpha, T* g) {
  // alpha = opacity * vis when unclamped (the caller only calls this in that regime)
  const T v_sigma = -s.opacity * vis * v_alpha;
  g[0] += -(s.a * dx + s.b * dy) * v_sigma;  // d sigma / d mx = -(a dx + b dy)
  g[1] += -(s.b * dx + s.c * dy) * v_sigma;
  g[2] += T(0.5) * dx * dx * v_sigma;
  g[3] += dx * dy * v_sigma;
  g[4] += T(0.5) * dy * dy * v_sigma;
  g[5] += vis * v_alpha;
}

// Tile rectangle [x0, x1) x [y0, y1) touched by a splat with pixel radii (rx, ry); same float ops
// as gsplat's isect_tiles so tile membership (and hence which pixels see which Gaussian) matches.
A3D_HD int clamp_tile(float v, int hi) {
  // clamp in float first: huge (or off-screen) splats must not overflow the int conversion
  v = v < 0.f ? 0.f : (v > (float)hi ? (float)hi : v);
  return (int)v;
}

A3D_HD void tile_range(float mx, float my, float rx, float ry, int tiles_w, int tiles_h,
                       int& x0, int& x1, int& y0, int& y1) {
  const float ts = float(A3D_GS_TILE);
  x0 = clamp_tile(floorf(mx / ts - rx / ts), tiles_w);
  x1 = clamp_tile(ceilf(mx / ts + rx / ts), tiles_w);
  y0 = clamp_tile(floorf(my / ts - ry / ts), tiles_h);
  y1 = clamp_tile(ceilf(my / ts + ry / ts), tiles_h);
}

}  // namespace a3d_gs
