// Torch binding of the CUDA mesh kernels (launchers in mesh_kernels.cu, maths in mesh_math.h).
// Same function names and signatures as the CPU extension (mesh_cpu.cpp) plus a trailing CUDA
// stream handle, so the Python autograd wrappers in avatar3d/render/mesh.py drive either one.
#include <torch/extension.h>

#include <vector>

#include "mesh_kernels.h"

using torch::Tensor;

namespace {

void check_cuda(const Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// The caller passes torch.cuda.current_stream().cuda_stream (see avatar3d/render/backends.py), which keeps
// this file free of c10/cuda headers so it also syntax-checks against a CPU-only torch.
inline cudaStream_t as_stream(int64_t s) { return reinterpret_cast<cudaStream_t>(s); }

std::vector<Tensor> rasterize_fwd(Tensor pos, Tensor tri, int64_t H, int64_t W, Tensor ranges, bool want_db, int64_t stream) {
  check_cuda(pos, "pos");
  check_cuda(tri, "tri");
  const bool range_mode = ranges.numel() > 0;
  auto rg = ranges.to(torch::kCPU).to(torch::kInt32).contiguous();
  const int64_t B = range_mode ? rg.size(0) : pos.size(0);
  auto rast = torch::zeros({B, H, W, 4}, pos.options());
  auto db = torch::zeros({B, H, W, 4}, pos.options());
  if (B == 0 || H * W == 0) return {rast, db};
  auto zbuf = torch::empty({B * H * W}, pos.options().dtype(torch::kInt64));
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_fwd_cuda", [&] {
    a3d::launch_rasterize_fwd<scalar_t>(pos.data_ptr<scalar_t>(), pos.size(0) > 1, (int)pos.size(1), tri.data_ptr<int>(),
                                        (int)tri.size(0), range_mode ? rg.data_ptr<int>() : nullptr, (int)B, (int)H, (int)W,
                                        reinterpret_cast<unsigned long long*>(zbuf.data_ptr<int64_t>()),
                                        rast.data_ptr<scalar_t>(), db.data_ptr<scalar_t>(), as_stream(stream));
  });
  return {rast, db};
}

Tensor rasterize_bwd(Tensor pos, Tensor tri, Tensor rast, Tensor grad, int64_t stream) {
  auto gpos = torch::zeros_like(pos);
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_bwd_cuda", [&] {
    a3d::launch_rasterize_bwd<scalar_t>(pos.data_ptr<scalar_t>(), pos.size(0) > 1, (int)pos.size(1), tri.data_ptr<int>(),
                                        rast.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), (int)rast.size(0), (int)rast.size(1),
                                        (int)rast.size(2), gpos.data_ptr<scalar_t>(), as_stream(stream));
  });
  return gpos;
}

Tensor interpolate_fwd(Tensor attr, Tensor rast, Tensor tri, int64_t stream) {
  check_cuda(attr, "attr");
  check_cuda(rast, "rast");
  auto out = torch::zeros({rast.size(0), rast.size(1), rast.size(2), attr.size(2)}, attr.options());
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_fwd_cuda", [&] {
    a3d::launch_interpolate_fwd<scalar_t>(attr.data_ptr<scalar_t>(), attr.size(0) > 1, (int)attr.size(1), (int)attr.size(2),
                                          rast.data_ptr<scalar_t>(), tri.data_ptr<int>(), (int)rast.size(0), (int)rast.size(1),
                                          (int)rast.size(2), out.data_ptr<scalar_t>(), as_stream(stream));
  });
  return out;
}

std::vector<Tensor> interpolate_bwd(Tensor attr, Tensor rast, Tensor tri, Tensor grad, int64_t stream) {
  auto ga = torch::zeros_like(attr);
  auto gr = torch::zeros_like(rast);
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_bwd_cuda", [&] {
    a3d::launch_interpolate_bwd<scalar_t>(attr.data_ptr<scalar_t>(), attr.size(0) > 1, (int)attr.size(1), (int)attr.size(2),
                                          rast.data_ptr<scalar_t>(), tri.data_ptr<int>(), grad.data_ptr<scalar_t>(),
                                          (int)rast.size(0), (int)rast.size(1), (int)rast.size(2), ga.data_ptr<scalar_t>(),
                                          gr.data_ptr<scalar_t>(), as_stream(stream));
  });
  return {ga, gr};
}

Tensor texture_fwd(Tensor tex, Tensor uv, int64_t filt, int64_t bound, int64_t stream) {
  check_cuda(tex, "tex");
  check_cuda(uv, "uv");
  auto out = torch::zeros({uv.size(0), uv.size(1), uv.size(2), tex.size(3)}, tex.options());
  AT_DISPATCH_FLOATING_TYPES(tex.scalar_type(), "texture_fwd_cuda", [&] {
    a3d::launch_texture_fwd<scalar_t>(tex.data_ptr<scalar_t>(), tex.size(0) > 1, (int)tex.size(1), (int)tex.size(2),
                                      (int)tex.size(3), uv.data_ptr<scalar_t>(), (int)uv.size(0), (int)uv.size(1), (int)uv.size(2),
                                      (int)filt, (int)bound, out.data_ptr<scalar_t>(), as_stream(stream));
  });
  return out;
}

std::vector<Tensor> texture_bwd(Tensor tex, Tensor uv, Tensor grad, int64_t filt, int64_t bound, int64_t stream) {
  auto gt = torch::zeros_like(tex);
  auto gu = torch::zeros_like(uv);
  AT_DISPATCH_FLOATING_TYPES(tex.scalar_type(), "texture_bwd_cuda", [&] {
    a3d::launch_texture_bwd<scalar_t>(tex.data_ptr<scalar_t>(), tex.size(0) > 1, (int)tex.size(1), (int)tex.size(2),
                                      (int)tex.size(3), uv.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), (int)uv.size(0),
                                      (int)uv.size(1), (int)uv.size(2), (int)filt, (int)bound, gt.data_ptr<scalar_t>(),
                                      gu.data_ptr<scalar_t>(), as_stream(stream));
  });
  return {gt, gu};
}

Tensor antialias_fwd(Tensor color, Tensor rast, Tensor pos, Tensor tri, Tensor adj, int64_t stream) {
  check_cuda(color, "color");
  check_cuda(pos, "pos");
  auto out = torch::empty_like(color);
  auto orient = torch::empty({pos.size(0) * tri.size(0)}, pos.options().dtype(torch::kInt8));
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_fwd_cuda", [&] {
    a3d::launch_antialias_fwd<scalar_t>(color.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(),
                                        pos.size(0) > 1, (int)pos.size(1), tri.data_ptr<int>(), adj.data_ptr<int>(),
                                        (int)tri.size(0), (int)color.size(0), (int)color.size(1), (int)color.size(2),
                                        (int)color.size(3), reinterpret_cast<signed char*>(orient.data_ptr<int8_t>()),
                                        out.data_ptr<scalar_t>(), as_stream(stream));
  });
  return out;
}

std::vector<Tensor> antialias_bwd(Tensor color, Tensor rast, Tensor pos, Tensor tri, Tensor adj, Tensor grad, int64_t stream) {
  auto gc = torch::empty_like(color);
  auto gp = torch::zeros_like(pos);
  auto orient = torch::empty({pos.size(0) * tri.size(0)}, pos.options().dtype(torch::kInt8));
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_bwd_cuda", [&] {
    a3d::launch_antialias_bwd<scalar_t>(color.data_ptr<scalar_t>(), rast.data_ptr<scalar_t>(), pos.data_ptr<scalar_t>(),
                                        pos.size(0) > 1, (int)pos.size(1), tri.data_ptr<int>(), adj.data_ptr<int>(),
                                        (int)tri.size(0), grad.data_ptr<scalar_t>(), (int)color.size(0), (int)color.size(1),
                                        (int)color.size(2), (int)color.size(3),
                                        reinterpret_cast<signed char*>(orient.data_ptr<int8_t>()), gc.data_ptr<scalar_t>(),
                                        gp.data_ptr<scalar_t>(), as_stream(stream));
  });
  return {gc, gp};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("rasterize_fwd", &rasterize_fwd, "rasterize forward (CUDA)");
  m.def("rasterize_bwd", &rasterize_bwd, "rasterize backward (CUDA)");
  m.def("interpolate_fwd", &interpolate_fwd, "interpolate forward (CUDA)");
  m.def("interpolate_bwd", &interpolate_bwd, "interpolate backward (CUDA)");
  m.def("texture_fwd", &texture_fwd, "texture forward (CUDA)");
  m.def("texture_bwd", &texture_bwd, "texture backward (CUDA)");
  m.def("antialias_fwd", &antialias_fwd, "antialias forward (CUDA)");
  m.def("antialias_bwd", &antialias_bwd, "antialias backward (CUDA)");
}
