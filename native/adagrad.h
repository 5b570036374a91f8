// AdaGrad over index ranges of the parameter buffer, summing per-shard
// gradients in shard order (src/pool.ts explains why the order is fixed).
// In native code because it sits between every two minibatches: each pool
// worker runs it on its share of the parameters once all shards are done,
// and the others wait for the slowest share before the next batch.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "rntn.h"

namespace rntn {

struct AdaGradRange {
  size_t start, end;  // [start, end) in the parameter buffer
  float lambda;       // L2 weight of the range's parameter group
};

// One parameter's step from its summed gradient: g = scale·sum + λ·θ;
// h += g²; θ −= lr·g / (√h + ε). `poison` becomes NaN when g is NaN or ±∞.
inline void adagradValue(float& theta, float& history, float sum, float lambda, float scale, float lr, float eps, float& poison) {
  const float v = scale * sum + lambda * theta;
  poison += v * 0;
  const float h = history + v * v;
  history = h;
  theta -= lr * v / (std::sqrt(h) + eps);
}

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
    adagradValue(params[i], history[i], sum, lambda, scale, lr, eps, poison);
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

// The step of V and W's units [first, end) (rntn.h, unpackUnit), their
// gradient the sum of n packed weight gradients in order: what adagradStep
// does with the unpacked sum in a gradient buffer, byte for byte, without
// the buffer. Each unit is unpacked into `unit` (a slice's worth, in L1)
// and stepped from there, so the unpack's mirrored writes stay in L1 and
// nothing is written out, read back and zeroed. λ_V for the slices of V, λ_W
// for W. Returns false if a g was not finite.
inline bool adagradPackedStep(float* params, float* history, const float* const* packed, int n, const Dims& k, int first, int end, float lambdaV,
                              float lambdaW, float scale, float lr, float eps) {
  const int d = k.d;
  std::vector<float> unit(unitSize(d, 0)), sum(static_cast<size_t>(quadraticRows(d)));
  float poison = 0;
  for (int u = first; u < end; u++) {
    unpackUnit<false>(d, packed, n, u, unit.data(), sum.data());
    const size_t at = Layout(k).V + static_cast<size_t>(u) * unitSize(d, 0), size = unitSize(d, u);
    const float lambda = u < d ? lambdaV : lambdaW;
    float* theta = params + at;
    float* h = history + at;
    const float* g = unit.data();
#pragma omp simd reduction(+ : poison)
    for (size_t i = 0; i < size; i++) adagradValue(theta[i], h[i], g[i], lambda, scale, lr, eps, poison);
  }
  return poison == 0;
}

}  // namespace rntn
