// Forward-only posing of triangle-bound Gaussians on the CPU (OpenMP): avatar3d/avatar/binding.py's
// triangle_frames + pose_gaussians in one pass per Gaussian, for rendering. The torch code makes a
// dozen (B, F) and (B, N) intermediates (frames, gathered 3x3 rotations, four Shepperd candidates);
// here each Gaussian reads its triangle's three vertices (and its offset blendshapes) and writes its mean,
// quaternion and scales.
// Same formulas, in the same order where it matters; results agree up to float rounding (tested).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

#include "gs_cpu_ops.h"

namespace {

template <typename T>
inline void cross(const T* a, const T* b, T* out) {
  out[0] = a[1] * b[2] - a[2] * b[1];
  out[1] = a[2] * b[0] - a[0] * b[2];
  out[2] = a[0] * b[1] - a[1] * b[0];
}

template <typename T>
inline T dot(const T* a, const T* b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

// Shepperd's method as avatar3d.geometry.matrix_to_quaternion: the candidate with the largest
// 4 w^2, 4 x^2, 4 y^2 or 4 z^2 (first on ties), normalised, w >= 0. R row-major.
template <typename T>
inline void matrix_to_quaternion(const T* R, T* q) {
  const T m00 = R[0], m01 = R[1], m02 = R[2], m10 = R[3], m11 = R[4], m12 = R[5], m20 = R[6], m21 = R[7], m22 = R[8];
  const T t[4] = {1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22};
  const T d21 = m21 - m12, d02 = m02 - m20, d10 = m10 - m01;
  const T s21 = m21 + m12, s02 = m02 + m20, s10 = m10 + m01;
  int best = 0;
  for (int k = 1; k < 4; ++k) best = t[k] > t[best] ? k : best;
  T c[4];
  switch (best) {
    case 0: c[0] = t[0]; c[1] = d21; c[2] = d02; c[3] = d10; break;
    case 1: c[0] = d21; c[1] = t[1]; c[2] = s10; c[3] = s02; break;
    case 2: c[0] = d02; c[1] = s10; c[2] = t[2]; c[3] = s21; break;
    default: c[0] = d10; c[1] = s02; c[2] = s21; c[3] = t[3]; break;
  }
  const T n = std::max(std::sqrt(c[0] * c[0] + c[1] * c[1] + c[2] * c[2] + c[3] * c[3]), T(1e-12));
  const T sign = c[0] / n < T(0) ? T(-1) : T(1);
  for (int k = 0; k < 4; ++k) q[k] = sign * (c[k] / n);
}

// Hamilton product a * b of wxyz quaternions (binding.quaternion_multiply).
template <typename T>
inline void quat_mul(const T* a, const T* b, T* out) {
  out[0] = a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3];
  out[1] = a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2];
  out[2] = a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1];
  out[3] = a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0];
}

// One Gaussian: frame of triangle (v0, v1, v2), then mean, quaternion and scales (binding.py's map).
template <typename T>
inline void pose_one(const T* v0, const T* v1, const T* v2, const T* off, const T* rot, const T* ls, T* mean, T* quat,
                     T* scale) {
  const T eps = T(1e-12);
  T e0[3], e1[3], n[3], x[3], y[3], z[3];
  for (int i = 0; i < 3; ++i) {
    e0[i] = v1[i] - v0[i];
    e1[i] = v2[i] - v0[i];
  }
  const T len0 = std::sqrt(dot(e0, e0));
  const T inv_x = std::max(len0, eps);
  cross(e0, e1, n);
  const T inv_z = std::max(std::sqrt(dot(n, n)), eps);
  for (int i = 0; i < 3; ++i) {
    x[i] = e0[i] / inv_x;
    z[i] = n[i] / inv_z;
  }
  cross(z, x, y);
  const T s = std::max(T(0.5) * (len0 + std::abs(dot(e1, y))), eps);
  const T R[9] = {x[0], y[0], z[0], x[1], y[1], z[1], x[2], y[2], z[2]};  // columns x, y, z
  for (int i = 0; i < 3; ++i) {
    const T centre = (v0[i] + v1[i] + v2[i]) / T(3);
    mean[i] = centre + s * (R[3 * i] * off[0] + R[3 * i + 1] * off[1] + R[3 * i + 2] * off[2]);
    scale[i] = s * std::exp(ls[i]);
  }
  T qf[4], ql[4];
  matrix_to_quaternion(R, qf);
  const T rn = std::max(std::sqrt(rot[0] * rot[0] + rot[1] * rot[1] + rot[2] * rot[2] + rot[3] * rot[3]), eps);
  for (int k = 0; k < 4; ++k) ql[k] = rot[k] / rn;
  quat_mul(qf, ql, quat);
}

void check(const at::Tensor& t, const char* name, at::ScalarType dt) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == dt, name,
              " must be a contiguous CPU tensor of the expected dtype");
}

}  // namespace

// vertices (B,V,3), faces (F,3) int64, parent (N,) int64, offset (B,N,3) or (N,3), rotation (N,4),
// log_scale (N,3), expr_offset (N,K,3) and drive (B,K) (offset blendshapes, or both empty), all float32 or
// all float64. Returns means (B,N,3), quats (B,N,4), scales (B,N,3).
std::vector<at::Tensor> gs_pose_forward(at::Tensor vertices, at::Tensor faces, at::Tensor parent, at::Tensor offset,
                                        at::Tensor rotation, at::Tensor log_scale, at::Tensor expr_offset,
                                        at::Tensor drive) {
  const auto dt = vertices.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kDouble, "vertices must be float32 or float64");
  check(vertices, "vertices", dt); check(offset, "offset", dt); check(rotation, "rotation", dt);
  check(log_scale, "log_scale", dt); check(faces, "faces", at::kLong); check(parent, "parent", at::kLong);
  const int64_t B = vertices.size(0), V = vertices.size(1), F = faces.size(0), N = parent.size(0);
  const bool per_frame = offset.dim() == 3;
  const int64_t K = expr_offset.numel() ? expr_offset.size(1) : 0;
  if (K) {
    check(expr_offset, "expr_offset", dt); check(drive, "drive", dt);
    TORCH_CHECK(expr_offset.size(0) == N && drive.size(0) == B && drive.size(1) == K, "expr_offset/drive shapes");
  }
  auto means = at::empty({B, N, 3}, vertices.options()), quats = at::empty({B, N, 4}, vertices.options()),
       scales = at::empty({B, N, 3}, vertices.options());
  const int64_t* fc = faces.data_ptr<int64_t>();
  const int64_t* par = parent.data_ptr<int64_t>();
  for (int64_t n = 0; n < N; ++n) TORCH_CHECK(par[n] >= 0 && par[n] < F, "parent index out of range");
  for (int64_t k = 0; k < 3 * F; ++k) TORCH_CHECK(fc[k] >= 0 && fc[k] < V, "face index out of range");
  AT_DISPATCH_FLOATING_TYPES(dt, "gs_pose_forward", [&] {
    const scalar_t *v = vertices.data_ptr<scalar_t>(), *off = offset.data_ptr<scalar_t>(),
                   *rot = rotation.data_ptr<scalar_t>(), *ls = log_scale.data_ptr<scalar_t>(),
                   *eo = K ? expr_offset.data_ptr<scalar_t>() : nullptr, *dr = K ? drive.data_ptr<scalar_t>() : nullptr;
    scalar_t *m = means.data_ptr<scalar_t>(), *q = quats.data_ptr<scalar_t>(), *s = scales.data_ptr<scalar_t>();
    at::parallel_for(0, B * N, 2048, [&](int64_t b0, int64_t e0) {
      for (int64_t k = b0; k < e0; ++k) {
        const int64_t b = k / N, n = k % N;
        const int64_t* f = fc + 3 * par[n];
        const scalar_t* vb = v + b * V * 3;
        const scalar_t* o = off + 3 * (per_frame ? k : n);
        scalar_t o3[3] = {o[0], o[1], o[2]};
        for (int64_t e = 0; e < K; ++e)  // offset + sum_e expr_offset[n, e] drive[b, e]
          for (int i = 0; i < 3; ++i) o3[i] += eo[(n * K + e) * 3 + i] * dr[b * K + e];
        pose_one(vb + 3 * f[0], vb + 3 * f[1], vb + 3 * f[2], o3, rot + 4 * n, ls + 3 * n, m + 3 * k, q + 4 * k,
                 s + 3 * k);
      }
    });
  });
  return {means, quats, scales};
}
