// Entry points of the CPU Gaussian extension (a3d_gs_cpu), bound to Python in gs_cpu_bind.cpp.
#pragma once

#include <torch/extension.h>

#include <vector>

std::vector<torch::Tensor> gs_forward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities,
                                     torch::Tensor features, torch::Tensor radii, torch::Tensor depths,
                                     torch::Tensor backgrounds, int64_t width, int64_t height);
std::vector<torch::Tensor> gs_backward(torch::Tensor means2d, torch::Tensor conics, torch::Tensor opacities,
                                      torch::Tensor features, torch::Tensor radii, torch::Tensor backgrounds,
                                      torch::Tensor alphas, torch::Tensor last, torch::Tensor offsets,
                                      torch::Tensor ids, torch::Tensor v_images, torch::Tensor v_alphas,
                                      int64_t width, int64_t height);
std::vector<torch::Tensor> gs_project_forward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                             torch::Tensor viewmats, torch::Tensor Ks, int64_t width, int64_t height,
                                             double near_plane, double far_plane, double eps2d);
std::vector<torch::Tensor> gs_project_backward(torch::Tensor means, torch::Tensor quats, torch::Tensor scales,
                                              torch::Tensor viewmats, torch::Tensor Ks, int64_t width, int64_t height,
                                              double near_plane, double far_plane, double eps2d,
                                              torch::Tensor v_means2d, torch::Tensor v_depths, torch::Tensor v_conics);
int64_t gs_num_threads();
