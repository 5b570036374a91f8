// tanh for the composition and leaf activations.
//
// libm's tanhf does not vectorise and was ~20 % of a training epoch in the
// prototype (DESIGN.md, "Performance model"). fastTanh is branch-free so GCC
// turns the loop in tanhInPlace into SIMD code; that takes -fno-trapping-math
// (CMakeLists.txt), without which GCC will not if-convert the selects. Its relative error is below
// 2e-7 (checked against tanh in double by test/native.test.ts through the
// addon's tanhMaxRelativeError). The double version, used by the gradient check,
// is libm's tanh: exactness matters there, speed does not.
#pragma once

#include <cmath>
#include <cstdint>

namespace rntn {

// e^x for x in [-87, 88], about 1 ulp. Range reduction x = n·ln2 + r with
// |r| ≤ ln2/2, Taylor series to r⁷ (the r⁸ term is below 6e-9), then 2ⁿ put
// straight into the exponent bits.
inline float expForTanh(float x) {
  x = (x == x) ? x : 0.0f;  // NaN is handled by the caller; keep the int conversion defined
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float kRound = 12582912.0f;  // 1.5·2²³: adding and subtracting it rounds to an integer
  float n = (x * 1.44269504088896341f + kRound) - kRound;
  float r = x - n * 0.693145751953125f;  // ln2 split in two so n·ln2_hi is exact
  r = r - n * 1.428606765330187045e-06f;
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  return p * __builtin_bit_cast(float, bits);  // not memcpy: GCC will not vectorise through it
}

// tanh(x): an odd Taylor series below |x| = 0.4 (where 1 − 2/(e²ˣ+1) would
// cancel), 1 − 2/(e^{2|x|}+1) above it. NaN goes through the series branch and
// so stays NaN, which the trainer's non-finite guard relies on.
inline float fastTanh(float x) {
  float a = std::fabs(x);
  float a2 = a * a;
  float series =
      a + a * a2 *
              (-1.0f / 3 + a2 * (2.0f / 15 + a2 * (-17.0f / 315 + a2 * (62.0f / 2835 + a2 * (-1382.0f / 155925 + a2 * (21844.0f / 6081075))))));
  float e = expForTanh(2.0f * (a < 20.0f ? a : 20.0f));
  float tail = 1.0f - 2.0f / (e + 1.0f);
  float t = a >= 0.4f ? tail : series;
  return std::copysign(t, x);
}

inline void tanhInPlace(float* x, int n) {
#pragma omp simd
  for (int i = 0; i < n; i++) x[i] = fastTanh(x[i]);
}

inline void tanhInPlace(double* x, int n) {
  for (int i = 0; i < n; i++) x[i] = std::tanh(x[i]);
}

}  // namespace rntn
