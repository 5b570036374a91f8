// The RNTN's forward pass, loss and backward pass over a whole minibatch,
// written as DESIGN.md's "Batched form" so it can be checked line by line
// against docs/derivation.md. Everything here trusts its inputs: the N-API
// glue (addon.cpp) validates every array and index before calling in.
//
// Notation (docs/derivation.md): d hidden size, C classes, N nodes in the
// schedule, c = [x_left; x_right] (2d). All matrices are column-major with one
// column per node, so "column n" is node n's vector, contiguous in memory.
//
// Parameter buffer (src/model.ts, ParameterLayout): V, W, b, Ws, bs, L, each
// row-major as DESIGN.md shapes them. V [d][2d][2d] read row-major is
// Vf, a (2d²)×2d matrix whose row k·2d+i is V[k][i][:]; W [d][2d] follows it
// directly, so VW = [Vf; W] is one row-major (2d²+d)×2d matrix, i.e. a
// column-major 2d×(2d²+d) matrix with leading dimension 2d. The weight
// gradient is accumulated packed (upper triangle of ∂V[k], then ∂W; see
// quadraticFeatures) and unpacked into that layout once per call.
//
// The forward pass runs on the symmetrised tensor Vs[k] = V[k] + V[k]ᵀ
// instead of V: cᵀV[k]c = ½·cᵀVs[k]c, and the products Vs[k]c it computes are
// exactly what the error pass needs (∂(cᵀV[k]c)/∂c = Vs[k]c). Keeping them
// from the forward pass turns the error pass's (2d²+d)-deep GEMM into a
// 2d²-long contraction per node: two big GEMMs per node instead of three.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "activation.h"
#include "blas.h"

namespace rntn {

struct Dims {
  int d;          // hidden size
  int classes;    // C
  int vocab;      // rows of L
  bool leafTanh;  // x = tanh(L[w]) (CoreNLP) instead of x = L[w] (the paper)
};

// Offsets of each tensor in the parameter (and gradient) buffer; must match
// ParameterLayout in src/model.ts.
struct Layout {
  size_t V, W, b, Ws, bs, L, size;
  explicit Layout(const Dims& k) {
    const size_t d = k.d, c = k.classes;
    V = 0;
    W = V + 4 * d * d * d;
    b = W + 2 * d * d;
    Ws = b + d;
    bs = Ws + c * d;
    L = bs + c;
    size = L + static_cast<size_t>(k.vocab) * d;
  }
};

// A compiled minibatch (src/batch.ts, compileBatch). Nodes are numbered so
// that level 0 (the leaves) comes first and level l holds nodes whose
// children are all in earlier levels: levelStart[l] ≤ n < levelStart[l+1].
struct Schedule {
  const int32_t* left;   // child node index, -1 for a leaf
  const int32_t* right;  // child node index, -1 for a leaf
  const int32_t* word;   // row of L for a leaf, -1 for an internal node
  const int32_t* label;  // gold class, or -1 for a node that has none (no loss)
  const int32_t* levelStart;
  int nodes;
  int levels;  // levelStart has levels+1 entries
  // Dropout on the classifier's input (training only; 0 = none): node n's
  // unit q feeds Ws as m·x with m = 0 or 1/(1 − rate), drawn by dropoutKeeps
  // from (dropoutSeed, n·d + q), so a schedule always gets the same mask.
  double dropoutRate = 0;
  uint64_t dropoutSeed = 0;
  // Per-node weight of the loss term (nullptr: every labelled node weighs 1):
  // the loss is Σ_n weight[n]·(−log y_n[label_n]). The trainer uses it to
  // weigh each sentence's root more than its phrases (docs/training.md).
  const float* weight = nullptr;
  // Per-node target distribution (nullptr: the one-hot of label): C values a
  // node, column n for node n, replacing the one-hot at labelled nodes, so
  // the loss is Σ_n weight[n]·(−Σ_i t_i log y_n,i) and δs = w·((Σ_i t_i)·y − t)
  // (= w·(y − t) when t sums to 1). The trainer's distillation mixes the
  // gold label with teacher models' probabilities through it (docs/training.md).
  const float* target = nullptr;
  // Per-node weight β_n of a polarity term (nullptr, or 0 at a node: none
  // there). With an odd number of classes the middle one is neutral, the
  // lower ones negative and the upper ones positive, as the paper's binary
  // metric reads them; a node whose gold label is not neutral adds
  // weight[n]·β_n·(−log Σ_{c on gold's side} y_c), whose δs is
  // w·β_n·(y − q), q = y restricted to that side and renormalised. It trains
  // the split the binary metric scores, which the 5-class loss only reaches
  // through the single gold class; the trainer sets one β on roots and one on
  // the other nodes (docs/training.md).
  const float* polarity = nullptr;
};

// Whether unit `index` of a schedule keeps its value under dropout: a
// counter-based draw (splitmix64's finaliser on seed and index), so masks need
// no state, do not depend on which thread runs a schedule, and are the same
// in float and double (the gradient check sees the training mask).
inline bool dropoutKeeps(uint64_t seed, uint64_t index, double rate) {
  uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0) >= rate;
}

// Scratch memory, reused across calls so that training does not allocate per
// minibatch. One per thread: the native core has no shared mutable state.
template <typename T>
struct Workspace {
  std::vector<T> X;       // d × N activations
  std::vector<T> Y;       // C × N scores, then probabilities, then δs = y − t
  std::vector<T> G;       // d × N error reaching each node's activation
  std::vector<T> CinD;    // 3d × Nint: children [x_l; x_r], then δ, of every internal node (unless deferred)
  std::vector<T> TZ;      // (2d²+d) × Nint: [Vsf; W]·c per internal node (one level's worth without grad)
  std::vector<T> Q;       // rows × window: a band of [upper(c cᵀ); c] per internal node (quadraticFeatures)
  std::vector<T> dU;      // a schedule's packed weight gradient (packedWeightGradientSize), unpacked into ∂V and ∂W at the end
  std::vector<T> VsWt;    // [Vsf; W] transposed: column-major (2d²+d) × 2d
  std::vector<T> dC;      // 2d × B error sent to the children of a level
  std::vector<T> M;       // d × N dropout multipliers (0 or 1/(1 − rate)); unused without dropout
  std::vector<T> XM;      // d × N classifier input m ⊙ x under dropout
  std::vector<T> P;       // C × N polarity term's q (y on the gold label's side, renormalised); unused without it

  template <typename U>
  static U* sized(std::vector<U>& v, size_t n) {
    if (v.size() < n) v.resize(n);
    return v.data();
  }
};

// Bytes of Q built before their ∂V, ∂W product is accumulated: at d = 25
// ~48 nodes of a part's ~680 rows, so that each window's product stays
// within kSmallProduct (below) and Q is still in L2 when it runs. Measured
// with bench/compare-addons.js, 9 passes each: 128 KB windows made
// forward+backward 1.06× faster than the 512 KB ones before (every pass
// 1.04-1.08); 64 KB ran the same as 128 KB (1.00), and windows of as many
// nodes as kSmallProduct allows (58) 0.985×; 4 MB had been ~10 % slower
// than 512 KB. The window also bounds memory however big the schedule.
constexpr size_t kWeightGradientWindowBytes = size_t(128) << 10;

// Σ_i c_i·t_r[i] over i < n for R rows t_r = t + r·n, into out[r]. Each sum
// is taken in 8 lanes (lane l adds the terms i ≡ l mod 8 in increasing i),
// then the lanes pairwise: an order written out here, not left to the
// compiler, so that every instruction set (RNTN_VECTOR_CLONES) and vector
// width gives the same bytes. R rows at once keep R·8 independent sums in
// flight; one row at a time, each sum's final reduction was a chain of
// dependent adds, and levelPreactivation ran at ~520 ns per node at d = 25
// (SSE2, in isolation: 4 rows ~320 ns, and ~190 with the AVX2 clone).
template <int R, typename T>
inline void rowDots(int n, const T* c, const T* t, T* out) {
  constexpr int kLanes = 8;
  T lane[R][kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int r = 0; r < R; r++) {
#pragma omp simd
      for (int l = 0; l < kLanes; l++) lane[r][l] += c[i + l] * t[static_cast<size_t>(r) * n + i + l];
    }
  }
  for (int r = 0; r < R; r++) {
    T* v = lane[r];
    for (int m = i; m < n; m++) v[m - i] += c[m] * t[static_cast<size_t>(r) * n + m];
    out[r] = ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
  }
}

// y += a·x.
template <typename T>
inline void axpy(T* y, T a, const T* x, int n) {
#pragma omp simd
  for (int i = 0; i < n; i++) y[i] += a * x[i];
}

// Multiply-adds up to which OpenBLAS (0.3.21, SkylakeX kernels: this
// project's machines) multiplies without packing its operands, and faster
// than with packing for this model's shapes: in isolation, the forward
// product [Vsf; W]·c of a level of B = 16-112 nodes ran at 52-100 GFLOP/s as
// one GEMM and at 98-108 split into row chunks within this size; the weight
// gradient's NT product at 60-70 GFLOP/s over ~120 nodes, ~100 over 32-48.
// Elsewhere it is only a chunk size: results stay correct and deterministic.
constexpr double kSmallProduct = 1e6;

// tz = [Vsf; W]·c for a level of B nodes (rowsVW × B = (rowsVW × 2d)·(2d × B)),
// in chunks of rows that each stay within kSmallProduct when that leaves
// chunks of at least 176 rows (at B ≥ 128 smaller chunks measured slower
// than the whole product, 0.7-0.8×). How it is split depends only on B, so
// a schedule's bytes do not depend on who computes it.
template <typename T>
inline void forwardProduct(int rowsVW, int B, int d2, const T* VsWt, const T* c, T* tz) {
  int chunk = rowsVW;
  if (static_cast<double>(rowsVW) * B * d2 > kSmallProduct) {
    const int fits = static_cast<int>(kSmallProduct / (static_cast<double>(B) * d2)) / 16 * 16;
    if (fits >= 176) chunk = fits;
  }
  for (int first = 0; first < rowsVW; first += chunk) {
    gemm(false, false, std::min(chunk, rowsVW - first), B, d2, T(1), VsWt + first, rowsVW, c, d2, T(0), tz + first, rowsVW);
  }
}

// The per-level loops around the GEMMs read each node's Vs·c (5 KB at d =
// 25) once in the forward pass and once in the error pass. GCC builds those
// two loops for AVX2 as well as for the x86-64 baseline (SSE2) and picks one
// when the addon loads (target_clones; an ifunc, so Linux with glibc only).
// Both round alike: their sums' order is written out (rowDots, axpy) and
// CMakeLists.txt turns off fused multiply-adds, so a model's bytes do not
// depend on the CPU's instruction set. Measured in isolation at d = 25
// (levels of 8 nodes, Vs·c in L2): the AVX2 build of levelTensorError
// ~1.25× faster than SSE2. An AVX-512 clone was slower than AVX2 for
// rowDots (a guess at why: its 8 lanes fill half a register) and is not
// built.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(RNTN_NO_CLONES)
#define RNTN_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RNTN_VECTOR_CLONES
#endif

// z_j = ½·c_jᵀ(Vs c_j) + (W c_j) + b for the B nodes of a level (½cᵀVs[k]c = cᵀV[k]c).
template <typename T>
RNTN_VECTOR_CLONES void levelPreactivation(int d, int B, const T* c, const T* tz, const T* b, T* z) {
  const int d2 = 2 * d, rows = d * d2 + d;
  constexpr int kRows = 4;
  for (int j = 0; j < B; j++) {
    const T* cj = c + static_cast<size_t>(j) * d2;
    const T* t = tz + static_cast<size_t>(j) * rows;
    T* zj = z + static_cast<size_t>(j) * d;
    T quadratic[kRows];
    int q = 0;
    for (; q + kRows <= d; q += kRows) {
      rowDots<kRows>(d2, cj, t + static_cast<size_t>(q) * d2, quadratic);
      for (int r = 0; r < kRows; r++) zj[q + r] = T(0.5) * quadratic[r] + t[d * d2 + q + r] + b[q + r];
    }
    for (; q < d; q++) {
      rowDots<1>(d2, cj, t + static_cast<size_t>(q) * d2, quadratic);
      zj[q] = T(0.5) * quadratic[0] + t[d * d2 + q] + b[q];
    }
  }
}

// δ = g ⊙ (1 − x²) for the B nodes of a level; ∂b += δ.
template <typename T>
inline void levelDelta(int d, int B, const T* x, const T* g, T* delta, T* db) {
  for (int j = 0; j < B * d; j++) delta[j] = g[j] * (1 - x[j] * x[j]);
  for (int j = 0; j < B; j++)
    for (int q = 0; q < d; q++) db[q] += delta[static_cast<size_t>(j) * d + q];
}

// Rows of a Q column: the upper triangle of c cᵀ (c_i c_m for i ≤ m, row by
// row), then c itself. ∂V[k] = Σ δ_k c cᵀ is symmetric, so its upper triangle
// is all the weight gradient needs: half the GEMM of the full δ ⊗ c ⊗ c.
inline int quadraticRows(int d) { return d * (2 * d + 1) + 2 * d; }

// The weight gradient is computed in this many parts, each a band of Q's
// rows: the triangle rows of i in [first, end), plus c's rows (∂W) in the
// last. The parts write disjoint blocks of the packed weight gradient, so
// the training pool can run them on different threads (src/worker.ts): at
// d = 25 on SST a whole shard's weight gradient is ~0.4 ms, and the last one
// claimed in a batch was what the other worker waited for at the barrier.
constexpr int kWeightGradientParts = 2;

// Rows of Q before triangle row i: Σ_{i' < i} (2d − i').
inline int triangleRowsBefore(int d, int i) { return i * 2 * d - i * (i - 1) / 2; }

// The rows of Q in part p: triangle rows i ∈ [first, end), then c's 2d rows if `withC`.
struct QuadraticBand {
  int first, end;
  bool withC;
  int rows(int d) const { return triangleRowsBefore(d, end) - triangleRowsBefore(d, first) + (withC ? 2 * d : 0); }
};

// Part p's band: parts of about equal numbers of rows.
inline QuadraticBand quadraticBand(int d, int p) {
  const int d2 = 2 * d, total = quadraticRows(d);
  auto boundary = [&](int q) {
    if (q >= kWeightGradientParts) return d2;
    int i = 0;
    while (i < d2 && triangleRowsBefore(d, i) < static_cast<long long>(total) * q / kWeightGradientParts) i++;
    return i;
  };
  return {boundary(p), boundary(p + 1), p == kWeightGradientParts - 1};
}

// The band's Q columns of B consecutive internal nodes.
template <typename T>
inline void quadraticFeatures(int d, const QuadraticBand& band, int B, const T* c, T* q) {
  const int d2 = 2 * d, rows = band.rows(d);
  for (int j = 0; j < B; j++) {
    const T* cj = c + static_cast<size_t>(j) * d2;
    T* qj = q + static_cast<size_t>(j) * rows;
    for (int i = band.first; i < band.end; i++) {
      const T ci = cj[i];
      const int n = d2 - i;
#pragma omp simd
      for (int m = 0; m < n; m++) qj[m] = ci * cj[i + m];
      qj += n;
    }
    if (band.withC) std::copy_n(cj, d2, qj);
  }
}

// A schedule's packed weight gradient: for each part p, its band of
// Σ_n [upper(c_n c_nᵀ); c_n]·δ_nᵀ as a column-major band.rows(d) × d block
// (column k is ∂V[k]'s band and, in the last part, row k of ∂W), the parts'
// blocks one after another. Half the size of ∂V and ∂W, which it unpacks into.
inline size_t packedWeightGradientSize(int d) { return static_cast<size_t>(quadraticRows(d)) * d; }

// Where part p's block begins.
inline size_t packedPartOffset(int d, int p) {
  size_t offset = 0;
  for (int q = 0; q < p; q++) offset += static_cast<size_t>(quadraticBand(d, q).rows(d)) * d;
  return offset;
}

// The gradient of unit `unit` (prepareParameters' units: V[unit] for unit
// < d, W for unit d) from the sum of n packed weight gradients, taken in
// order (packed[0] + packed[1] + …): ∂V[k]_im and ∂V[k]_mi both get the
// sum's entry for (i, m) (the gradient is symmetric; the inverse of
// quadraticFeatures' packing), ∂W_kj that for c's row j of column k. Into
// `out`, the unit's values in the parameter layout (row-major 2d × 2d, or
// d × 2d), added (Accumulate) or written over. `sum` is scratch for one
// band's rows, needed only when n > 1.
template <bool Accumulate, typename T>
inline void unpackUnit(int d, const T* const* packed, int n, int unit, T* out, T* sum) {
  const int d2 = 2 * d;
  auto put = [](T& to, T value) { to = Accumulate ? to + value : value; };
  // Rows [from, from + rows) of column k of part p's block (`rowsInPart` rows
  // a column, at `partAt`), summed over the packed gradients in order; with
  // one packed gradient, read in place.
  auto summed = [&](size_t partAt, int rowsInPart, int k, int from, int rows) {
    const size_t at = partAt + static_cast<size_t>(k) * rowsInPart + from;
    if (n == 1) return packed[0] + at;
    std::copy_n(packed[0] + at, rows, sum);
    for (int s = 1; s < n; s++) {
      const T* u = packed[s] + at;
#pragma omp simd
      for (int t = 0; t < rows; t++) sum[t] += u[t];
    }
    return static_cast<const T*>(sum);
  };
  if (unit < d) {
    for (int p = 0; p < kWeightGradientParts; p++) {
      const QuadraticBand band = quadraticBand(d, p);
      const int rows = band.rows(d);
      const T* u = summed(packedPartOffset(d, p), rows, unit, 0, rows - (band.withC ? d2 : 0));
      for (int i = band.first; i < band.end; i++) {
        put(out[i * d2 + i], *u++);
        for (int m = i + 1; m < d2; m++, u++) {
          put(out[i * d2 + m], *u);
          put(out[m * d2 + i], *u);
        }
      }
    }
  } else {
    const int last = kWeightGradientParts - 1;
    const QuadraticBand band = quadraticBand(d, last);
    const int rows = band.rows(d);
    const size_t partAt = packedPartOffset(d, last);
    for (int k = 0; k < d; k++) {
      const T* c = summed(partAt, rows, k, rows - d2, d2);  // c's rows end the last band
#pragma omp simd
      for (int j = 0; j < d2; j++) put(out[k * d2 + j], c[j]);
    }
  }
}

// Values of unit `unit` (4d² for a slice of V, 2d² for W).
inline size_t unitSize(int d, int unit) { return static_cast<size_t>(unit < d ? 4 : 2) * d * d; }

// unpackUnit for the units [first, end), into ∂V and ∂W (dV, then dW right after it).
template <bool Accumulate, typename T>
inline void unpackWeightGradient(int d, const T* const* packed, int n, int first, int end, T* dV, T* sum) {
  for (int unit = first; unit < end; unit++) unpackUnit<Accumulate>(d, packed, n, unit, dV + static_cast<size_t>(unit) * unitSize(d, 0), sum);
}

// e_j += Σ_k δ_k·(Vs[k]c_j): the tensor's share of the error sent to the children.
template <typename T>
RNTN_VECTOR_CLONES void levelTensorError(int d, int B, const T* tz, const T* delta, T* e) {
  const int d2 = 2 * d, rows = d * d2 + d;
  for (int j = 0; j < B; j++) {
    const T* t = tz + static_cast<size_t>(j) * rows;
    const T* dj = delta + static_cast<size_t>(j) * d;
    T* ej = e + static_cast<size_t>(j) * d2;
    for (int q = 0; q < d; q++) axpy(ej, dj[q], t + static_cast<size_t>(q) * d2, d2);
  }
}

// The prepared parameters: [Vsf; W] with Vs[k] = V[k] + V[k]ᵀ, stored
// transposed (column-major (2d²+d) × 2d) so the forward GEMM is a plain NN
// product: OpenBLAS runs that 3-9× faster than the transposed one on narrow
// levels (2-14 nodes), which are most levels. Built once per parameter
// update, before any schedule runs on the new parameters.
inline size_t preparedSize(int d) { return static_cast<size_t>(2 * d * d + d) * 2 * d; }

// The prepared parameters are built in d + 1 units: unit q < d is Vs[q]'s
// rows, read from V[q] alone; unit d is W's rows, read from W alone. So the
// training pool's workers, each updating a whole number of units, build the
// units they have just updated and nothing else (src/pool.ts, denseShares).
inline int preparedUnits(int d) { return d + 1; }

// Units [first, end) of the prepared parameters into `VsWt` (preparedSize(d) values).
template <typename T>
void prepareParameters(const Dims& k, const T* params, T* VsWt, int first, int end) {
  const int d = k.d, d2 = 2 * k.d, rowsVW = d * d2 + d;
  const T* VW = params + Layout(k).V;
  // Slice by slice, so that V[q] (2d × 2d) stays in L1 while its column reads
  // stride through it; each write is a contiguous run of 2d values.
  for (int q = first; q < std::min(end, d); q++) {
    const T* Vk = VW + static_cast<size_t>(q) * d2 * d2;
    for (int j = 0; j < d2; j++) {
      T* col = VsWt + static_cast<size_t>(j) * rowsVW + static_cast<size_t>(q) * d2;
      for (int i = 0; i < d2; i++) col[i] = Vk[i * d2 + j] + Vk[j * d2 + i];
    }
  }
  if (first <= d && d < end) {
    const T* W = VW + static_cast<size_t>(d2) * d2 * d;  // row-major d × 2d, right after V
    for (int j = 0; j < d2; j++) {
      for (int q = 0; q < d; q++) VsWt[static_cast<size_t>(j) * rowsVW + d * d2 + q] = W[q * d2 + j];
    }
  }
}

// All of them into the workspace's own buffer (w.VsWt); returns it.
template <typename T>
const T* prepareParameters(const Dims& k, const T* params, Workspace<T>& w) {
  T* VsWt = Workspace<T>::sized(w.VsWt, preparedSize(k.d));
  prepareParameters(k, params, VsWt, 0, preparedUnits(k.d));
  return VsWt;
}

// What the weight gradient of a schedule's internal nodes is computed from:
// their children [x_l; x_r] (2d × internal, column-major) followed by their
// δ (d × internal). 3d values per internal node.
inline size_t weightGradientInputSize(int d, int internal) { return static_cast<size_t>(3) * d * internal; }

// Part `part` of one schedule's packed weight gradient (its block of
// `packed`, packedWeightGradientSize(d) values, written over): Σ_n δ_n ⊗
// (the part's band of [upper(c_n c_nᵀ); c_n]) as one GEMM per window of Q.
// It is the part of the backward pass with no ordering between nodes or
// levels, about a third of its FLOPs, and depends only on `inputs`
// (weightGradientInputSize(d, internal) values; see forwardBackwardPrepared),
// so the training pool can run it on whichever thread is free
// (src/worker.ts) without changing a byte: the windows are fixed by
// `internal` and the part alone. With no internal nodes the block is zeros.
template <typename T>
void packedWeightGradient(const Dims& k, int internal, const T* inputs, T* packed, Workspace<T>& w, int part) {
  const int d = k.d, d2 = 2 * k.d;
  const QuadraticBand band = quadraticBand(d, part);
  const int rows = band.rows(d);
  T* dU = packed + packedPartOffset(d, part);
  if (internal == 0) {
    std::fill_n(dU, static_cast<size_t>(rows) * d, T(0));
    return;
  }
  const T* Cin = inputs;
  const T* D = inputs + static_cast<size_t>(d2) * internal;
  const int window = std::min(internal, static_cast<int>(std::max<size_t>(16, kWeightGradientWindowBytes / (sizeof(T) * rows))));
  T* Q = Workspace<T>::sized(w.Q, static_cast<size_t>(rows) * window);
  for (int from = 0; from < internal; from += window) {
    const int cols = std::min(window, internal - from);
    quadraticFeatures(d, band, cols, Cin + static_cast<size_t>(from) * d2, Q);
    // The first window writes the block (β = 0: no zeroing pass first), the others add to it.
    gemm(false, true, rows, d, cols, T(1), Q, rows, D + static_cast<size_t>(from) * d, d, T(from == 0 ? 0 : 1), dU, rows);
  }
}

// Forward pass over `s` with the parameters `params` and their prepared form
// `VsWt` (prepareParameters); returns the summed loss −log y[label] (with
// targets, −Σ t log y; plus the polarity term) of every labelled node. When `probs` is given it
// receives the C class probabilities of every node (column n = node n). When
// `grad` is given, the gradient of that loss (unregularised) is *added* to
// it, same layout as `params`.
// With `deferred` (weightGradientInputSize(d, internal nodes of s) values),
// ∂V and ∂W are left out of grad and the inputs of packedWeightGradient are
// written there instead, for the caller to complete grad with.
template <typename T>
double forwardBackwardPrepared(const Dims& k, const T* params, const T* VsWt, T* grad, T* probs, const Schedule& s, Workspace<T>& w,
                               T* deferred = nullptr) {
  const int d = k.d, d2 = 2 * k.d, C = k.classes, N = s.nodes;
  const int rowsVW = d * d2 + d;  // rows of [Vf; W]: 2d² + d
  const Layout at(k);
  const T* VW = params + at.V;
  const T* b = params + at.b;
  const T* Ws = params + at.Ws;
  const T* bs = params + at.bs;
  const T* L = params + at.L;
  const int nLeaves = s.levelStart[1];
  const int nInternal = N - nLeaves;
  if (N == 0) return 0;

  T* X = Workspace<T>::sized(w.X, static_cast<size_t>(d) * N);
  T* Y = Workspace<T>::sized(w.Y, static_cast<size_t>(C) * N);
  // Children and δs are kept apart from the rest of the workspace: they are packedWeightGradient's inputs.
  T* inputs = deferred ? deferred : Workspace<T>::sized(w.CinD, weightGradientInputSize(d, nInternal));
  T* Cin = inputs;
  T* D = inputs + static_cast<size_t>(d2) * nInternal;
  int widest = 0;
  for (int l = 1; l < s.levels; l++) widest = std::max(widest, s.levelStart[l + 1] - s.levelStart[l]);
  // The error pass reuses every node's Vs·c, so with a gradient TZ keeps them all.
  const bool keepTZ = grad != nullptr;
  T* TZ = Workspace<T>::sized(w.TZ, static_cast<size_t>(rowsVW) * (keepTZ ? nInternal : widest));
  const T* W = VW + static_cast<size_t>(d2) * d2 * d;  // row-major d × 2d, right after V

  // Leaves: x = L[word] (or tanh of it).
  for (int n = 0; n < nLeaves; n++) {
    std::copy_n(L + static_cast<size_t>(s.word[n]) * d, d, X + static_cast<size_t>(n) * d);
  }
  if (k.leafTanh) tanhInPlace(X, nLeaves * d);

  // Internal nodes, a level at a time: z_k = cᵀV[k]c + (Wc)_k + b_k, x = tanh(z).
  for (int l = 1; l < s.levels; l++) {
    const int first = s.levelStart[l], B = s.levelStart[l + 1] - first;
    if (B == 0) continue;
    T* c = Cin + static_cast<size_t>(first - nLeaves) * d2;
    for (int j = 0; j < B; j++) {
      const int n = first + j;
      std::copy_n(X + static_cast<size_t>(s.left[n]) * d, d, c + static_cast<size_t>(j) * d2);
      std::copy_n(X + static_cast<size_t>(s.right[n]) * d, d, c + static_cast<size_t>(j) * d2 + d);
    }
    // TZ = [Vsf; W] · c: rows k·2d+i hold (Vs[k]c)_i, rows 2d²+k hold (Wc)_k.
    T* tzLevel = TZ + static_cast<size_t>(keepTZ ? first - nLeaves : 0) * rowsVW;
    forwardProduct(rowsVW, B, d2, VsWt, static_cast<const T*>(c), tzLevel);
    T* x = X + static_cast<size_t>(first) * d;
    levelPreactivation(d, B, static_cast<const T*>(c), static_cast<const T*>(tzLevel), b, x);
    tanhInPlace(x, B * d);
  }

  // Classifier on every node: y = softmax(Ws x̃ + bs), loss −log y[label],
  // where x̃ = x, or m ⊙ x under dropout (the composition above always sees x).
  const T* Xc = X;
  T* M = nullptr;
  if (s.dropoutRate > 0) {
    M = Workspace<T>::sized(w.M, static_cast<size_t>(d) * N);
    T* XM = Workspace<T>::sized(w.XM, static_cast<size_t>(d) * N);
    const T scale = T(1 / (1 - s.dropoutRate));
    for (size_t i = 0; i < static_cast<size_t>(d) * N; i++) {
      M[i] = dropoutKeeps(s.dropoutSeed, i, s.dropoutRate) ? scale : T(0);
      XM[i] = M[i] * X[i];
    }
    Xc = XM;
  }
  gemm(true, false, C, N, d, T(1), Ws, d, Xc, d, T(0), Y, C);
  const int neutral = C / 2;  // the polarity term's middle class (C odd; the addon checks)
  T* P = s.polarity ? Workspace<T>::sized(w.P, static_cast<size_t>(C) * N) : nullptr;
  double loss = 0;
  for (int n = 0; n < N; n++) {
    T* y = Y + static_cast<size_t>(n) * C;
    T top = -INFINITY;
    for (int i = 0; i < C; i++) {
      y[i] += bs[i];
      top = std::max(top, y[i]);
    }
    T sum = 0;
    for (int i = 0; i < C; i++) sum += std::exp(y[i] - top);
    // log-sum-exp form: −log y[t] = log Σ e^{s_i} − s_t, exact where y[t] underflows.
    const int label = s.label[n];
    if (label >= 0) {
      const double w = s.weight ? s.weight[n] : 1.0;
      const T logSum = std::log(sum) + top;
      if (s.target) {
        const float* t = s.target + static_cast<size_t>(n) * C;
        for (int i = 0; i < C; i++) loss += w * t[i] * static_cast<double>(logSum - y[i]);
      } else {
        loss += w * static_cast<double>(logSum - y[label]);
      }
      if (P && label != neutral && s.polarity[n] > 0) {
        // Polarity: −log Σ_{c∈S} y_c = log Σ e^{s_i} − log Σ_{c∈S} e^{s_c}, each sum taken
        // from its own top so that q stays exact when the whole side underflows in y.
        // q is read back only at such nodes (the backward pass below).
        T* q = P + static_cast<size_t>(n) * C;
        std::fill_n(q, C, T(0));
        const int from = label < neutral ? 0 : neutral + 1, to = label < neutral ? neutral : C;
        T topSide = -INFINITY, sumSide = 0;
        for (int i = from; i < to; i++) topSide = std::max(topSide, y[i]);
        for (int i = from; i < to; i++) sumSide += q[i] = std::exp(y[i] - topSide);
        for (int i = from; i < to; i++) q[i] /= sumSide;
        loss += w * s.polarity[n] * static_cast<double>(logSum - (std::log(sumSide) + topSide));
      }
    }
    for (int i = 0; i < C; i++) y[i] = std::exp(y[i] - top) / sum;
  }
  if (probs) std::copy_n(Y, static_cast<size_t>(C) * N, probs);
  if (!grad) return loss;

  // Backward. δs = w·(y − t); ∂Ws += δs xᵀ; ∂bs += δs; g = Wsᵀ δs.
  for (int n = 0; n < N; n++) {
    T* y = Y + static_cast<size_t>(n) * C;
    if (s.label[n] < 0) {
      std::fill_n(y, C, T(0));
    } else {
      // The polarity term's δs, β·(y − q), is taken first (into q's place): it needs y itself.
      // Neutral nodes have no polarity term, nor nodes where its weight is 0.
      const int label = s.label[n];
      T* polarity = P && label != neutral && s.polarity[n] > 0 ? P + static_cast<size_t>(n) * C : nullptr;
      if (polarity) {
        const T beta = T(s.polarity[n]);
        for (int i = 0; i < C; i++) polarity[i] = beta * (y[i] - polarity[i]);
      }
      if (s.target) {
        const float* t = s.target + static_cast<size_t>(n) * C;
        T total = 0;
        for (int i = 0; i < C; i++) total += T(t[i]);
        for (int i = 0; i < C; i++) y[i] = total * y[i] - T(t[i]);
      } else {
        y[label] -= 1;
      }
      if (polarity) {
        for (int i = 0; i < C; i++) y[i] += polarity[i];
      }
      if (s.weight) {
        const T w = s.weight[n];
        for (int i = 0; i < C; i++) y[i] *= w;
      }
    }
    for (int i = 0; i < C; i++) grad[at.bs + i] += y[i];
  }
  // ∂Ws is C×d row-major = d×C column-major: += X̃ · δsᵀ.
  gemm(false, true, d, C, N, T(1), Xc, d, Y, C, T(1), grad + at.Ws, d);
  T* G = Workspace<T>::sized(w.G, static_cast<size_t>(d) * N);
  gemm(false, false, d, N, C, T(1), Ws, d, Y, C, T(0), G, d);
  if (M) {
    for (size_t i = 0; i < static_cast<size_t>(d) * N; i++) G[i] *= M[i];  // ∂x̃/∂x = m
  }

  T* dC = Workspace<T>::sized(w.dC, static_cast<size_t>(d2) * widest);
  T* db = grad + at.b;
  for (int l = s.levels - 1; l >= 1; l--) {
    const int first = s.levelStart[l], B = s.levelStart[l + 1] - first;
    if (B == 0) continue;
    const int i0 = first - nLeaves;  // internal index of the level's first node
    T* delta = D + static_cast<size_t>(i0) * d;
    levelDelta(d, B, static_cast<const T*>(X + static_cast<size_t>(first) * d), static_cast<const T*>(G + static_cast<size_t>(first) * d), delta, db);
    // Error to the children: δc = Wᵀδ + Σ_k δ_k Vs[k]c, the Vs[k]c kept from the forward pass.
    // W row-major d × 2d is column-major 2d × d (ld 2d), i.e. Wᵀ as it stands.
    gemm(false, false, d2, B, d, T(1), W, d2, static_cast<const T*>(delta), d, T(0), dC, d2);
    levelTensorError(d, B, static_cast<const T*>(TZ + static_cast<size_t>(i0) * rowsVW), static_cast<const T*>(delta), dC);
    for (int j = 0; j < B; j++) {
      const int n = first + j;
      const T* e = dC + static_cast<size_t>(j) * d2;
      T* gl = G + static_cast<size_t>(s.left[n]) * d;
      T* gr = G + static_cast<size_t>(s.right[n]) * d;
      for (int q = 0; q < d; q++) gl[q] += e[q];
      for (int q = 0; q < d; q++) gr[q] += e[d + q];
    }
  }
  if (!deferred) {
    T* packed = Workspace<T>::sized(w.dU, packedWeightGradientSize(d));
    for (int part = 0; part < kWeightGradientParts; part++) packedWeightGradient(k, nInternal, static_cast<const T*>(inputs), packed, w, part);
    const T* sources[] = {packed};
    unpackWeightGradient<true>(d, sources, 1, 0, preparedUnits(d), grad + at.V, static_cast<T*>(nullptr));
  }

  // Leaves: ∂L[word] += g (times tanh' when the leaf activation is tanh).
  T* dL = grad + at.L;
  for (int n = 0; n < nLeaves; n++) {
    const T* g = G + static_cast<size_t>(n) * d;
    const T* x = X + static_cast<size_t>(n) * d;
    T* row = dL + static_cast<size_t>(s.word[n]) * d;
    if (k.leafTanh) {
      for (int q = 0; q < d; q++) row[q] += g[q] * (1 - x[q] * x[q]);
    } else {
      for (int q = 0; q < d; q++) row[q] += g[q];
    }
  }
  return loss;
}

// forwardBackwardPrepared on freshly prepared parameters.
template <typename T>
double forwardBackward(const Dims& k, const T* params, T* grad, T* probs, const Schedule& s, Workspace<T>& w) {
  return forwardBackwardPrepared(k, params, prepareParameters(k, params, w), grad, probs, s, w);
}

}  // namespace rntn
