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
  float poison = 0;  // becomes NaN when a g is NaN or ±∞: one test at the end instead of one per value
  for (int r = 0; r < nRanges; r++) {
    const float lambda = ranges[r].lambda;
    for (size_t i = ranges[r].start; i < ranges[r].end; i++) {
      float sum = 0;
      for (int s = 0; s < shards; s++) {
        sum += grads[s][i];
        grads[s][i] = 0;
      }
      const float g = scale * sum + lambda * params[i];
      poison += g * 0;
      history[i] += g * g;
      params[i] -= lr * g / (std::sqrt(history[i]) + eps);
    }
  }
  return poison == 0;
}

}  // namespace rntn
