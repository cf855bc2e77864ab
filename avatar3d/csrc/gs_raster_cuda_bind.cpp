// Torch bindings of the CUDA Gaussian kernels (gs_raster.cu, gs_project.cu). Binning (per-tile
// depth-sorted lists) is done by the caller with torch ops on the GPU (gaussians.bin_gaussians_torch).
// The caller passes the current CUDA stream as an integer (torch.cuda.current_stream().cuda_stream),
// which keeps this file free of CUDA headers (it also compiles against a CPU-only torch).
#include <torch/extension.h>

#include "gs_raster.h"

namespace {

void check(const torch::Tensor& t, const char* name, torch::ScalarType dt) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == dt, name, " has the wrong dtype (the CUDA rasterizer is float32)");
}

}  // namespace

std::vector<torch::Tensor> gs_forward_cuda(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities,
                                          torch::Tensor features, torch::Tensor backgrounds, torch::Tensor offsets,
                                          torch::Tensor ids, int64_t width, int64_t height, int64_t stream) {
  check(means2d, "means2d", torch::kFloat32); check(conics, "conics", torch::kFloat32);
  check(opacities, "opacities", torch::kFloat32); check(features, "features", torch::kFloat32);
  check(offsets, "tile_offsets", torch::kInt64); check(ids, "flat_ids", torch::kInt32);
  const bool has_bg = backgrounds.numel() > 0;
  if (has_bg) check(backgrounds, "backgrounds", torch::kFloat32);
  const int C = means2d.size(0), N = means2d.size(1), D = features.size(2), W = width, H = height;
  auto opts = means2d.options();
  auto images = torch::empty({C, H, W, D}, opts);
  auto alphas = torch::empty({C, H, W, 1}, opts);
  auto last = torch::empty({C, H, W}, opts.dtype(torch::kInt32));
  a3d_gs::launch_forward(means2d.data_ptr<float>(), conics.data_ptr<float>(), opacities.data_ptr<float>(),
                         features.data_ptr<float>(), has_bg ? backgrounds.data_ptr<float>() : nullptr,
                         offsets.data_ptr<int64_t>(), ids.data_ptr<int32_t>(), C, N, D, W, H, images.data_ptr<float>(),
                         alphas.data_ptr<float>(), last.data_ptr<int32_t>(), (void*)stream);
  return {images, alphas, last};
}

std::vector<torch::Tensor> gs_backward_cuda(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities,
                                           torch::Tensor features, torch::Tensor radii, torch::Tensor backgrounds,
                                           torch::Tensor alphas,
                                           torch::Tensor last, torch::Tensor offsets, torch::Tensor ids,
                                           torch::Tensor v_images, torch::Tensor v_alphas, int64_t width, int64_t height, int64_t stream) {
  check(v_images, "v_images", torch::kFloat32); check(v_alphas, "v_alphas", torch::kFloat32);
  check(alphas, "alphas", torch::kFloat32); check(last, "last", torch::kInt32);
  const bool has_bg = backgrounds.numel() > 0;
  const int C = means2d.size(0), N = means2d.size(1), D = features.size(2), W = width, H = height;
  auto opts = means2d.options();
  auto v_means2d = torch::zeros({C, N, 2}, opts), v_conics = torch::zeros({C, N, 3}, opts);
  auto v_opac = torch::zeros({C, N}, opts), v_feat = torch::zeros({C, N, D}, opts), v_bg = torch::zeros({C, D}, opts);
  a3d_gs::launch_backward(means2d.data_ptr<float>(), conics.data_ptr<float>(), opacities.data_ptr<float>(),
                          features.data_ptr<float>(), has_bg ? backgrounds.data_ptr<float>() : nullptr,
                          offsets.data_ptr<int64_t>(), ids.data_ptr<int32_t>(), alphas.data_ptr<float>(),
                          last.data_ptr<int32_t>(), v_images.data_ptr<float>(), v_alphas.data_ptr<float>(), C, N, D, W,
                          H, v_means2d.data_ptr<float>(), v_conics.data_ptr<float>(), v_opac.data_ptr<float>(),
                          v_feat.data_ptr<float>(), v_bg.data_ptr<float>(), (void*)stream);
  return {v_means2d, v_conics, v_opac, v_feat, v_bg};
}

std::vector<torch::Tensor> gs_project_forward_cuda(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                                  torch::Tensor viewmats, torch::Tensor Ks, int64_t width,
                                                  int64_t height, double near_plane, double far_plane, double eps2d, int64_t stream) {
  check(means, "means", torch::kFloat32); check(quats, "quats", torch::kFloat32); check(scales, "scales", torch::kFloat32);
  check(viewmats, "viewmats", torch::kFloat32); check(Ks, "Ks", torch::kFloat32);
  const int64_t N = means.size(0);
  const int C = viewmats.size(0);
  auto opts = means.options();
  auto radii = torch::empty({C, N, 2}, opts.dtype(torch::kInt32));
  auto means2d = torch::empty({C, N, 2}, opts), depths = torch::empty({C, N}, opts), conics = torch::empty({C, N, 3}, opts);
  a3d_gs::launch_project_forward(means.data_ptr<float>(), quats.data_ptr<float>(), scales.data_ptr<float>(),
                                 viewmats.data_ptr<float>(), Ks.data_ptr<float>(), C, N, width, height, near_plane,
                                 far_plane, eps2d, radii.data_ptr<int32_t>(), means2d.data_ptr<float>(),
                                 depths.data_ptr<float>(), conics.data_ptr<float>(), (void*)stream);
  return {radii, means2d, depths, conics};
}

std::vector<torch::Tensor> gs_project_backward_cuda(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                                   torch::Tensor viewmats, torch::Tensor Ks, int64_t width,
                                                   int64_t height, double near_plane, double far_plane, double eps2d,
                                                   torch::Tensor v_means2d, torch::Tensor v_depths, torch::Tensor v_conics,
                                                   int64_t stream) {
  check(v_means2d, "v_means2d", torch::kFloat32); check(v_depths, "v_depths", torch::kFloat32);
  check(v_conics, "v_conics", torch::kFloat32);
  const int64_t N = means.size(0);
  const int C = viewmats.size(0);
  auto v_means = torch::empty_like(means), v_quats = torch::empty_like(quats), v_scales = torch::empty_like(scales);
  a3d_gs::launch_project_backward(means.data_ptr<float>(), quats.data_ptr<float>(), scales.data_ptr<float>(),
                                  viewmats.data_ptr<float>(), Ks.data_ptr<float>(), C, N, width, height, near_plane,
                                  far_plane, eps2d, v_means2d.data_ptr<float>(), v_depths.data_ptr<float>(),
                                  v_conics.data_ptr<float>(), v_means.data_ptr<float>(), v_quats.data_ptr<float>(),
                                  v_scales.data_ptr<float>(), (void*)stream);
  return {v_means, v_quats, v_scales};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &gs_forward_cuda, "Gaussian rasterization forward (CUDA)");
  m.def("backward", &gs_backward_cuda, "Gaussian rasterization backward (CUDA)");
  m.def("project_forward", &gs_project_forward_cuda, "EWA projection forward (CUDA)");
  m.def("project_backward", &gs_project_backward_cuda, "EWA projection backward (CUDA)");
  m.def("num_threads", []() { return (int64_t)0; }, "unused on CUDA");
}
