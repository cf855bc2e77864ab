// EWA projection of one 3D Gaussian into one pinhole camera, forward and explicit backward, usable
// from host and device. Mirrors avatar3d/render/gaussians_reference.py::project_gaussians exactly
// (gsplat's fully_fused_projection): culled Gaussians use z = 1 so every value stays finite.
#pragma once

#include "common.h"

#include <math.h>

namespace a3d_gs {

template <typename T>
struct ProjIn {
  T m[3], q[4], s[3];  // world mean, wxyz quaternion (any norm), scales
  T R[9], t[3];        // world->camera rotation (row-major) and translation
  T fx, fy, cx, cy;
};

// Intermediates needed by the backward pass (recomputed there, never stored).
template <typename T>
struct ProjState {
  T qn[4], qnorm, Rq[9], M[9], Sc[6];  // normalised quat, its rotation, R diag(s), camera covariance (xx,xy,xz,yy,yz,zz)
  T mc[3], z, u, v, J[4];              // camera mean, safe z, clamped tx/z, ty/z, J = (J00, J02, J11, J12)
  bool in_depth, u_free, v_free;
  T c00, c01, c11, det;                // dilated 2D covariance and its (clamped) determinant
};

template <typename T>
A3D_HD T sym3(const T* S, int i, int j) {  // element (i, j) of a packed symmetric 3x3 (xx,xy,xz,yy,yz,zz)
  const int k = i <= j ? (i == 0 ? j : (i == 1 ? 2 + j : 5)) : (j == 0 ? i : (j == 1 ? 2 + i : 5));
  return S[k];
}

template <typename T>
A3D_HD void project_forward(const ProjIn<T>& in, int W, int H, T near_plane, T far_plane, T eps2d, ProjState<T>& st,
                            T* means2d, T* depth, T* conic, int* radii) {
  T n2 = in.q[0] * in.q[0] + in.q[1] * in.q[1] + in.q[2] * in.q[2] + in.q[3] * in.q[3];
  st.qnorm = sqrt(n2);
  const T inv = T(1) / (st.qnorm > T(1e-12) ? st.qnorm : T(1e-12));
  for (int i = 0; i < 4; ++i) st.qn[i] = in.q[i] * inv;
  const T w = st.qn[0], x = st.qn[1], y = st.qn[2], z = st.qn[3];
  T* Rq = st.Rq;
  Rq[0] = 1 - 2 * (y * y + z * z); Rq[1] = 2 * (x * y - w * z);     Rq[2] = 2 * (x * z + w * y);
  Rq[3] = 2 * (x * y + w * z);     Rq[4] = 1 - 2 * (x * x + z * z); Rq[5] = 2 * (y * z - w * x);
  Rq[6] = 2 * (x * z - w * y);     Rq[7] = 2 * (y * z + w * x);     Rq[8] = 1 - 2 * (x * x + y * y);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) st.M[3 * i + j] = Rq[3 * i + j] * in.s[j];
  // world covariance S = M M^T, then camera covariance Sc = R S R^T (packed)
  T S[9], RS[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      S[3 * i + j] = st.M[3 * i] * st.M[3 * j] + st.M[3 * i + 1] * st.M[3 * j + 1] + st.M[3 * i + 2] * st.M[3 * j + 2];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) RS[3 * i + j] = in.R[3 * i] * S[j] + in.R[3 * i + 1] * S[3 + j] + in.R[3 * i + 2] * S[6 + j];
  const int pi[6] = {0, 0, 0, 1, 1, 2}, pj[6] = {0, 1, 2, 1, 2, 2};
  for (int k = 0; k < 6; ++k) {
    const int i = pi[k], j = pj[k];
    st.Sc[k] = RS[3 * i] * in.R[3 * j] + RS[3 * i + 1] * in.R[3 * j + 1] + RS[3 * i + 2] * in.R[3 * j + 2];
  }
  for (int i = 0; i < 3; ++i) st.mc[i] = in.R[3 * i] * in.m[0] + in.R[3 * i + 1] * in.m[1] + in.R[3 * i + 2] * in.m[2] + in.t[i];
  const T tx = st.mc[0], ty = st.mc[1], tz = st.mc[2];
  st.in_depth = tz > near_plane && tz < far_plane;
  st.z = st.in_depth ? tz : T(1);
  const T zz = st.z;
  const T tanx = T(0.5) * W / in.fx, tany = T(0.5) * H / in.fy;
  const T ulo = -(in.cx / in.fx + T(0.3) * tanx), uhi = (W - in.cx) / in.fx + T(0.3) * tanx;
  const T vlo = -(in.cy / in.fy + T(0.3) * tany), vhi = (H - in.cy) / in.fy + T(0.3) * tany;
  const T ur = tx / zz, vr = ty / zz;
  st.u = ur < ulo ? ulo : (ur > uhi ? uhi : ur);
  st.v = vr < vlo ? vlo : (vr > vhi ? vhi : vr);
  st.u_free = ur >= ulo && ur <= uhi;
  st.v_free = vr >= vlo && vr <= vhi;
  st.J[0] = in.fx / zz; st.J[1] = -in.fx * st.u / zz; st.J[2] = in.fy / zz; st.J[3] = -in.fy * st.v / zz;
  // cov2d = J Sc J^T with J = [[J00, 0, J02], [0, J11, J12]]
  const T* Sc = st.Sc;
  const T a0 = st.J[0], a2 = st.J[1], b1 = st.J[2], b2 = st.J[3];
  st.c00 = a0 * a0 * Sc[0] + 2 * a0 * a2 * Sc[2] + a2 * a2 * Sc[5] + eps2d;
  st.c01 = a0 * b1 * Sc[1] + a0 * b2 * Sc[2] + a2 * b1 * Sc[4] + a2 * b2 * Sc[5];
  st.c11 = b1 * b1 * Sc[3] + 2 * b1 * b2 * Sc[4] + b2 * b2 * Sc[5] + eps2d;
  T det = st.c00 * st.c11 - st.c01 * st.c01;
  st.det = det > T(1e-10) ? det : T(1e-10);
  means2d[0] = in.fx * tx / zz + in.cx;
  means2d[1] = in.fy * ty / zz + in.cy;
  *depth = tz;
  conic[0] = st.c11 / st.det;
  conic[1] = -st.c01 / st.det;
  conic[2] = st.c00 / st.det;
  // radii (no gradient): 3.33 sigma of the marginals, culled when out of depth, off-screen or non-finite
  const T maxr = T(1e6);
  T rx = ceil(T(3.33) * sqrt(st.c00)), ry = ceil(T(3.33) * sqrt(st.c11));
  rx = rx == rx ? (rx > maxr ? maxr : (rx < 0 ? T(0) : rx)) : T(0);  // NaN -> 0, inf -> maxr
  ry = ry == ry ? (ry > maxr ? maxr : (ry < 0 ? T(0) : ry)) : T(0);
  bool ok = st.in_depth;
  for (int i = 0; i < 2; ++i) ok = ok && isfinite(means2d[i]);
  for (int i = 0; i < 3; ++i) ok = ok && isfinite(conic[i]);
  ok = ok && means2d[0] + rx > 0 && means2d[0] - rx < W && means2d[1] + ry > 0 && means2d[1] - ry < H;
  radii[0] = ok ? (int)rx : 0;
  radii[1] = ok ? (int)ry : 0;
}

// Accumulates dL/d(mean, quat, scale) (g[0:3], g[3:7], g[7:10]) from dL/d(means2d, depth, conic).
template <typename T>
A3D_HD void project_backward(const ProjIn<T>& in, const ProjState<T>& st, const T* v_m2, T v_depth, const T* v_con,
                             T* g) {
  const T d = st.det, d2 = d * d, c00 = st.c00, c01 = st.c01, c11 = st.c11;
  // conic = (c11, -c01, c00) / det with det = c00 c11 - c01^2
  const T v00 = v_con[0] * (-c11 * c11 / d2) + v_con[1] * (c01 * c11 / d2) + v_con[2] * (T(1) / d - c00 * c11 / d2);
  const T v11 = v_con[0] * (T(1) / d - c11 * c00 / d2) + v_con[1] * (c01 * c00 / d2) + v_con[2] * (-c00 * c00 / d2);
  const T v01 = v_con[0] * (2 * c01 * c11 / d2) + v_con[1] * (-T(1) / d - 2 * c01 * c01 / d2) + v_con[2] * (2 * c01 * c00 / d2);
  // V = dL/dcov2d as a symmetric matrix; dL/dSc = J^T V J, dL/dJ = 2 V J Sc
  const T V[4] = {v00, T(0.5) * v01, T(0.5) * v01, v11};
  const T Jm[6] = {st.J[0], 0, st.J[1], 0, st.J[2], st.J[3]};
  T VJ[6];  // V J (2x3)
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) VJ[3 * i + j] = V[2 * i] * Jm[j] + V[2 * i + 1] * Jm[3 + j];
  T vSc[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) vSc[3 * i + j] = Jm[i] * VJ[j] + Jm[3 + i] * VJ[3 + j];
  T vJ[6];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      vJ[3 * i + j] = 2 * (VJ[3 * i] * sym3(st.Sc, 0, j) + VJ[3 * i + 1] * sym3(st.Sc, 1, j) + VJ[3 * i + 2] * sym3(st.Sc, 2, j));
  const T z = st.z, tx = st.mc[0], ty = st.mc[1];
  T v_tx = v_m2[0] * in.fx / z, v_ty = v_m2[1] * in.fy / z;
  T v_z = -v_m2[0] * in.fx * tx / (z * z) - v_m2[1] * in.fy * ty / (z * z);
  v_z += vJ[0] * (-in.fx / (z * z)) + vJ[2] * (in.fx * st.u / (z * z)) + vJ[4] * (-in.fy / (z * z)) + vJ[5] * (in.fy * st.v / (z * z));
  const T v_u = vJ[2] * (-in.fx / z), v_v = vJ[5] * (-in.fy / z);
  if (st.u_free) { v_tx += v_u / z; v_z -= v_u * tx / (z * z); }
  if (st.v_free) { v_ty += v_v / z; v_z -= v_v * ty / (z * z); }
  const T v_mc[3] = {v_tx, v_ty, (st.in_depth ? v_z : T(0)) + v_depth};
  for (int j = 0; j < 3; ++j) g[j] += in.R[j] * v_mc[0] + in.R[3 + j] * v_mc[1] + in.R[6 + j] * v_mc[2];
  // Sc = R S R^T -> vS = R^T vSc R ; S = M M^T -> vM = 2 vS M (vS symmetric)
  T tmp[9], vS[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) tmp[3 * i + j] = in.R[i] * vSc[j] + in.R[3 + i] * vSc[3 + j] + in.R[6 + i] * vSc[6 + j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) vS[3 * i + j] = tmp[3 * i] * in.R[j] + tmp[3 * i + 1] * in.R[3 + j] + tmp[3 * i + 2] * in.R[6 + j];
  T vR[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      const T vM = (vS[3 * i] + vS[i]) * st.M[j] + (vS[3 * i + 1] + vS[3 + i]) * st.M[3 + j] + (vS[3 * i + 2] + vS[6 + i]) * st.M[6 + j];
      vR[3 * i + j] = vM * in.s[j];
      g[7 + j] += vM * st.Rq[3 * i + j];
    }
  const T w = st.qn[0], x = st.qn[1], y = st.qn[2], zq = st.qn[3];
  T vq[4];
  vq[0] = 2 * (-zq * vR[1] + y * vR[2] + zq * vR[3] - x * vR[5] - y * vR[6] + x * vR[7]);
  vq[1] = 2 * (y * vR[1] + zq * vR[2] + y * vR[3] - 2 * x * vR[4] - w * vR[5] + zq * vR[6] + w * vR[7] - 2 * x * vR[8]);
  vq[2] = 2 * (-2 * y * vR[0] + x * vR[1] + w * vR[2] + x * vR[3] + zq * vR[5] - w * vR[6] + zq * vR[7] - 2 * y * vR[8]);
  vq[3] = 2 * (-2 * zq * vR[0] - w * vR[1] + x * vR[2] + w * vR[3] - 2 * zq * vR[4] + y * vR[5] + x * vR[6] + y * vR[7]);
  // through q / |q|: (I - qn qn^T) vq / |q|
  const T nrm = st.qnorm > T(1e-12) ? st.qnorm : T(1e-12);
  const T dotq = st.qnorm > T(1e-12) ? (w * vq[0] + x * vq[1] + y * vq[2] + zq * vq[3]) : T(0);
  for (int i = 0; i < 4; ++i) g[3 + i] += (vq[i] - st.qn[i] * dotq) / nrm;
}

}  // namespace a3d_gs
