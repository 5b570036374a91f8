// AdaGrad over index ranges of the parameter buffer, summing per-shard
// gradients in shard order (src/pool.ts explains why the order is fixed).
// In native code because it sits between every two minibatches: each pool
// worker runs it on its share of the parameters once all shards are done,
// and the others wait for the slowest share before the next batch.
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
// One range with Shards gradient buffers, summed in shard order
// ((g0 + g1) + g2) + … in the same pass as the update: a pass per shard into
// g0 moved g0 through memory once per shard. Shards is a template parameter
// so that the sum unrolls and the loop vectorises.
template <int Shards>
inline void adagradRange(float* params, float* history, float* const* grads, size_t start, size_t end, float lambda,
                         float scale, float lr, float eps, float& poison) {
  float* g[Shards];
  for (int s = 0; s < Shards; s++) g[s] = grads[s];
#pragma omp simd reduction(+ : poison)
  for (size_t i = start; i < end; i++) {
    float sum = g[0][i];
    g[0][i] = 0;
    for (int s = 1; s < Shards; s++) {
      sum += g[s][i];
      g[s][i] = 0;
    }
    const float v = scale * sum + lambda * params[i];
    poison += v * 0;
    const float h = history[i] + v * v;
    history[i] = h;
    params[i] -= lr * v / (std::sqrt(h) + eps);
  }
}

inline bool adagradStep(float* params, float* history, float* const* grads, int shards, const AdaGradRange* ranges,
                        int nRanges, float scale, float lr, float eps) {
  float poison = 0;  // becomes NaN when a g is NaN or ±∞: one test at the end instead of one per value
  for (int r = 0; r < nRanges; r++) {
    const size_t start = ranges[r].start, end = ranges[r].end;
    const float lambda = ranges[r].lambda;
    switch (shards) {
      case 1: adagradRange<1>(params, history, grads, start, end, lambda, scale, lr, eps, poison); break;
      case 2: adagradRange<2>(params, history, grads, start, end, lambda, scale, lr, eps, poison); break;
      case 3: adagradRange<3>(params, history, grads, start, end, lambda, scale, lr, eps, poison); break;
      case 4: adagradRange<4>(params, history, grads, start, end, lambda, scale, lr, eps, poison); break;
      default: {
        // More shards: fold them into the first buffer in shard order, then update from it.
        float* g0 = grads[0];
        for (int s = 1; s < shards; s++) {
          float* gs = grads[s];
#pragma omp simd
          for (size_t i = start; i < end; i++) {
            g0[i] += gs[i];
            gs[i] = 0;
          }
        }
        adagradRange<1>(params, history, grads, start, end, lambda, scale, lr, eps, poison);
      }
    }
  }
  return poison == 0;
}

}  // namespace rntn
