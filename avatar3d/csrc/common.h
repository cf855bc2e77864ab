// Shared host/device macros for every avatar3d kernel source (mesh and Gaussian).
// Keep this tiny: portability macros and bit tricks, no rendering maths. Usable from C++ (g++) and
// CUDA (nvcc).
#pragma once

#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define A3D_HD __host__ __device__ __forceinline__
#define A3D_DEVICE __device__ __forceinline__
#define A3D_GLOBAL __global__
#else
#define A3D_HD inline
#define A3D_DEVICE inline
#define A3D_GLOBAL
#endif

// Host code that must be inlined (e.g. into the CPU kernels' SIMD loops: a call, or a struct passed
// through memory, stops GCC from vectorising them).
#if defined(__GNUC__)
#define A3D_FORCE_INLINE inline __attribute__((always_inline))
#else
#define A3D_FORCE_INLINE inline
#endif

#if defined(__CUDACC__) || defined(__CUDA_ARCH__)
#define A3D_RESTRICT __restrict__
#else
#define A3D_RESTRICT __restrict__
#endif

// Integer ceil-div for launch sizes (host side).
#define A3D_DIV_UP(a, b) (((a) + (b) - 1) / (b))

namespace a3d {

// Float -> unsigned int with the same order as the floats (negatives flipped, the sign bit set on
// the rest), for radix sorts and atomic-min keys. -0 sorts just before +0 (callers that want them
// equal pass 0.f for both).
A3D_HD uint32_t float_order_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

}  // namespace a3d
