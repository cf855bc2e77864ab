// Gaussian rasterization maths shared by the CPU (gs_raster_cpu.cpp) and CUDA (gs_raster.cu) kernels:
// one definition of what a (pixel, splat) pair contributes, front to back and back to front.
// Conventions follow gsplat: pixel (x, y) is sampled at its centre (x + 0.5, y + 0.5); conic = upper
// triangle (a, b, c) of the inverse 2D covariance, sigma = 0.5 (a dx^2 + c dy^2) + b dx dy;
// alpha = min(0.999, opacity * exp(-sigma)), skipped when sigma < 0 or alpha < 1/255; a pixel stops
// compositing before the Gaussian that would bring its transmittance to <= 1e-4.
// Every function here is branch-free (selects only) so the CPU kernels can run it on SIMD lanes.
#pragma once

#include "common.h"

#include <math.h>
#include <string.h>

#define A3D_GS_TILE 16
#define A3D_GS_ALPHA_MIN (1.0f / 255.0f)
#define A3D_GS_ALPHA_MAX 0.999f
#define A3D_GS_T_EPS 1e-4f

// The per-pair functions must be inlined into the CPU kernels' SIMD loops, hence A3D_FORCE_INLINE
// (always_inline) on the host.
#if defined(__CUDACC__)
#define A3D_GS_PAIR __host__ __device__ __forceinline__
#else
#define A3D_GS_PAIR A3D_FORCE_INLINE
#endif

namespace a3d_gs {

// One projected Gaussian as the compositing loop needs it (gathered per tile for locality).
template <typename T>
struct Splat {
  T mx, my;      // pixel-space mean
  T a, b, c;     // conic
  T opacity;
};

// exp for the compositing loops. float on the host: Cephes-style polynomial (about 2 ulp, like the
// vectorised exp torch uses), written in plain arithmetic so OpenMP SIMD loops vectorise it (a call to
// libm's expf would not). float on the device: the hardware __expf. double: libm (tests, gradcheck).
A3D_GS_PAIR float gs_exp(float x) {
#if defined(__CUDA_ARCH__)
  return __expf(x);
#else
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);  // keeps 2^n a normal float
  const float t = x * 1.44269504088896341f;
  const int n = (int)(t + (t >= 0.f ? 0.5f : -0.5f));  // round to nearest (truncation vectorises)
  const float fn = (float)n;
  float r = x - fn * 0.693359375f;                      // ln 2 split in two for an exact reduction
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int bits = (n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof(float));
  return p * scale;
#endif
}
A3D_GS_PAIR double gs_exp(double x) { return exp(x); }

// What one splat does at one pixel centre (before transmittance is considered).
template <typename T>
struct PairEval {
  T dx, dy;    // pixel centre minus splat mean
  T vis;       // exp(-sigma)
  T raw;       // opacity * vis (unclamped alpha)
  T alpha;     // min(0.999, raw)
  int ok;      // 1 when sigma >= 0 and alpha >= 1/255: the pair takes part in compositing (int, not
               // bool: a flag as wide as a float keeps SIMD lanes aligned)
};

template <typename T>
A3D_GS_PAIR PairEval<T> eval_pair(const Splat<T>& s, T px, T py) {
  PairEval<T> e;
  e.dx = px - s.mx;
  e.dy = py - s.my;
  const T sigma = T(0.5) * (s.a * e.dx * e.dx + s.c * e.dy * e.dy) + s.b * e.dx * e.dy;
  e.vis = gs_exp(-sigma);
  e.raw = s.opacity * e.vis;
  e.alpha = e.raw > T(A3D_GS_ALPHA_MAX) ? T(A3D_GS_ALPHA_MAX) : e.raw;
  // min(raw, 0.999) >= 1/255 iff raw >= 1/255; testing raw keeps the compare a plain SIMD mask
  e.ok = (sigma >= T(0)) & (e.raw >= T(A3D_GS_ALPHA_MIN));
  return e;
}

// Front-to-back step at a pixel with transmittance Tr that is still compositing (alive = 1).
// Returns 1 when the splat is composited: w = its weight alpha * Tr in the pixel, and Tr advances;
// else w = 0. Sets stop = 1 when the splat would take Tr to <= 1e-4: that splat is not composited
// and the pixel is finished (gsplat). Flags are 0/1 ints.
template <typename T>
A3D_GS_PAIR int composite_forward(const PairEval<T>& e, int alive, T& Tr, T& w, int& stop) {
  const int use = alive & e.ok;
  const T nextT = Tr * (T(1) - e.alpha);
  stop = use & (nextT <= T(A3D_GS_T_EPS));
  const int contrib = use & (stop ^ 1);
  w = contrib ? e.alpha * Tr : T(0);
  Tr = contrib ? nextT : Tr;
  return contrib;
}

// Gradients of one composited pair with respect to the splat's mean, conic and opacity.
template <typename T>
struct PairGrad {
  T w;                    // weight alpha * T_i of the splat at the pixel (0 if not composited)
  T mx, my, a, b, c, op;  // dL/d(mean, conic, opacity) contributions
};

// Back-to-front step. On entry Tr is the transmittance behind the splat (after it) and
//   tail = vA Tfinal - sum_d v_d (S_d + Tfinal bg_d),  S_d = sum_{j behind i} f_jd alpha_j T_j,
// so dL/dalpha_i = fv T_i + tail / (1 - alpha_i) with fv = sum_d f_id v_d (v = dL/dpixel, vA = dL/dalpha).
// On exit Tr and tail describe the pixel in front of the splat. `use` false = no-op with zero grads.
// The feature gradient is w * v_d (left to the caller: any channel count).
template <typename T>
A3D_GS_PAIR PairGrad<T> composite_backward(const Splat<T>& s, const PairEval<T>& e, int use, T fv, T& Tr, T& tail) {
  PairGrad<T> g;
  const T ra = T(1) / (T(1) - e.alpha);
  const T Ti = Tr * ra;  // transmittance in front of the splat
  g.w = use ? e.alpha * Ti : T(0);
  const T v_alpha = tail * ra + fv * Ti;
  tail = use ? tail - fv * g.w : tail;  // the splat joins S for the splats in front of it
  Tr = use ? Ti : Tr;
  // alpha = opacity * vis below the clamp; above it alpha is constant (no gradient but the weight's)
  const int grad = use & (e.raw <= T(A3D_GS_ALPHA_MAX));
  const T v_sigma = grad ? -s.opacity * e.vis * v_alpha : T(0);
  g.mx = -(s.a * e.dx + s.b * e.dy) * v_sigma;  // d sigma / d mx = -(a dx + b dy)
  g.my = -(s.b * e.dx + s.c * e.dy) * v_sigma;
  g.a = T(0.5) * e.dx * e.dx * v_sigma;
  g.b = e.dx * e.dy * v_sigma;
  g.c = T(0.5) * e.dy * e.dy * v_sigma;
  g.op = grad ? e.vis * v_alpha : T(0);
  return g;
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
