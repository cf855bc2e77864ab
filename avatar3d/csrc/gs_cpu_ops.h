// Entry points of the CPU Gaussian extension (a3d_gs_cpu), bound to Python in gs_cpu_bind.cpp.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <string>
#include <vector>

std::vector<at::Tensor> gs_forward(at::Tensor means2d, at::Tensor conics, at::Tensor opacities,
                                     at::Tensor features, at::Tensor radii, at::Tensor depths,
                                     at::Tensor backgrounds, int64_t width, int64_t height);
// gs_forward's images and alphas only (forward-only rendering: nothing kept for a backward pass).
std::vector<at::Tensor> gs_render(at::Tensor means2d, at::Tensor conics, at::Tensor opacities, at::Tensor features,
                                  at::Tensor radii, at::Tensor depths, at::Tensor backgrounds, int64_t width,
                                  int64_t height);
std::vector<at::Tensor> gs_backward(at::Tensor means2d, at::Tensor conics, at::Tensor opacities,
                                      at::Tensor features, at::Tensor radii, at::Tensor backgrounds,
                                      at::Tensor alphas, at::Tensor last, at::Tensor offsets,
                                      at::Tensor ids, at::Tensor v_images, at::Tensor v_alphas,
                                      int64_t width, int64_t height);
std::vector<at::Tensor> gs_project_forward(at::Tensor means, at::Tensor quats, at::Tensor scales,
                                             at::Tensor viewmats, at::Tensor Ks, int64_t width, int64_t height,
                                             double near_plane, double far_plane, double eps2d);
std::vector<at::Tensor> gs_project_backward(at::Tensor means, at::Tensor quats, at::Tensor scales,
                                              at::Tensor viewmats, at::Tensor Ks, int64_t width, int64_t height,
                                              double near_plane, double far_plane, double eps2d,
                                              at::Tensor v_means2d, at::Tensor v_depths, at::Tensor v_conics);
// Triangle-bound Gaussians posed on vertices (B,V,3), forward only (gs_pose_cpu.cpp; avatar/binding.py).
std::vector<at::Tensor> gs_pose_forward(at::Tensor vertices, at::Tensor faces, at::Tensor parent, at::Tensor offset,
                                        at::Tensor rotation, at::Tensor log_scale, at::Tensor expr_offset,
                                        at::Tensor drive);
int64_t gs_num_threads();
// Instruction set the compositing kernels run with: "avx512", "avx2" or "baseline".
std::string gs_simd();
