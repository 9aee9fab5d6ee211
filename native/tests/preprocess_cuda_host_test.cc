// preprocess_cuda_test.cu built for the host: the same cases and tolerances, with the kernels'
// source run on the CPU through the emulation of CUDA (cuda_emu.h) and its runtime subset. The
// GPU build of the same file (ctest preprocess_cuda) is what shows device rounding.
#include "cuda_emu.h"  // before any CUDA header
#include "preprocess_cuda_test.cu"
