// Python bindings of the CPU Gaussian extension: rasterization (gs_raster_cpu.cpp) and projection
// (gs_project_cpu.cpp), posing of triangle-bound Gaussians (gs_pose_cpu.cpp).
#include <torch/extension.h>

#include "gs_cpu_ops.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &gs_forward, "Gaussian rasterization forward (CPU)");
  m.def("render", &gs_render, "Gaussian rasterization forward without the backward's records (CPU)");
  m.def("backward", &gs_backward, "Gaussian rasterization backward (CPU)");
  m.def("project_forward", &gs_project_forward, "EWA projection forward (CPU)");
  m.def("project_backward", &gs_project_backward, "EWA projection backward (CPU)");
  m.def("pose_forward", &gs_pose_forward, "triangle-bound Gaussians posed, forward only (CPU)");
  m.def("num_threads", &gs_num_threads, "OpenMP threads used");
  m.def("simd", &gs_simd, "instruction set of the compositing kernels");
}
