// AdaGrad over index ranges of the parameter buffer, summing per-shard
// gradients in shard order (src/train.ts explains why the order is fixed).
// In native code because it runs on the main thread between minibatches,
// where every microsecond is serial time the workers wait for.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace rntn {

struct AdaGradRange {
  size_t start, end;  // [start, end) in the parameter buffer
  float lambda;       // L2 weight of the range's parameter group
};

// For i in each range: g = scale·Σ_s grads[s][i] + λ·θ_i; h_i += g²;
// θ_i −= lr·g / (√h_i + ε); grads[s][i] = 0. Returns false if a g was not
// finite (the caller stops training; the step is then meaningless).
inline bool adagradStep(float* params, float* history, float* const* grads, int shards, const AdaGradRange* ranges,
                        int nRanges, float scale, float lr, float eps) {
  float* g0 = grads[0];
  float poison = 0;  // becomes NaN when a g is NaN or ±∞: one test at the end instead of one per value
  for (int r = 0; r < nRanges; r++) {
    const size_t start = ranges[r].start, end = ranges[r].end;
    const float lambda = ranges[r].lambda;
    // Shards into the first buffer, in shard order; simple loops so each vectorises.
    for (int s = 1; s < shards; s++) {
      float* gs = grads[s];
#pragma omp simd
      for (size_t i = start; i < end; i++) {
        g0[i] += gs[i];
        gs[i] = 0;
      }
    }
#pragma omp simd reduction(+ : poison)
    for (size_t i = start; i < end; i++) {
      const float g = scale * g0[i] + lambda * params[i];
      poison += g * 0;
      const float h = history[i] + g * g;
      history[i] = h;
      params[i] -= lr * g / (std::sqrt(h) + eps);
      g0[i] = 0;
    }
  }
  return poison == 0;
}

}  // namespace rntn
