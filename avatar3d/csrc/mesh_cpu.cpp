// CPU (OpenMP) implementation of the mesh ops: rasterize, interpolate, texture, antialias, with
// explicit backward passes. Per-pixel maths lives in mesh_math.h (shared with the CUDA kernels).
//
// Scatter-adds in backward passes go to per-thread private buffers that are summed afterwards:
// no atomics, and results depend only on the thread count.
#include <torch/extension.h>

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "mesh_math.h"

using torch::Tensor;

namespace {

void check_cpu(const Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

inline void atomic_min_u64(uint64_t* a, uint64_t v) {
  uint64_t cur = __atomic_load_n(a, __ATOMIC_RELAXED);
  while (v < cur && !__atomic_compare_exchange_n(a, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

// Per-thread accumulation buffers: (threads, n) zeros; sum(0) at the end.
Tensor thread_buffers(int64_t n, const Tensor& like) {
  return torch::zeros({(int64_t)omp_get_max_threads(), n}, like.options());
}

// ------------------------------------------------------------------------------------ rasterize
// want_db is accepted for API symmetry; rast_db is cheap next to the resolve and always computed.
std::vector<Tensor> rasterize_fwd(Tensor pos, Tensor tri, int64_t H, int64_t W, Tensor ranges, bool /*want_db*/) {
  check_cpu(pos, "pos");
  check_cpu(tri, "tri");
  TORCH_CHECK(pos.dim() == 3 && pos.size(2) == 4, "pos must be (B, V, 4)");
  TORCH_CHECK(tri.scalar_type() == torch::kInt32, "tri must be int32");
  const bool range_mode = ranges.numel() > 0;
  const int64_t B = range_mode ? ranges.size(0) : pos.size(0);
  const int64_t V = pos.size(1), F = tri.size(0);
  const int64_t P = H * W;
  // empty, not zeros: pass 2 writes every pixel (zeros on background), saving a full memory pass
  auto rast = torch::empty({B, H, W, 4}, pos.options());
  auto db = torch::empty({B, H, W, 4}, pos.options());
  if (B == 0 || P == 0) return {rast, db};
  std::vector<uint64_t> zbuf((size_t)(B * P), std::numeric_limits<uint64_t>::max());
  const int* tr = tri.data_ptr<int>();
  const int32_t* rg = range_mode ? ranges.data_ptr<int32_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_fwd", [&] {
    using T = scalar_t;
    const T* pp = pos.data_ptr<T>();
    for (int64_t b = 0; b < B; ++b) {
      const T* pb = pp + (pos.size(0) == 1 ? 0 : b) * V * 4;
      int64_t f0 = 0, f1 = F;
      if (range_mode) {
        f0 = std::max<int64_t>(0, rg[2 * b]);
        f1 = std::min<int64_t>(F, f0 + std::max<int32_t>(0, rg[2 * b + 1]));
      }
      uint64_t* zb = zbuf.data() + b * P;
      // pass 1: every triangle writes (depth, id) keys with an atomic min over its bounding box
_Pragma("omp parallel for schedule(dynamic, 64)")
      for (int64_t f = f0; f < f1; ++f) {
        const T* p0 = pb + 4 * tr[3 * f];
        const T* p1 = pb + 4 * tr[3 * f + 1];
        const T* p2 = pb + 4 * tr[3 * f + 2];
        int x0, x1, y0, y1;
        if (!a3d::tri_bbox(p0, p1, p2, (int)H, (int)W, x0, x1, y0, y1)) continue;
        a3d::Tri<T> t;
        a3d::tri_setup(p0, p1, p2, t);
        if (t.det == (T)0) continue;
        for (int y = y0; y <= y1; ++y) {
          const T py = a3d::pixel_center<T>(y, (int)H);
          for (int x = x0; x <= x1; ++x) {
            const T px = a3d::pixel_center<T>(x, (int)W);
            T s[3];
            a3d::tri_edges(t, px, py, s);
            if (!a3d::tri_covers(t, s)) continue;
            const T d = a3d::tri_depth(s, p0, p1, p2);
            if (!(d >= (T)-1 && d <= (T)1)) continue;
            atomic_min_u64(zb + (int64_t)y * W + x, a3d::depth_key(d, (int)f));
          }
        }
      }
      // pass 2: per pixel, recompute the winner's barycentrics (and derivatives)
      T* ro = rast.data_ptr<T>() + b * P * 4;
      T* dbo = db.data_ptr<T>() + b * P * 4;
      const T pw = (T)2 / (T)W, ph = (T)2 / (T)H;
_Pragma("omp parallel for schedule(static)")
      for (int64_t i = 0; i < P; ++i) {
        const uint64_t k = zb[i];
        if (k == std::numeric_limits<uint64_t>::max()) {
          for (int c = 0; c < 4; ++c) ro[4 * i + c] = dbo[4 * i + c] = (T)0;
          continue;
        }
        const int f = (int)(uint32_t)(k & 0xffffffffu);
        const T px = a3d::pixel_center<T>((int)(i % W), (int)W), py = a3d::pixel_center<T>((int)(i / W), (int)H);
        a3d::raster_resolve(pb + 4 * tr[3 * f], pb + 4 * tr[3 * f + 1], pb + 4 * tr[3 * f + 2], f, px, py, pw, ph,
                            ro + 4 * i, dbo + 4 * i);
      }
    }
  });
  return {rast, db};
}

Tensor rasterize_bwd(Tensor pos, Tensor tri, Tensor rast, Tensor grad) {
  check_cpu(pos, "pos");
  check_cpu(rast, "rast");
  check_cpu(grad, "grad");
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2), V = pos.size(1);
  const int64_t Bp = pos.size(0);
  const int64_t P = H * W;
  auto buf = thread_buffers(Bp * V * 4, pos);
  const int* tr = tri.data_ptr<int>();
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_bwd", [&] {
    using T = scalar_t;
    const T* pp = pos.data_ptr<T>();
    const T* ra = rast.data_ptr<T>();
    const T* gr = grad.data_ptr<T>();
    T* bb = buf.data_ptr<T>();
_Pragma("omp parallel")
    {
      T* mine = bb + (int64_t)omp_get_thread_num() * Bp * V * 4;
_Pragma("omp for schedule(static)")
      for (int64_t i = 0; i < B * P; ++i) {
        const int f = (int)ra[4 * i + 3] - 1;
        if (f < 0) continue;
        const T gu = gr[4 * i], gv = gr[4 * i + 1], gd = gr[4 * i + 2];
        if (gu == (T)0 && gv == (T)0 && gd == (T)0) continue;
        const int64_t b = i / P, pix = i % P;
        const int64_t pbi = (Bp == 1 ? 0 : b);
        const T* pb = pp + pbi * V * 4;
        const T px = a3d::pixel_center<T>((int)(pix % W), (int)W), py = a3d::pixel_center<T>((int)(pix / W), (int)H);
        T g[3][4];
        a3d::raster_grad(pb + 4 * tr[3 * f], pb + 4 * tr[3 * f + 1], pb + 4 * tr[3 * f + 2], px, py, gu, gv, gd, g);
        for (int k = 0; k < 3; ++k) {
          T* o = mine + (pbi * V + tr[3 * f + k]) * 4;
          for (int c = 0; c < 4; ++c) o[c] += g[k][c];
        }
      }
    }
  });
  return buf.sum(0).view_as(pos);
}

// Per-view triangle orientations (Bp, F) for the antialias silhouette test.
template <typename T>
std::vector<signed char> orientations(const T* pp, int64_t Bp, int64_t V, const int* tr, int64_t F) {
  std::vector<signed char> o((size_t)(Bp * F));
  _Pragma("omp parallel for schedule(static)")
  for (int64_t i = 0; i < Bp * F; ++i) o[i] = a3d::tri_orient(pp + (i / F) * V * 4, tr, (int)(i % F));
  return o;
}

// ---------------------------------------------------------------------------------- interpolate
Tensor interpolate_fwd(Tensor attr, Tensor rast, Tensor tri) {
  check_cpu(attr, "attr");
  check_cpu(rast, "rast");
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2), V = attr.size(1), A = attr.size(2);
  const int64_t Ba = attr.size(0), P = H * W;
  auto out = torch::zeros({B, H, W, A}, attr.options());
  const int* tr = tri.data_ptr<int>();
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_fwd", [&] {
    using T = scalar_t;
    const T* at = attr.data_ptr<T>();
    const T* ra = rast.data_ptr<T>();
    T* o = out.data_ptr<T>();
_Pragma("omp parallel for schedule(static)")
    for (int64_t i = 0; i < B * P; ++i) {
      const int f = (int)ra[4 * i + 3] - 1;
      if (f < 0) continue;
      const T* ab = at + (Ba == 1 ? 0 : i / P) * V * A;
      const T u = ra[4 * i], v = ra[4 * i + 1], w = ((T)1 - u) - v;
      const T* a0 = ab + (int64_t)tr[3 * f] * A;
      const T* a1 = ab + (int64_t)tr[3 * f + 1] * A;
      const T* a2 = ab + (int64_t)tr[3 * f + 2] * A;
      for (int64_t c = 0; c < A; ++c) o[i * A + c] = (u * a0[c] + v * a1[c]) + w * a2[c];
    }
  });
  return out;
}

std::vector<Tensor> interpolate_bwd(Tensor attr, Tensor rast, Tensor tri, Tensor grad) {
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2), V = attr.size(1), A = attr.size(2);
  const int64_t Ba = attr.size(0), P = H * W;
  auto buf = thread_buffers(Ba * V * A, attr);
  auto grast = torch::zeros_like(rast);
  const int* tr = tri.data_ptr<int>();
  AT_DISPATCH_FLOATING_TYPES(attr.scalar_type(), "interpolate_bwd", [&] {
    using T = scalar_t;
    const T* at = attr.data_ptr<T>();
    const T* ra = rast.data_ptr<T>();
    const T* g = grad.data_ptr<T>();
    T* gr = grast.data_ptr<T>();
    T* bb = buf.data_ptr<T>();
_Pragma("omp parallel")
    {
      T* mine = bb + (int64_t)omp_get_thread_num() * Ba * V * A;
_Pragma("omp for schedule(static)")
      for (int64_t i = 0; i < B * P; ++i) {
        const int f = (int)ra[4 * i + 3] - 1;
        if (f < 0) continue;
        const int64_t ba = (Ba == 1 ? 0 : i / P);
        const T* ab = at + ba * V * A;
        const T u = ra[4 * i], v = ra[4 * i + 1], w = ((T)1 - u) - v;
        const int64_t o0 = (int64_t)tr[3 * f] * A, o1 = (int64_t)tr[3 * f + 1] * A, o2 = (int64_t)tr[3 * f + 2] * A;
        T* m = mine + ba * V * A;
        T gu = 0, gv = 0;
        for (int64_t c = 0; c < A; ++c) {
          const T gc = g[i * A + c];
          m[o0 + c] += u * gc;
          m[o1 + c] += v * gc;
          m[o2 + c] += w * gc;
          gu += gc * (ab[o0 + c] - ab[o2 + c]);
          gv += gc * (ab[o1 + c] - ab[o2 + c]);
        }
        gr[4 * i] = gu;
        gr[4 * i + 1] = gv;
      }
    }
  });
  return {buf.sum(0).view_as(attr), grast};
}

// -------------------------------------------------------------------------------------- texture
Tensor texture_fwd(Tensor tex, Tensor uv, int64_t filt, int64_t bound) {
  check_cpu(tex, "tex");
  check_cpu(uv, "uv");
  const int64_t B = uv.size(0), H = uv.size(1), W = uv.size(2);
  const int64_t Bt = tex.size(0), Ht = tex.size(1), Wt = tex.size(2), C = tex.size(3), P = H * W;
  auto out = torch::zeros({B, H, W, C}, tex.options());
  AT_DISPATCH_FLOATING_TYPES(tex.scalar_type(), "texture_fwd", [&] {
    using T = scalar_t;
    const T* tx = tex.data_ptr<T>();
    const T* u = uv.data_ptr<T>();
    T* o = out.data_ptr<T>();
_Pragma("omp parallel for schedule(static)")
    for (int64_t i = 0; i < B * P; ++i) {
      if (!(std::isfinite(u[2 * i]) && std::isfinite(u[2 * i + 1]))) continue;
      a3d::Taps<T> tp;
      a3d::tex_taps(u[2 * i], u[2 * i + 1], (int)Ht, (int)Wt, (int)filt, (int)bound, tp);
      const T* tb = tx + (Bt == 1 ? 0 : i / P) * Ht * Wt * C;
      for (int64_t c = 0; c < C; ++c) {
        T acc = 0;
        for (int k = 0; k < tp.n; ++k) acc += tp.w[k] * tb[(int64_t)tp.idx[k] * C + c];
        o[i * C + c] = acc;
      }
    }
  });
  return out;
}

std::vector<Tensor> texture_bwd(Tensor tex, Tensor uv, Tensor grad, int64_t filt, int64_t bound) {
  const int64_t B = uv.size(0), H = uv.size(1), W = uv.size(2);
  const int64_t Bt = tex.size(0), Ht = tex.size(1), Wt = tex.size(2), C = tex.size(3), P = H * W;
  // Per-thread copies of a big texture would cost threads x its size: above 16M values, all threads
  // share one buffer with atomic adds instead (texel collisions between threads are rare).
  const int64_t n = Bt * Ht * Wt * C;
  const bool shared = n * (int64_t)omp_get_max_threads() > (int64_t(1) << 24);
  auto buf = shared ? torch::zeros({1, n}, tex.options()) : thread_buffers(n, tex);
  auto guv = torch::zeros_like(uv);
  AT_DISPATCH_FLOATING_TYPES(tex.scalar_type(), "texture_bwd", [&] {
    using T = scalar_t;
    const T* tx = tex.data_ptr<T>();
    const T* u = uv.data_ptr<T>();
    const T* g = grad.data_ptr<T>();
    T* gu = guv.data_ptr<T>();
    T* bb = buf.data_ptr<T>();
_Pragma("omp parallel")
    {
      T* mine = bb + (shared ? 0 : (int64_t)omp_get_thread_num() * n);
_Pragma("omp for schedule(static)")
      for (int64_t i = 0; i < B * P; ++i) {
        if (!(std::isfinite(u[2 * i]) && std::isfinite(u[2 * i + 1]))) continue;
        a3d::Taps<T> tp;
        a3d::tex_taps(u[2 * i], u[2 * i + 1], (int)Ht, (int)Wt, (int)filt, (int)bound, tp);
        const int64_t bt = (Bt == 1 ? 0 : i / P);
        const T* tb = tx + bt * Ht * Wt * C;
        T* m = mine + bt * Ht * Wt * C;
        T gx = 0, gy = 0;
        for (int64_t c = 0; c < C; ++c) {
          const T gc = g[i * C + c];
          for (int k = 0; k < tp.n; ++k) {
            const T tv = tb[(int64_t)tp.idx[k] * C + c];
            T* dst = m + (int64_t)tp.idx[k] * C + c;
            if (shared) {
              _Pragma("omp atomic")
              *dst += tp.w[k] * gc;
            } else {
              *dst += tp.w[k] * gc;
            }
            gx += gc * tp.dwx[k] * tv;
            gy += gc * tp.dwy[k] * tv;
          }
        }
        gu[2 * i] = gx * (T)Wt;  // x = u * Wt - 0.5
        gu[2 * i + 1] = gy * (T)Ht;
      }
    }
  });
  return {buf.sum(0).view_as(tex), guv};
}

// ------------------------------------------------------------------------------------ antialias
// Antialias loops run over pixel PAIRS, each evaluated once. Races are avoided by construction:
// horizontal pairs of a row only touch that row (parallel over rows); vertical pairs (r, r+1) run in
// two phases, even r then odd r, so concurrently processed pairs never share a row.
template <typename Fn>
void for_each_pair(int64_t H, int64_t W, Fn&& fn) {
  _Pragma("omp parallel")
  {
    _Pragma("omp for schedule(static)")
    for (int64_t r = 0; r < H; ++r)
      for (int64_t c = 0; c + 1 < W; ++c) fn(r, c, true);
    for (int phase = 0; phase < 2; ++phase) {
      _Pragma("omp for schedule(static)")
      for (int64_t r = phase; r < H - 1; r += 2)
        for (int64_t c = 0; c < W; ++c) fn(r, c, false);
    }
  }
}

// The silhouette-pair walk shared by the antialias forward and backward: for every view b and every
// pixel pair that straddles a silhouette edge (a3d::aa_pair), calls
//   visit(b, pbi, tg, sr, res)
// with pbi = the view's pos batch index, tg = the flat pixel (within view b) whose colour is blended
// towards pixel sr's: out[tg] = col[tg] + res.alpha * (col[sr] - col[tg]).
template <typename T, typename Visit>
void for_each_silhouette_pair(const Tensor& rast, const Tensor& pos, const Tensor& tri, const Tensor& adj, Visit&& visit) {
  const int64_t B = rast.size(0), H = rast.size(1), W = rast.size(2), V = pos.size(1);
  const int64_t Bp = pos.size(0), P = H * W, F = tri.size(0);
  const int* tr = tri.data_ptr<int>();
  const int* ad = adj.data_ptr<int>();
  const T* pp = pos.data_ptr<T>();
  const std::vector<signed char> orient = orientations(pp, Bp, V, tr, F);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t pbi = (Bp == 1 ? 0 : b);
    const T* pb = pp + pbi * V * 4;
    const signed char* ob = orient.data() + pbi * F;
    const T* ra = rast.data_ptr<T>() + b * P * 4;
    for_each_pair(H, W, [&](int64_t r, int64_t c, bool horiz) {
      const int64_t i0 = r * W + c, i1 = horiz ? i0 + 1 : i0 + W;
      const int t0 = (int)ra[4 * i0 + 3] - 1, t1 = (int)ra[4 * i1 + 3] - 1;
      if (t0 == t1) return;
      a3d::AAPair<T> res;
      if (!a3d::aa_pair(pb, tr, ad, ob, (int)H, (int)W, (int)r, (int)c, horiz, t0, t1, ra[4 * i0 + 2], ra[4 * i1 + 2], res)) return;
      visit(b, pbi, res.tgt_first ? i0 : i1, res.tgt_first ? i1 : i0, res);
    });
  }
}

Tensor antialias_fwd(Tensor color, Tensor rast, Tensor pos, Tensor tri, Tensor adj) {
  check_cpu(color, "color");
  check_cpu(rast, "rast");
  check_cpu(pos, "pos");
  const int64_t H = color.size(1), W = color.size(2), C = color.size(3), P = H * W;
  auto out = color.clone();
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_fwd", [&] {
    using T = scalar_t;
    const T* col = color.data_ptr<T>();
    T* o = out.data_ptr<T>();
    for_each_silhouette_pair<T>(rast, pos, tri, adj, [&](int64_t b, int64_t, int64_t tg, int64_t sr, const a3d::AAPair<T>& res) {
      const T* cb = col + b * P * C;
      T* ob = o + b * P * C;
      for (int64_t k = 0; k < C; ++k) ob[tg * C + k] += res.alpha * (cb[sr * C + k] - cb[tg * C + k]);
    });
  });
  return out;
}

std::vector<Tensor> antialias_bwd(Tensor color, Tensor rast, Tensor pos, Tensor tri, Tensor adj, Tensor grad) {
  const int64_t H = color.size(1), W = color.size(2), C = color.size(3), V = pos.size(1);
  const int64_t Bp = pos.size(0), P = H * W;
  auto gcol = grad.clone();
  auto buf = thread_buffers(Bp * V * 4, pos);
  AT_DISPATCH_FLOATING_TYPES(color.scalar_type(), "antialias_bwd", [&] {
    using T = scalar_t;
    const T* col = color.data_ptr<T>();
    const T* gr = grad.data_ptr<T>();
    T* gc = gcol.data_ptr<T>();
    T* bb = buf.data_ptr<T>();
    for_each_silhouette_pair<T>(rast, pos, tri, adj, [&](int64_t b, int64_t pbi, int64_t tg, int64_t sr, const a3d::AAPair<T>& res) {
      // out[tg] = col[tg] + alpha * (col[sr] - col[tg])
      const T* cb = col + b * P * C;
      const T* gb = gr + b * P * C;
      T* gcb = gc + b * P * C;
      T galpha = 0;
      for (int64_t k = 0; k < C; ++k) {
        const T g = gb[tg * C + k];
        gcb[tg * C + k] -= res.alpha * g;
        gcb[sr * C + k] += res.alpha * g;
        galpha += g * (cb[sr * C + k] - cb[tg * C + k]);
      }
      T* mine = bb + (int64_t)omp_get_thread_num() * Bp * V * 4;
      T* mj = mine + (pbi * V + res.vj) * 4;
      T* mk = mine + (pbi * V + res.vk) * 4;
      for (int q = 0; q < 4; ++q) {
        mj[q] += galpha * res.da[0][q];
        mk[q] += galpha * res.da[1][q];
      }
    });
  });
  return {gcol, buf.sum(0).view_as(pos)};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("rasterize_fwd", &rasterize_fwd, "rasterize forward (CPU)");
  m.def("rasterize_bwd", &rasterize_bwd, "rasterize backward (CPU)");
  m.def("interpolate_fwd", &interpolate_fwd, "interpolate forward (CPU)");
  m.def("interpolate_bwd", &interpolate_bwd, "interpolate backward (CPU)");
  m.def("texture_fwd", &texture_fwd, "texture forward (CPU)");
  m.def("texture_bwd", &texture_bwd, "texture backward (CPU)");
  m.def("antialias_fwd", &antialias_fwd, "antialias forward (CPU)");
  m.def("antialias_bwd", &antialias_bwd, "antialias backward (CPU)");
}
