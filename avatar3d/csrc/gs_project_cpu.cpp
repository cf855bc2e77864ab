// CPU (OpenMP) EWA projection of Gaussians into C cameras, forward and explicit backward.
// The per-Gaussian maths lives in gs_project.h (shared with the CUDA kernels).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

#include "gs_cpu_ops.h"

// sqrt without the libm errno fallback call (results are the same IEEE values, NaN included).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-math-errno")
#endif
#include "gs_project.h"

namespace {

template <typename T>
a3d_gs::ProjIn<T> load_in(const T* means, const T* quats, const T* scales, const T* vm, const T* K, int64_t n, int c) {
  a3d_gs::ProjIn<T> in;
  for (int i = 0; i < 3; ++i) { in.m[i] = means[3 * n + i]; in.s[i] = scales[3 * n + i]; }
  for (int i = 0; i < 4; ++i) in.q[i] = quats[4 * n + i];
  const T* V = vm + 16 * c;
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) in.R[3 * i + j] = V[4 * i + j];
    in.t[i] = V[4 * i + 3];
  }
  const T* k = K + 9 * c;
  in.fx = k[0]; in.fy = k[4]; in.cx = k[2]; in.cy = k[5];
  return in;
}

void check(const at::Tensor& t, const char* name, at::ScalarType dt) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == dt, name,
              " must be a contiguous CPU tensor of the Gaussians' dtype");
}

}  // namespace

std::vector<at::Tensor> gs_project_forward(at::Tensor means, at::Tensor quats, at::Tensor scales,
                                             at::Tensor viewmats, at::Tensor Ks, int64_t width, int64_t height,
                                             double near_plane, double far_plane, double eps2d) {
  const auto dt = means.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kDouble, "means must be float32 or float64");
  check(means, "means", dt); check(quats, "quats", dt); check(scales, "scales", dt);
  check(viewmats, "viewmats", dt); check(Ks, "Ks", dt);
  const int64_t N = means.size(0);
  const int C = viewmats.size(0);
  auto opts = means.options();
  auto radii = at::empty({C, N, 2}, opts.dtype(at::kInt));
  auto means2d = at::empty({C, N, 2}, opts), depths = at::empty({C, N}, opts), conics = at::empty({C, N, 3}, opts);
  AT_DISPATCH_FLOATING_TYPES(dt, "gs_project_forward", [&] {
    const scalar_t *m = means.data_ptr<scalar_t>(), *q = quats.data_ptr<scalar_t>(), *s = scales.data_ptr<scalar_t>(),
                   *vm = viewmats.data_ptr<scalar_t>(), *K = Ks.data_ptr<scalar_t>();
    scalar_t *m2 = means2d.data_ptr<scalar_t>(), *dep = depths.data_ptr<scalar_t>(), *con = conics.data_ptr<scalar_t>();
    int32_t* rad = radii.data_ptr<int32_t>();
    at::parallel_for(0, C * N, 1024, [&](int64_t b, int64_t e) {
      for (int64_t k = b; k < e; ++k) {
        const int c = k / N;
        const int64_t n = k % N;
        a3d_gs::ProjState<scalar_t> st;
        int r[2];
        a3d_gs::project_forward(load_in(m, q, s, vm, K, n, c), (int)width, (int)height, (scalar_t)near_plane,
                                (scalar_t)far_plane, (scalar_t)eps2d, st, m2 + 2 * k, dep + k, con + 3 * k, r);
        rad[2 * k] = r[0];
        rad[2 * k + 1] = r[1];
      }
    });
  });
  return {radii, means2d, depths, conics};
}

std::vector<at::Tensor> gs_project_backward(at::Tensor means, at::Tensor quats, at::Tensor scales,
                                              at::Tensor viewmats, at::Tensor Ks, int64_t width, int64_t height,
                                              double near_plane, double far_plane, double eps2d, at::Tensor v_means2d,
                                              at::Tensor v_depths, at::Tensor v_conics) {
  const auto dt = means.scalar_type();
  check(v_means2d, "v_means2d", dt); check(v_depths, "v_depths", dt); check(v_conics, "v_conics", dt);
  const int64_t N = means.size(0);
  const int C = viewmats.size(0);
  auto v_means = at::empty_like(means), v_quats = at::empty_like(quats), v_scales = at::empty_like(scales);
  AT_DISPATCH_FLOATING_TYPES(dt, "gs_project_backward", [&] {
    const scalar_t *m = means.data_ptr<scalar_t>(), *q = quats.data_ptr<scalar_t>(), *s = scales.data_ptr<scalar_t>(),
                   *vm = viewmats.data_ptr<scalar_t>(), *K = Ks.data_ptr<scalar_t>(), *vm2 = v_means2d.data_ptr<scalar_t>(),
                   *vd = v_depths.data_ptr<scalar_t>(), *vc = v_conics.data_ptr<scalar_t>();
    scalar_t *gm = v_means.data_ptr<scalar_t>(), *gq = v_quats.data_ptr<scalar_t>(), *gs = v_scales.data_ptr<scalar_t>();
    // parallel over Gaussians, cameras summed in the inner loop: each thread owns its outputs
    at::parallel_for(0, N, 1024, [&](int64_t b, int64_t e) {
      for (int64_t n = b; n < e; ++n) {
        scalar_t g[10] = {0};
        for (int c = 0; c < C; ++c) {
          const int64_t k = (int64_t)c * N + n;
          const auto in = load_in(m, q, s, vm, K, n, c);
          a3d_gs::ProjState<scalar_t> st;
          scalar_t m2[2], dep, con[3];
          int r[2];
          a3d_gs::project_forward(in, (int)width, (int)height, (scalar_t)near_plane, (scalar_t)far_plane,
                                  (scalar_t)eps2d, st, m2, &dep, con, r);
          a3d_gs::project_backward(in, st, vm2 + 2 * k, vd[k], vc + 3 * k, g);
        }
        for (int i = 0; i < 3; ++i) { gm[3 * n + i] = g[i]; gs[3 * n + i] = g[7 + i]; }
        for (int i = 0; i < 4; ++i) gq[4 * n + i] = g[3 + i];
      }
    });
  });
  return {v_means, v_quats, v_scales};
}
