// Shared host/device macros for every avatar3d kernel source (mesh and Gaussian).
// Keep this tiny: only portability macros, no maths. Usable from C++ (g++) and CUDA (nvcc).
#pragma once

#if defined(__CUDACC__)
#define A3D_HD __host__ __device__ __forceinline__
#define A3D_DEVICE __device__ __forceinline__
#define A3D_GLOBAL __global__
#else
#define A3D_HD inline
#define A3D_DEVICE inline
#define A3D_GLOBAL
#endif

#if defined(__CUDACC__) || defined(__CUDA_ARCH__)
#define A3D_RESTRICT __restrict__
#else
#define A3D_RESTRICT __restrict__
#endif

// Integer ceil-div for launch sizes (host side).
#define A3D_DIV_UP(a, b) (((a) + (b) - 1) / (b))
