// CUDA implementation of the mesh ops (torch-free: compiled and compile-checked on its own).
// The maths is mesh_math.h, shared with the CPU implementation; these are only the loops.
// Rasterization: one thread per triangle writes (depth, id) keys with a 64-bit atomicMin, then one
// thread per pixel resolves the winner. Backward passes scatter with atomicAdd.
#include "mesh_kernels.h"
#include "mesh_math.h"

namespace a3d {
namespace {

constexpr int kThreads = 256;

inline int blocks_for(long long n) { return (int)((n + kThreads - 1) / kThreads); }

template <typename T>
__global__ void k_raster_tris(const T* __restrict__ pos, const int* __restrict__ tri, int f0, int f1, int H, int W,
                              unsigned long long* __restrict__ zbuf) {
  const int f = f0 + blockIdx.x * blockDim.x + threadIdx.x;
  if (f >= f1) return;
  const T* p0 = pos + 4 * tri[3 * f];
  const T* p1 = pos + 4 * tri[3 * f + 1];
  const T* p2 = pos + 4 * tri[3 * f + 2];
  int x0, x1, y0, y1;
  if (!tri_bbox(p0, p1, p2, H, W, x0, x1, y0, y1)) return;
  Tri<T> t;
  tri_setup(p0, p1, p2, t);
  if (t.det == (T)0) return;
  for (int y = y0; y <= y1; ++y) {
    const T py = pixel_center<T>(y, H);
    for (int x = x0; x <= x1; ++x) {
      const T px = pixel_center<T>(x, W);
      T s[3];
      tri_edges(t, px, py, s);
      if (!tri_covers(t, s)) continue;
      const T d = tri_depth(s, p0, p1, p2);
      if (!(d >= (T)-1 && d <= (T)1)) continue;
      atomicMin(zbuf + (long long)y * W + x, (unsigned long long)depth_key(d, f));
    }
  }
}

template <typename T>
__global__ void k_raster_resolve(const T* __restrict__ pos, const int* __restrict__ tri, const unsigned long long* __restrict__ zbuf,
                                 int H, int W, T* __restrict__ rast, T* __restrict__ db) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long long)H * W) return;
  const unsigned long long k = zbuf[i];
  if (k == ~0ull) return;
  const int f = (int)(k & 0xffffffffull);
  raster_resolve(pos + 4 * tri[3 * f], pos + 4 * tri[3 * f + 1], pos + 4 * tri[3 * f + 2], f, pixel_center<T>((int)(i % W), W),
                 pixel_center<T>((int)(i / W), H), (T)2 / (T)W, (T)2 / (T)H, rast + 4 * i, db + 4 * i);
}

template <typename T>
__global__ void k_raster_bwd(const T* __restrict__ pos, bool batched, int V, const int* __restrict__ tri, const T* __restrict__ rast,
                             const T* __restrict__ grad, int B, int H, int W, T* __restrict__ gpos) {
  const long long P = (long long)H * W;
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= B * P) return;
  const int f = (int)rast[4 * i + 3] - 1;
  if (f < 0) return;
  const T gu = grad[4 * i], gv = grad[4 * i + 1], gd = grad[4 * i + 2];
  if (gu == (T)0 && gv == (T)0 && gd == (T)0) return;
  const long long b = batched ? i / P : 0, pix = i % P;
  const T* pb = pos + b * V * 4;
  T g[3][4];
  raster_grad(pb + 4 * tri[3 * f], pb + 4 * tri[3 * f + 1], pb + 4 * tri[3 * f + 2], pixel_center<T>((int)(pix % W), W),
              pixel_center<T>((int)(pix / W), H), gu, gv, gd, g);
  for (int k = 0; k < 3; ++k)
    for (int c = 0; c < 4; ++c) atomicAdd(gpos + (b * V + tri[3 * f + k]) * 4 + c, g[k][c]);
}

template <typename T>
__global__ void k_interp_fwd(const T* __restrict__ attr, bool batched, int V, int A, const T* __restrict__ rast,
                             const int* __restrict__ tri, long long BP, long long P, T* __restrict__ out) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= BP) return;
  const int f = (int)rast[4 * i + 3] - 1;
  if (f < 0) return;
  const T* ab = attr + (batched ? i / P : 0) * V * A;
  const T u = rast[4 * i], v = rast[4 * i + 1], w = ((T)1 - u) - v;
  const T* a0 = ab + (long long)tri[3 * f] * A;
  const T* a1 = ab + (long long)tri[3 * f + 1] * A;
  const T* a2 = ab + (long long)tri[3 * f + 2] * A;
  for (int c = 0; c < A; ++c) out[i * A + c] = (u * a0[c] + v * a1[c]) + w * a2[c];
}

template <typename T>
__global__ void k_interp_bwd(const T* __restrict__ attr, bool batched, int V, int A, const T* __restrict__ rast,
                             const int* __restrict__ tri, const T* __restrict__ grad, long long BP, long long P,
                             T* __restrict__ gattr, T* __restrict__ grast) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= BP) return;
  const int f = (int)rast[4 * i + 3] - 1;
  if (f < 0) return;
  const long long ba = batched ? i / P : 0;
  const T* ab = attr + ba * V * A;
  T* gb = gattr + ba * V * A;
  const T u = rast[4 * i], v = rast[4 * i + 1], w = ((T)1 - u) - v;
  const long long o0 = (long long)tri[3 * f] * A, o1 = (long long)tri[3 * f + 1] * A, o2 = (long long)tri[3 * f + 2] * A;
  T gu = 0, gv = 0;
  for (int c = 0; c < A; ++c) {
    const T gc = grad[i * A + c];
    atomicAdd(gb + o0 + c, u * gc);
    atomicAdd(gb + o1 + c, v * gc);
    atomicAdd(gb + o2 + c, w * gc);
    gu += gc * (ab[o0 + c] - ab[o2 + c]);
    gv += gc * (ab[o1 + c] - ab[o2 + c]);
  }
  grast[4 * i] = gu;
  grast[4 * i + 1] = gv;
}

template <typename T>
__global__ void k_tex_fwd(const T* __restrict__ tex, bool batched, int Ht, int Wt, int C, const T* __restrict__ uv, long long BP,
                          long long P, int filt, int bound, T* __restrict__ out) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= BP) return;
  if (!(isfinite(uv[2 * i]) && isfinite(uv[2 * i + 1]))) return;
  Taps<T> tp;
  tex_taps(uv[2 * i], uv[2 * i + 1], Ht, Wt, filt, bound, tp);
  const T* tb = tex + (batched ? i / P : 0) * Ht * Wt * C;
  for (int c = 0; c < C; ++c) {
    T acc = 0;
    for (int k = 0; k < tp.n; ++k) acc += tp.w[k] * tb[(long long)tp.idx[k] * C + c];
    out[i * C + c] = acc;
  }
}

template <typename T>
__global__ void k_tex_bwd(const T* __restrict__ tex, bool batched, int Ht, int Wt, int C, const T* __restrict__ uv,
                          const T* __restrict__ grad, long long BP, long long P, int filt, int bound, T* __restrict__ gtex,
                          T* __restrict__ guv) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= BP) return;
  if (!(isfinite(uv[2 * i]) && isfinite(uv[2 * i + 1]))) return;
  Taps<T> tp;
  tex_taps(uv[2 * i], uv[2 * i + 1], Ht, Wt, filt, bound, tp);
  const long long bt = batched ? i / P : 0;
  const T* tb = tex + bt * Ht * Wt * C;
  T* gb = gtex + bt * Ht * Wt * C;
  T gx = 0, gy = 0;
  for (int c = 0; c < C; ++c) {
    const T gc = grad[i * C + c];
    for (int k = 0; k < tp.n; ++k) {
      const T tv = tb[(long long)tp.idx[k] * C + c];
      atomicAdd(gb + (long long)tp.idx[k] * C + c, tp.w[k] * gc);
      gx += gc * tp.dwx[k] * tv;
      gy += gc * tp.dwy[k] * tv;
    }
  }
  guv[2 * i] = gx * (T)Wt;
  guv[2 * i + 1] = gy * (T)Ht;
}

template <typename T>
__global__ void k_orient(const T* __restrict__ pos, int V, const int* __restrict__ tri, long long BF, int F,
                         signed char* __restrict__ orient) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= BF) return;
  orient[i] = tri_orient(pos + (i / F) * V * 4, tri, (int)(i % F));
}

template <typename T>
__global__ void k_aa_fwd(const T* __restrict__ color, const T* __restrict__ rast, const T* __restrict__ pos, bool batched, int V,
                         const int* __restrict__ tri, const int* __restrict__ adj, const signed char* __restrict__ orient, int F, int B, int H, int W, int C, T* __restrict__ out) {
  const long long P = (long long)H * W;
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= B * P) return;
  const long long b = i / P, pix = i % P;
  const int r = (int)(pix / W), c = (int)(pix % W);
  const T* pb = pos + (batched ? b : 0) * V * 4;
  const signed char* ob = orient + (batched ? b : 0) * F;
  const T* ra = rast + b * P * 4;
  const T* cb = color + b * P * C;
  for (int k = 0; k < C; ++k) out[i * C + k] = cb[pix * C + k];
  for (int q = 0; q < 4; ++q) {
    long long other;
    bool first;
    AAPair<T> res;
    if (!aa_pixel_pair(pb, tri, adj, ob, ra, H, W, r, c, q, other, first, res)) continue;
    if (res.tgt_first != first) continue;
    for (int k = 0; k < C; ++k) out[i * C + k] += res.alpha * (cb[other * C + k] - cb[pix * C + k]);
  }
}

template <typename T>
__global__ void k_aa_bwd(const T* __restrict__ color, const T* __restrict__ rast, const T* __restrict__ pos, bool batched, int V,
                         const int* __restrict__ tri, const int* __restrict__ adj, const signed char* __restrict__ orient, int F,
                         const T* __restrict__ grad, int B, int H, int W,
                         int C, T* __restrict__ gcol, T* __restrict__ gpos) {
  const long long P = (long long)H * W;
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= B * P) return;
  const long long b = i / P, pix = i % P;
  const int r = (int)(pix / W), c = (int)(pix % W);
  const long long pbi = batched ? b : 0;
  const T* pb = pos + pbi * V * 4;
  const signed char* ob = orient + pbi * F;
  const T* ra = rast + b * P * 4;
  const T* cb = color + b * P * C;
  const T* gb = grad + b * P * C;
  for (int k = 0; k < C; ++k) gcol[i * C + k] = gb[pix * C + k];
  for (int q = 0; q < 4; ++q) {
    long long other;
    bool first;
    AAPair<T> res;
    if (!aa_pixel_pair(pb, tri, adj, ob, ra, H, W, r, c, q, other, first, res)) continue;
    if (res.tgt_first == first) {
      T galpha = 0;
      for (int k = 0; k < C; ++k) {
        gcol[i * C + k] -= res.alpha * gb[pix * C + k];
        galpha += gb[pix * C + k] * (cb[other * C + k] - cb[pix * C + k]);
      }
      for (int qq = 0; qq < 4; ++qq) {
        atomicAdd(gpos + (pbi * V + res.vj) * 4 + qq, galpha * res.da[0][qq]);
        atomicAdd(gpos + (pbi * V + res.vk) * 4 + qq, galpha * res.da[1][qq]);
      }
    } else {
      for (int k = 0; k < C; ++k) gcol[i * C + k] += res.alpha * gb[other * C + k];
    }
  }
}

}  // namespace

template <typename T>
void launch_rasterize_fwd(const T* pos, bool pos_batched, int V, const int* tri, int F, const int* ranges_host, int B, int H,
                          int W, unsigned long long* zbuf, T* rast, T* db, cudaStream_t stream) {
  const long long P = (long long)H * W;
  cudaMemsetAsync(zbuf, 0xff, sizeof(unsigned long long) * B * P, stream);
  for (int b = 0; b < B; ++b) {
    const T* pb = pos + (pos_batched ? (long long)b : 0) * V * 4;
    int f0 = 0, f1 = F;
    if (ranges_host) {
      f0 = ranges_host[2 * b] < 0 ? 0 : ranges_host[2 * b];
      const int cnt = ranges_host[2 * b + 1] < 0 ? 0 : ranges_host[2 * b + 1];
      f1 = f0 + cnt > F ? F : f0 + cnt;
      if (f0 > F) f0 = F;
    }
    if (f1 > f0) k_raster_tris<T><<<blocks_for(f1 - f0), kThreads, 0, stream>>>(pb, tri, f0, f1, H, W, zbuf + b * P);
    k_raster_resolve<T><<<blocks_for(P), kThreads, 0, stream>>>(pb, tri, zbuf + b * P, H, W, rast + b * P * 4, db + b * P * 4);
  }
}

template <typename T>
void launch_rasterize_bwd(const T* pos, bool pos_batched, int V, const int* tri, const T* rast, const T* grad, int B, int H,
                          int W, T* grad_pos, cudaStream_t stream) {
  const long long n = (long long)B * H * W;
  if (n) k_raster_bwd<T><<<blocks_for(n), kThreads, 0, stream>>>(pos, pos_batched, V, tri, rast, grad, B, H, W, grad_pos);
}

template <typename T>
void launch_interpolate_fwd(const T* attr, bool attr_batched, int V, int A, const T* rast, const int* tri, int B, int H, int W,
                            T* out, cudaStream_t stream) {
  const long long P = (long long)H * W, n = B * P;
  if (n) k_interp_fwd<T><<<blocks_for(n), kThreads, 0, stream>>>(attr, attr_batched, V, A, rast, tri, n, P, out);
}

template <typename T>
void launch_interpolate_bwd(const T* attr, bool attr_batched, int V, int A, const T* rast, const int* tri, const T* grad,
                            int B, int H, int W, T* grad_attr, T* grad_rast, cudaStream_t stream) {
  const long long P = (long long)H * W, n = B * P;
  if (n) k_interp_bwd<T><<<blocks_for(n), kThreads, 0, stream>>>(attr, attr_batched, V, A, rast, tri, grad, n, P, grad_attr, grad_rast);
}

template <typename T>
void launch_texture_fwd(const T* tex, bool tex_batched, int Ht, int Wt, int C, const T* uv, int B, int H, int W, int filt,
                        int bound, T* out, cudaStream_t stream) {
  const long long P = (long long)H * W, n = B * P;
  if (n) k_tex_fwd<T><<<blocks_for(n), kThreads, 0, stream>>>(tex, tex_batched, Ht, Wt, C, uv, n, P, filt, bound, out);
}

template <typename T>
void launch_texture_bwd(const T* tex, bool tex_batched, int Ht, int Wt, int C, const T* uv, const T* grad, int B, int H, int W,
                        int filt, int bound, T* grad_tex, T* grad_uv, cudaStream_t stream) {
  const long long P = (long long)H * W, n = B * P;
  if (n) k_tex_bwd<T><<<blocks_for(n), kThreads, 0, stream>>>(tex, tex_batched, Ht, Wt, C, uv, grad, n, P, filt, bound, grad_tex, grad_uv);
}

template <typename T>
void launch_antialias_fwd(const T* color, const T* rast, const T* pos, bool pos_batched, int V, const int* tri, const int* adj,
                          int F, int B, int H, int W, int C, signed char* orient, T* out, cudaStream_t stream) {
  const long long n = (long long)B * H * W, bf = (long long)(pos_batched ? B : 1) * F;
  if (bf) k_orient<T><<<blocks_for(bf), kThreads, 0, stream>>>(pos, V, tri, bf, F, orient);
  if (n) k_aa_fwd<T><<<blocks_for(n), kThreads, 0, stream>>>(color, rast, pos, pos_batched, V, tri, adj, orient, F, B, H, W, C, out);
}

template <typename T>
void launch_antialias_bwd(const T* color, const T* rast, const T* pos, bool pos_batched, int V, const int* tri, const int* adj,
                          int F, const T* grad, int B, int H, int W, int C, signed char* orient, T* grad_color, T* grad_pos,
                          cudaStream_t stream) {
  const long long n = (long long)B * H * W, bf = (long long)(pos_batched ? B : 1) * F;
  if (bf) k_orient<T><<<blocks_for(bf), kThreads, 0, stream>>>(pos, V, tri, bf, F, orient);
  if (n)
    k_aa_bwd<T><<<blocks_for(n), kThreads, 0, stream>>>(color, rast, pos, pos_batched, V, tri, adj, orient, F, grad, B, H, W, C,
                                                        grad_color, grad_pos);
}

#define A3D_INSTANTIATE(T)                                                                                                  \
  template void launch_rasterize_fwd<T>(const T*, bool, int, const int*, int, const int*, int, int, int, unsigned long long*, \
                                        T*, T*, cudaStream_t);                                                              \
  template void launch_rasterize_bwd<T>(const T*, bool, int, const int*, const T*, const T*, int, int, int, T*, cudaStream_t); \
  template void launch_interpolate_fwd<T>(const T*, bool, int, int, const T*, const int*, int, int, int, T*, cudaStream_t);   \
  template void launch_interpolate_bwd<T>(const T*, bool, int, int, const T*, const int*, const T*, int, int, int, T*, T*,     \
                                          cudaStream_t);                                                                    \
  template void launch_texture_fwd<T>(const T*, bool, int, int, int, const T*, int, int, int, int, int, T*, cudaStream_t);    \
  template void launch_texture_bwd<T>(const T*, bool, int, int, int, const T*, const T*, int, int, int, int, int, T*, T*,     \
                                      cudaStream_t);                                                                        \
  template void launch_antialias_fwd<T>(const T*, const T*, const T*, bool, int, const int*, const int*, int, int, int, int,  \
                                        int, signed char*, T*, cudaStream_t);                                               \
  template void launch_antialias_bwd<T>(const T*, const T*, const T*, bool, int, const int*, const int*, int, const T*, int,  \
                                        int, int, int, signed char*, T*, T*, cudaStream_t);

A3D_INSTANTIATE(float)
A3D_INSTANTIATE(double)

}  // namespace a3d
