// N-API glue: turns JavaScript arguments into the plain pointers rntn.h works
// on, after checking every one of them. Nothing a caller passes may make the
// math read or write out of bounds, so every length, type and index is
// validated here and a bad one becomes a JavaScript TypeError/RangeError.
//
// The addon is context-aware (Napi::Addon): it has no mutable statics, and
// each Workspace owns its scratch memory, so the main thread and any number of
// worker threads can use it at once.
#include <napi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <new>
#include <initializer_list>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "adagrad.h"
#include "rntn.h"

namespace {

using rntn::Dims;
using rntn::Layout;
using rntn::Schedule;

// Largest hidden size accepted: keeps 4d³ and every BLAS dimension well
// inside int, and no real model comes near it.
constexpr int kMaxDim = 512;
constexpr int kMaxClasses = 1 << 16;

[[noreturn]] void throwType(Napi::Env env, const std::string& msg) { throw Napi::TypeError::New(env, msg); }
[[noreturn]] void throwRange(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

// A typed array argument, as a pointer and a length, after its type is checked.
template <typename T>
struct Span {
  T* data = nullptr;
  size_t length = 0;
};

Napi::TypedArray typedArrayArg(const Napi::Value& v, const std::string& name) {
  if (!v.IsTypedArray()) throwType(v.Env(), name + " must be a typed array");
  return v.As<Napi::TypedArray>();
}

template <typename T>
Span<T> spanOf(const Napi::TypedArray& a) {
  // napi_get_typedarray_info rather than a.ArrayBuffer(): the latter refuses
  // typed arrays over a SharedArrayBuffer, which is where the trainer keeps
  // parameters. A detached buffer reports length 0; callers compare lengths.
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  napi_status status = napi_get_typedarray_info(a.Env(), a, &type, &length, &data, nullptr, nullptr);
  if (status != napi_ok) throw Napi::Error::New(a.Env(), "cannot read a typed array argument");
  Span<T> s;
  s.length = data ? length : 0;
  s.data = s.length ? static_cast<T*>(data) : nullptr;
  return s;
}

Span<const int32_t> int32Arg(const Napi::Value& v, const std::string& name) {
  Napi::TypedArray a = typedArrayArg(v, name);
  if (a.TypedArrayType() != napi_int32_array) throwType(v.Env(), name + " must be an Int32Array");
  Span<int32_t> s = spanOf<int32_t>(a);
  return {s.data, s.length};
}

// Whether x is an integer in [lo, hi] (never for NaN): how every count, size
// and index the addon is handed as a number is checked.
bool isIntegerIn(double x, double lo, double hi) { return x >= lo && x <= hi && x == std::floor(x); }

int intProperty(const Napi::Object& o, const char* key, int lo, int hi) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throwType(o.Env(), std::string("dims.") + key + " must be a number");
  double x = v.As<Napi::Number>().DoubleValue();
  if (!isIntegerIn(x, lo, hi)) {
    throwRange(o.Env(), std::string("dims.") + key + " must be an integer in [" + std::to_string(lo) + ", " +
                            std::to_string(hi) + "], got " + v.ToString().Utf8Value());
  }
  return static_cast<int>(x);
}

Dims dimsArg(const Napi::Value& v) {
  if (!v.IsObject()) throwType(v.Env(), "dims must be an object {dim, classes, vocab, leafTanh}");
  Napi::Object o = v.As<Napi::Object>();
  Dims k;
  k.d = intProperty(o, "dim", 1, kMaxDim);
  k.classes = intProperty(o, "classes", 2, kMaxClasses);
  k.vocab = intProperty(o, "vocab", 1, std::numeric_limits<int32_t>::max());
  Napi::Value leaf = o.Get("leafTanh");
  if (!leaf.IsBoolean()) throwType(v.Env(), "dims.leafTanh must be a boolean");
  k.leafTanh = leaf.As<Napi::Boolean>().Value();
  return k;
}

// A schedule copied out of its typed arrays. The math indexes memory with
// these integers, so they are validated on a private copy: the caller's arrays
// may sit in a SharedArrayBuffer another thread writes, or share memory with
// the gradient this call writes, and either could change an index after it
// was checked. (A copy costs 5 integers per node; a node costs ~10⁵ flops.)
struct ScheduleCopy {
  std::vector<int32_t> left, right, word, label, levelStart;
  std::vector<float> weight;  // empty: every node weighs 1
  std::vector<float> target;  // empty: the one-hot of each node's label
  std::vector<float> polarity;  // empty: no polarity term
  double dropoutRate = 0;
  uint64_t dropoutSeed = 0;

  Schedule view() const {
    Schedule s{left.data(), right.data(), word.data(), label.data(), levelStart.data(), static_cast<int>(left.size()),
               static_cast<int>(levelStart.size()) - 1};
    s.dropoutRate = dropoutRate;
    s.dropoutSeed = dropoutSeed;
    s.polarity = polarity.empty() ? nullptr : polarity.data();
    s.weight = weight.empty() ? nullptr : weight.data();
    s.target = target.empty() ? nullptr : target.data();
    return s;
  }
};

// Element by element, each a single 32-bit load: another thread may be
// writing the array (a SharedArrayBuffer), and a byte-wise memmove (ASan's
// interceptor does one) could then read half of an old value and half of a
// new one, a number neither thread wrote.
template <typename T>
std::vector<T> copyOf(Napi::Env env, const Span<const T>& s) {
  static_assert(sizeof(T) == 4, "schedule arrays hold 32-bit values");
  try {
    std::vector<T> out(s.length);
    for (size_t i = 0; i < s.length; i++) __atomic_load(&s.data[i], &out[i], __ATOMIC_RELAXED);
    return out;
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "out of memory copying a schedule of " + std::to_string(s.length) + " entries");
  }
}

// Checks that the schedule is a forest the math can run in order: level 0
// holds exactly the leaves with in-range word ids; a node of level l ≥ 1 has
// both children in earlier levels (so no cycle and no forward reference can
// be expressed); labels are -1 or a class; weights and targets are finite and ≥ 0.
ScheduleCopy scheduleArg(const Napi::Value& v, const Dims& k) {
  Napi::Env env = v.Env();
  if (!v.IsObject()) throwType(env, "schedule must be an object {left, right, word, label, levelStart}");
  Napi::Object o = v.As<Napi::Object>();
  ScheduleCopy c;
  // Each array is copied as soon as it is read: a getter on a later property
  // cannot change what an earlier one held.
  auto copyArray = [&](const char* key, std::vector<int32_t>& into) {
    const auto a = int32Arg(o.Get(key), std::string("schedule.") + key);
    if (a.length > static_cast<size_t>(std::numeric_limits<int32_t>::max() / 2)) throwRange(env, "schedule has too many nodes");
    into = copyOf(env, a);
  };
  copyArray("left", c.left);
  copyArray("right", c.right);
  copyArray("word", c.word);
  copyArray("label", c.label);
  copyArray("levelStart", c.levelStart);
  const std::vector<int32_t>&left = c.left, &right = c.right, &word = c.word, &label = c.label, &levelStart = c.levelStart;
  const size_t N = left.size();
  if (right.size() != N || word.size() != N || label.size() != N) {
    throwRange(env, "schedule.left, right, word and label must have the same length (" + std::to_string(N) + ", " +
                        std::to_string(right.size()) + ", " + std::to_string(word.size()) + ", " +
                        std::to_string(label.size()) + ")");
  }
  if (levelStart.size() < 2) throwRange(env, "schedule.levelStart needs at least 2 entries (level 0 is the leaves)");
  const int levels = static_cast<int>(levelStart.size() - 1);
  if (levelStart[0] != 0) throwRange(env, "schedule.levelStart[0] must be 0");
  for (int l = 0; l < levels; l++) {
    if (levelStart[l + 1] < levelStart[l]) {
      throwRange(env, "schedule.levelStart must be non-decreasing (entry " + std::to_string(l + 1) + ")");
    }
  }
  if (static_cast<size_t>(levelStart[levels]) != N) {
    throwRange(env, "schedule.levelStart must end at the node count " + std::to_string(N) + ", got " +
                        std::to_string(levelStart[levels]));
  }
  for (int l = 0; l < levels; l++) {
    for (int32_t n = levelStart[l]; n < levelStart[l + 1]; n++) {
      // Built only for a message: this loop runs over every node of every training shard.
      const auto at = [n, l] { return " of node " + std::to_string(n) + " (level " + std::to_string(l) + ")"; };
      if (label[n] < -1 || label[n] >= k.classes) {
        throwRange(env, "label " + std::to_string(label[n]) + at() + " must be -1 or in [0, " +
                            std::to_string(k.classes) + ")");
      }
      if (l == 0) {
        if (left[n] != -1 || right[n] != -1) throwRange(env, "children" + at() + " must be -1: level 0 holds leaves");
        if (word[n] < 0 || word[n] >= k.vocab) {
          throwRange(env, "word id " + std::to_string(word[n]) + at() + " must be in [0, " + std::to_string(k.vocab) + ")");
        }
      } else {
        if (word[n] != -1) throwRange(env, "word id" + at() + " must be -1: only level 0 holds leaves");
        const int32_t limit = levelStart[l];
        for (int32_t child : {left[n], right[n]}) {
          if (child < 0 || child >= limit) {
            throwRange(env, "child " + std::to_string(child) + at() + " must be a node of an earlier level, in [0, " +
                                std::to_string(limit) + ")");
          }
        }
      }
    }
  }
  // schedule.dropout = {rate, seed}: optional, training only (rntn.h, Schedule).
  Napi::Value dropout = o.Get("dropout");
  if (!dropout.IsUndefined()) {
    if (!dropout.IsObject()) throwType(env, "schedule.dropout must be an object {rate, seed}");
    Napi::Object dr = dropout.As<Napi::Object>();
    Napi::Value rate = dr.Get("rate"), seed = dr.Get("seed");
    if (!rate.IsNumber() || !seed.IsNumber()) throwType(env, "schedule.dropout.rate and .seed must be numbers");
    const double r = rate.As<Napi::Number>().DoubleValue(), sd = seed.As<Napi::Number>().DoubleValue();
    if (!(r >= 0 && r < 1)) throwRange(env, "schedule.dropout.rate must be in [0, 1), got " + std::to_string(r));
    if (!isIntegerIn(sd, 0, 9007199254740991.0)) throwRange(env, "schedule.dropout.seed must be an integer in [0, 2^53)");
    c.dropoutRate = r;
    c.dropoutSeed = static_cast<uint64_t>(sd);
  }
  // The scalar that schedule.polarity replaced (one weight for every node):
  // rejected, because ignoring it would silently train without the term.
  if (!o.Get("polarityWeight").IsUndefined()) {
    throwType(env, "schedule.polarityWeight is no longer read: give schedule.polarity, a Float32Array with the term's weight at each node");
  }
  // schedule.weight, schedule.target, schedule.polarity = Float32Array:
  // optional, the loss weight of each node, its target distribution and its
  // polarity term's weight (rntn.h, Schedule).
  auto copyFloats = [&](const char* key, size_t perNode, std::vector<float>& into) {
    Napi::Value value = o.Get(key);
    if (value.IsUndefined()) return;
    const std::string name = std::string("schedule.") + key;
    Napi::TypedArray a = typedArrayArg(value, name);
    if (a.TypedArrayType() != napi_float32_array) throwType(env, name + " must be a Float32Array");
    Span<float> f = spanOf<float>(a);
    into = copyOf(env, Span<const float>{f.data, f.length});
    if (into.size() != N * perNode) {
      const std::string per = perNode == 1 ? std::string("one entry") : std::to_string(perNode) + " entries";
      throwRange(env, name + " must have " + per + " per node (" + std::to_string(N * perNode) + "), got " +
                          std::to_string(into.size()));
    }
    for (size_t i = 0; i < into.size(); i++) {
      if (!(std::isfinite(into[i]) && into[i] >= 0)) {
        throwRange(env, name + "[" + std::to_string(i) + "] must be finite and non-negative, got " + std::to_string(into[i]));
      }
    }
  };
  copyFloats("weight", 1, c.weight);
  copyFloats("target", static_cast<size_t>(k.classes), c.target);
  copyFloats("polarity", 1, c.polarity);
  if (!c.polarity.empty() && k.classes % 2 == 0) {
    throwRange(env, "schedule.polarity needs an odd number of classes (the middle one is neutral), the model has " + std::to_string(k.classes));
  }
  return c;
}

bool overlaps(const void* a, size_t aBytes, const void* b, size_t bBytes) {
  auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return aBytes && bBytes && pa < pb + bBytes && pb < pa + aBytes;
}

// A Float32Array argument, of any length.
Span<float> float32Arg(Napi::Env env, const Napi::Value& v, const std::string& name) {
  Napi::TypedArray a = typedArrayArg(v, name);
  if (a.TypedArrayType() != napi_float32_array) throwType(env, name + " must be a Float32Array");
  return spanOf<float>(a);
}

// A Float32Array argument of exactly `want` values.
Span<float> float32Arg(Napi::Env env, const Napi::Value& v, const std::string& name, size_t want) {
  Span<float> span = float32Arg(env, v, name);
  if (span.length != want) throwRange(env, name + " has " + std::to_string(span.length) + " values, dims need " + std::to_string(want));
  return span;
}

// `count` number arguments from info[first] on (`names` for the error).
std::vector<double> numberArgs(Napi::Env env, const Napi::CallbackInfo& info, size_t first, size_t count, const std::string& names) {
  std::vector<double> numbers(count);
  for (size_t i = 0; i < count; i++) {
    if (!info[first + i].IsNumber()) throwType(env, names + " must be numbers");
    numbers[i] = info[first + i].As<Napi::Number>().DoubleValue();
  }
  return numbers;
}

// A buffer for the prepared parameters of dims k (rntn.h, preparedSize).
Span<float> preparedArg(Napi::Env env, const Napi::Value& v, const Dims& k) { return float32Arg(env, v, "prepared", rntn::preparedSize(k.d)); }

// The packed weight gradients `values` (elementsArg's), each checked, none
// sharing memory with the buffers the call writes.
std::vector<const float*> packedArgs(Napi::Env env, const std::vector<Napi::Value>& values, const Dims& k, std::initializer_list<Span<float>> written) {
  std::vector<const float*> packed;
  for (size_t s = 0; s < values.size(); s++) {
    const std::string name = "packed[" + std::to_string(s) + "]";
    Span<float> p = float32Arg(env, values[s], name, rntn::packedWeightGradientSize(k.d));
    for (const Span<float>& out : written)
      if (overlaps(p.data, p.length * 4, out.data, out.length * 4)) throwRange(env, name + " shares memory with a buffer the call writes");
    packed.push_back(p.data);
  }
  return packed;
}

// A hidden size given as a number (the size functions' argument).
int dimNumberArg(Napi::Env env, const Napi::Value& v) {
  if (!v.IsNumber()) throwType(env, "dim must be a number");
  const double dim = v.As<Napi::Number>().DoubleValue();
  if (!isIntegerIn(dim, 1, kMaxDim)) throwRange(env, "dim must be an integer in [1, " + std::to_string(kMaxDim) + "]");
  return static_cast<int>(dim);
}

// Units [first, end) of V and W (rntn.h, preparedUnits): integers, in order, at most dim + 1.
std::pair<int, int> unitRangeArg(Napi::Env env, const Napi::Value& first, const Napi::Value& end, const Dims& k) {
  const int units = rntn::preparedUnits(k.d);
  double range[2];
  const Napi::Value* given[2] = {&first, &end};
  for (int i = 0; i < 2; i++) {
    if (!given[i]->IsNumber()) throwType(env, "first and end must be numbers");
    range[i] = given[i]->As<Napi::Number>().DoubleValue();
    if (!isIntegerIn(range[i], 0, units)) throwRange(env, "first and end must be integers in [0, " + std::to_string(units) + "]");
  }
  if (range[0] > range[1]) throwRange(env, "first must not be after end");
  return {static_cast<int>(range[0]), static_cast<int>(range[1])};
}

// The elements of an array argument, read before any raw pointer is taken:
// reading one may run a getter (JavaScript that could detach a buffer).
std::vector<Napi::Value> elementsArg(Napi::Env env, const Napi::Value& v, const std::string& what) {
  if (!v.IsArray()) throwType(env, what + " must be an array of Float32Arrays");
  Napi::Array array = v.As<Napi::Array>();
  std::vector<Napi::Value> values;
  for (uint32_t i = 0; i < array.Length(); i++) values.push_back(array.Get(i));
  return values;
}

// What unpackWeightGradients and adagradPackedStep are handed besides their
// buffers: packed weight gradients (at least one, elements not yet checked),
// the dims, and a range of units.
struct PackedUnits {
  std::vector<Napi::Value> packed;
  Dims k;
  int first, end;
};

PackedUnits packedUnitsArgs(Napi::Env env, const Napi::Value& packed, const Napi::Value& dims, const Napi::Value& first, const Napi::Value& end) {
  PackedUnits a{elementsArg(env, packed, "packed"), dimsArg(dims), 0, 0};
  std::tie(a.first, a.end) = unitRangeArg(env, first, end, a.k);
  if (a.packed.empty()) throwRange(env, "packed must hold at least one packed weight gradient");
  return a;
}

class WorkspaceWrap : public Napi::ObjectWrap<WorkspaceWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Workspace",
                       {InstanceMethod<&WorkspaceWrap::ForwardBackward>("forwardBackward"),
                        InstanceMethod<&WorkspaceWrap::ForwardBackwardShards>("forwardBackwardShards"),
                        InstanceMethod<&WorkspaceWrap::PackedWeightGradient>("packedWeightGradient"),
                        InstanceMethod<&WorkspaceWrap::Forward>("forward")});
  }

  explicit WorkspaceWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<WorkspaceWrap>(info) {}

 private:
  rntn::Workspace<float> f32_;
  rntn::Workspace<double> f64_;

  // forwardBackward(params, grad, dims, schedule) → loss; adds ∂loss/∂params to grad.
  Napi::Value ForwardBackward(const Napi::CallbackInfo& info) {
    if (info.Length() != 4) throwType(info.Env(), "forwardBackward(params, grad, dims, schedule) takes 4 arguments");
    return Run(info, info[0], info[1], info[2], info[3], Napi::Value());
  }

  // forwardBackwardShards(params, grads[], dims, schedules[], deferTo[]?, prepared?) → losses[]:
  // schedule i's gradient is added to grads[i]. The parameters are prepared
  // once for all of them (a worker's shards of one minibatch share the
  // parameters), or not at all when `prepared` holds them already
  // (prepareParameters below; keeping it current is the caller's part).
  // With deferTo, ∂V and ∂W are left out and schedule i's weight-gradient
  // inputs are written into deferTo[i] instead, for packedWeightGradient to
  // finish (on any thread).
  Napi::Value ForwardBackwardShards(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || info.Length() > 6) {
      throwType(env, "forwardBackwardShards(params, grads, dims, schedules, deferTo?, prepared?) takes 4 to 6 arguments");
    }
    Napi::TypedArray params = typedArrayArg(info[0], "params");
    if (params.TypedArrayType() != napi_float32_array) throwType(env, "forwardBackwardShards: params must be a Float32Array");
    if (!info[1].IsArray() || !info[3].IsArray()) throwType(env, "grads and schedules must be arrays");
    const bool defer = info.Length() >= 5 && !info[4].IsUndefined();
    const bool hasPrepared = info.Length() == 6 && !info[5].IsUndefined();
    if (defer && !info[4].IsArray()) throwType(env, "deferTo must be an array");
    Napi::Array grads = info[1].As<Napi::Array>(), schedules = info[3].As<Napi::Array>();
    if (grads.Length() != schedules.Length()) throwRange(env, "grads and schedules must have the same length");
    if (defer && info[4].As<Napi::Array>().Length() != schedules.Length()) throwRange(env, "deferTo and schedules must have the same length");
    const Dims k = dimsArg(info[2]);
    const size_t want = Layout(k).size;
    // Validate everything before computing anything: a bad shard must not leave others half-added.
    // JavaScript values first (reading them may run getters, which could
    // detach a buffer), raw pointers only after the last of them.
    std::vector<ScheduleCopy> ss;
    std::vector<Napi::Value> gradValues, deferValues;
    for (uint32_t i = 0; i < grads.Length(); i++) {
      gradValues.push_back(grads.Get(i));
      ss.push_back(scheduleArg(schedules.Get(i), k));
      if (defer) deferValues.push_back(info[4].As<Napi::Array>().Get(i));
    }
    // Lengths from the spans, not ElementLength(): node-addon-api caches that
    // when the TypedArray is wrapped, and a getter may have detached it since.
    Span<float> p = spanOf<float>(params);
    if (p.length != want) throwRange(env, "params has " + std::to_string(p.length) + " values, dims need " + std::to_string(want));
    std::vector<Span<float>> written;  // every buffer this call writes: none may share memory with params or another
    auto writable = [&](const Napi::Value& v, const std::string& name, size_t atLeast, bool exact) {
      Napi::TypedArray a = typedArrayArg(v, name);
      if (a.TypedArrayType() != napi_float32_array) throwType(env, name + " must be a Float32Array like params");
      Span<float> span = spanOf<float>(a);
      if (exact ? span.length != atLeast : span.length < atLeast) {
        throwRange(env, name + " has " + std::to_string(span.length) + " values, " + (exact ? "dims need " : "the schedule needs at least ") +
                            std::to_string(atLeast));
      }
      if (overlaps(p.data, p.length * 4, span.data, span.length * 4)) throwRange(env, "params and " + name + " must not share memory");
      for (const Span<float>& other : written)
        if (overlaps(other.data, other.length * 4, span.data, span.length * 4)) throwRange(env, name + " shares memory with another output");
      written.push_back(span);
      return span.data;
    };
    std::vector<float*> gs, ds;
    for (uint32_t i = 0; i < gradValues.size(); i++) {
      gs.push_back(writable(gradValues[i], "grads[" + std::to_string(i) + "]", want, true));
      if (defer) {
        const Schedule s = ss[i].view();
        const int internal = s.nodes == 0 ? 0 : s.nodes - s.levelStart[1];
        ds.push_back(writable(deferValues[i], "deferTo[" + std::to_string(i) + "]", rntn::weightGradientInputSize(k.d, internal), false));
      }
    }
    const float* prepared = nullptr;
    if (hasPrepared) {
      Span<float> given = preparedArg(env, info[5], k);
      for (const Span<float>& out : written)
        if (overlaps(out.data, out.length * 4, given.data, given.length * 4)) throwRange(env, "prepared shares memory with an output");
      prepared = given.data;
    }
    std::vector<double> results(ss.size());
    try {
      if (!ss.empty() && !prepared) prepared = rntn::prepareParameters<float>(k, p.data, f32_);
      for (size_t i = 0; i < ss.size(); i++) {
        results[i] = rntn::forwardBackwardPrepared<float>(k, p.data, prepared, gs[i], nullptr, ss[i].view(), f32_, defer ? ds[i] : nullptr);
      }
    } catch (const std::bad_alloc&) {
      throw Napi::Error::New(env, "out of memory for the native workspace");
    }
    // Built only now: setting an element can run JavaScript (a setter on
    // Array.prototype), which must not happen while the pointers above are in use.
    Napi::Array losses = Napi::Array::New(env, results.size());
    for (size_t i = 0; i < results.size(); i++) losses.Set(static_cast<uint32_t>(i), results[i]);
    return losses;
  }

  // packedWeightGradient(inputs, internal, packed, dims, part): part `part`
  // (of weightGradientParts) of the packed weight gradient of a schedule with
  // `internal` internal nodes, from the inputs forwardBackwardShards
  // deferred, written over its block of `packed` (rntn.h).
  Napi::Value PackedWeightGradient(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 5) throwType(env, "packedWeightGradient(inputs, internal, packed, dims, part) takes 5 arguments");
    const Dims k = dimsArg(info[3]);
    if (!info[4].IsNumber()) throwType(env, "part must be a number");
    const double part = info[4].As<Napi::Number>().DoubleValue();
    if (!isIntegerIn(part, 0, rntn::kWeightGradientParts - 1)) {
      throwRange(env, "part must be an integer in [0, " + std::to_string(rntn::kWeightGradientParts) + "), got " + info[4].ToString().Utf8Value());
    }
    if (!info[1].IsNumber()) throwType(env, "internal must be a number");
    const double internal = info[1].As<Napi::Number>().DoubleValue();
    if (!isIntegerIn(internal, 0, std::numeric_limits<int32_t>::max())) {
      throwRange(env, "internal must be a non-negative integer, got " + info[1].ToString().Utf8Value());
    }
    Span<float> inputs = float32Arg(env, info[0], "inputs"), packed = float32Arg(env, info[2], "packed", rntn::packedWeightGradientSize(k.d));
    const size_t need = rntn::weightGradientInputSize(k.d, static_cast<int>(internal));
    if (inputs.length < need) {
      throwRange(env, "inputs has " + std::to_string(inputs.length) + " values, " + std::to_string(static_cast<int>(internal)) +
                          " internal nodes need " + std::to_string(need));
    }
    if (overlaps(inputs.data, inputs.length * 4, packed.data, packed.length * 4)) throwRange(env, "inputs and packed must not share memory");
    try {
      rntn::packedWeightGradient<float>(k, static_cast<int>(internal), inputs.data, packed.data, f32_, static_cast<int>(part));
    } catch (const std::bad_alloc&) {
      throw Napi::Error::New(env, "out of memory for the native workspace");
    }
    return env.Undefined();
  }

  // forward(params, dims, schedule, probs?) → loss; writes class probabilities into probs.
  Napi::Value Forward(const Napi::CallbackInfo& info) {
    if (info.Length() < 3 || info.Length() > 4) throwType(info.Env(), "forward(params, dims, schedule, probs?) takes 3 or 4 arguments");
    return Run(info, info[0], Napi::Value(), info[1], info[2], info.Length() == 4 ? info[3] : Napi::Value());
  }

  Napi::Value Run(const Napi::CallbackInfo& info, Napi::Value paramsV, Napi::Value gradV, Napi::Value dimsV,
                  Napi::Value scheduleV, Napi::Value probsV) {
    Napi::Env env = info.Env();
    // Dims and the schedule first: reading them may run getters (JavaScript
    // that could detach a buffer), and node-addon-api caches a typed array's
    // length when it wraps it, so the typed arrays are wrapped after the last getter.
    const Dims k = dimsArg(dimsV);
    const ScheduleCopy copy = scheduleArg(scheduleV, k);
    const Schedule s = copy.view();
    Napi::TypedArray params = typedArrayArg(paramsV, "params");
    const napi_typedarray_type type = params.TypedArrayType();
    if (type != napi_float32_array && type != napi_float64_array) throwType(env, "params must be a Float32Array or Float64Array");
    const size_t want = Layout(k).size;
    if (params.ElementLength() != want) {
      throwRange(env, "params has " + std::to_string(params.ElementLength()) + " values, dims need " + std::to_string(want));
    }
    const char* typeName = type == napi_float32_array ? "Float32Array" : "Float64Array";
    Napi::TypedArray grad, probs;
    const bool hasGrad = !gradV.IsEmpty(), hasProbs = !probsV.IsEmpty() && !probsV.IsUndefined() && !probsV.IsNull();
    if (hasGrad) {
      grad = typedArrayArg(gradV, "grad");
      if (grad.TypedArrayType() != type) throwType(env, std::string("grad must be a ") + typeName + " like params");
      if (grad.ElementLength() != want) throwRange(env, "grad has " + std::to_string(grad.ElementLength()) + " values, dims need " + std::to_string(want));
    }
    if (hasProbs) {
      probs = typedArrayArg(probsV, "probs");
      if (probs.TypedArrayType() != type) throwType(env, std::string("probs must be a ") + typeName + " like params");
      const size_t n = static_cast<size_t>(k.classes) * s.nodes;
      if (probs.ElementLength() != n) throwRange(env, "probs has " + std::to_string(probs.ElementLength()) + " values, needs classes × nodes = " + std::to_string(n));
    }
    try {
      if (type == napi_float32_array) return Napi::Number::New(env, Call<float>(env, params, grad, probs, hasGrad, hasProbs, k, s, f32_));
      return Napi::Number::New(env, Call<double>(env, params, grad, probs, hasGrad, hasProbs, k, s, f64_));
    } catch (const std::bad_alloc&) {
      throw Napi::Error::New(env, "out of memory for the native workspace of a schedule with " + std::to_string(s.nodes) + " nodes");
    }
  }

  template <typename T>
  double Call(Napi::Env env, const Napi::TypedArray& paramsA, const Napi::TypedArray& gradA, const Napi::TypedArray& probsA,
              bool hasGrad, bool hasProbs, const Dims& k, const Schedule& s, rntn::Workspace<T>& w) {
    Span<T> params = spanOf<T>(paramsA);
    Span<T> grad = hasGrad ? spanOf<T>(gradA) : Span<T>{};
    Span<T> probs = hasProbs ? spanOf<T>(probsA) : Span<T>{};
    // The outputs must not alias the parameters or each other: the math reads params while it writes.
    if (overlaps(params.data, params.length * sizeof(T), grad.data, grad.length * sizeof(T)) ||
        overlaps(params.data, params.length * sizeof(T), probs.data, probs.length * sizeof(T)) ||
        overlaps(grad.data, grad.length * sizeof(T), probs.data, probs.length * sizeof(T))) {
      throwRange(env, "params, grad and probs must not share memory");
    }
    return rntn::forwardBackward<T>(k, params.data, grad.data, probs.data, s, w);
  }
};

// Largest relative error of C = A·B over the GEMM shapes and transpositions
// the model uses, against a plain triple loop in long double. A kernel that
// OpenBLAS mis-selects for an unknown CPU shows up here at load time.
template <typename T>
double gemmSelfTest() {
  struct Shape { bool ta, tb; int m, n, k; };
  const Shape shapes[] = {{true, false, 67, 13, 10}, {false, false, 10, 13, 67}, {false, true, 10, 67, 31}, {false, false, 96, 64, 128}};
  double worst = 0;
  uint32_t state = 12345;
  auto next = [&state]() { state = state * 1664525u + 1013904223u; return static_cast<T>((state >> 8) * (1.0 / 16777216.0) - 0.5); };
  for (const Shape& sh : shapes) {
    const int rowsA = sh.ta ? sh.k : sh.m, colsA = sh.ta ? sh.m : sh.k;
    const int rowsB = sh.tb ? sh.n : sh.k, colsB = sh.tb ? sh.k : sh.n;
    std::vector<T> a(static_cast<size_t>(rowsA) * colsA), b(static_cast<size_t>(rowsB) * colsB), c(static_cast<size_t>(sh.m) * sh.n);
    for (T& x : a) x = next();
    for (T& x : b) x = next();
    rntn::gemm(sh.ta, sh.tb, sh.m, sh.n, sh.k, T(1), a.data(), rowsA, b.data(), rowsB, T(0), c.data(), sh.m);
    for (int i = 0; i < sh.m; i++) {
      for (int j = 0; j < sh.n; j++) {
        long double exact = 0, scale = 0;
        for (int p = 0; p < sh.k; p++) {
          long double x = sh.ta ? a[p + static_cast<size_t>(i) * rowsA] : a[i + static_cast<size_t>(p) * rowsA];
          long double y = sh.tb ? b[j + static_cast<size_t>(p) * rowsB] : b[p + static_cast<size_t>(j) * rowsB];
          exact += x * y;
          scale += std::fabs(static_cast<double>(x * y));
        }
        double err = std::fabs(static_cast<double>(c[i + static_cast<size_t>(j) * sh.m] - exact)) / static_cast<double>(scale + 1e-30L);
        if (!(err <= worst)) worst = std::isnan(err) ? INFINITY : std::max(worst, err);
      }
    }
  }
  return worst;
}

class RntnAddon : public Napi::Addon<RntnAddon> {
 public:
  RntnAddon(Napi::Env env, Napi::Object exports) {
    DefineAddon(exports, {
                             InstanceValue("Workspace", WorkspaceWrap::Define(env)),
                             InstanceValue("weightGradientParts", Napi::Number::New(env, rntn::kWeightGradientParts)),
                             InstanceMethod<&RntnAddon::WeightGradientInputSize>("weightGradientInputSize"),
                             InstanceMethod<&RntnAddon::PreparedSize>("preparedSize"),
                             InstanceMethod<&RntnAddon::PackedWeightGradientSize>("packedWeightGradientSize"),
                             InstanceMethod<&RntnAddon::UnpackWeightGradients>("unpackWeightGradients"),
                             InstanceMethod<&RntnAddon::PrepareParameters>("prepareParameters"),
                             InstanceMethod<&RntnAddon::BlasInfo>("blasInfo"),
                             InstanceMethod<&RntnAddon::BlasThreads>("blasThreads"),
                             InstanceMethod<&RntnAddon::AdaGradStep>("adagradStep"),
                             InstanceMethod<&RntnAddon::AdaGradPackedStep>("adagradPackedStep"),
                             InstanceMethod<&RntnAddon::GemmSelfTest>("gemmSelfTest"),
                             InstanceMethod<&RntnAddon::SgemmRate>("sgemmRate"),
                             InstanceMethod<&RntnAddon::TanhError>("tanhMaxRelativeError"),
                         });
  }

 private:
  // {corename, config, threads}: which kernels OpenBLAS picked for this CPU.
  Napi::Value BlasInfo(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("corename", openblas_get_corename());
    o.Set("config", openblas_get_config());
    o.Set("threads", openblas_get_num_threads());
    return o;
  }

  // blasThreads(n?) → the number of OpenBLAS threads, after setting it to n
  // when given. Process-wide: the worker pool sets 1 while it runs, so that
  // N workers do not each start OpenBLAS's own threads.
  Napi::Value BlasThreads(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() > 1) throwType(env, "blasThreads(n?) takes at most one argument");
    if (info.Length() == 1) {
      if (!info[0].IsNumber()) throwType(env, "blasThreads(n): n must be a number");
      const double n = info[0].As<Napi::Number>().DoubleValue();
      if (!isIntegerIn(n, 1, 1024)) throwRange(env, "blasThreads(n): n must be an integer in [1, 1024]");
      openblas_set_num_threads(static_cast<int>(n));
    }
    return Napi::Number::New(env, openblas_get_num_threads());
  }

  // weightGradientInputSize(dim, internal) → values a schedule with `internal`
  // internal nodes writes into its deferTo buffer (rntn.h): the training pool
  // sizes its shared buffers with it.
  Napi::Value WeightGradientInputSize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 2 || !info[1].IsNumber()) throwType(env, "weightGradientInputSize(dim, internal) takes two numbers");
    const int dim = dimNumberArg(env, info[0]);
    const double internal = info[1].As<Napi::Number>().DoubleValue();
    if (!isIntegerIn(internal, 0, std::numeric_limits<int32_t>::max())) throwRange(env, "internal must be a non-negative integer");
    return Napi::Number::New(env, static_cast<double>(rntn::weightGradientInputSize(dim, static_cast<int>(internal))));
  }

  // A size that depends on the hidden size alone: name(dim) → size(dim).
  static Napi::Value SizeOfDim(const Napi::CallbackInfo& info, const char* name, size_t (*size)(int)) {
    Napi::Env env = info.Env();
    if (info.Length() != 1) throwType(env, std::string(name) + "(dim) takes one number");
    return Napi::Number::New(env, static_cast<double>(size(dimNumberArg(env, info[0]))));
  }

  // preparedSize(dim) → values of the prepared parameters (rntn.h): the
  // training pool sizes its shared buffer for them with it.
  Napi::Value PreparedSize(const Napi::CallbackInfo& info) { return SizeOfDim(info, "preparedSize", rntn::preparedSize); }

  // prepareParameters(params, dims, prepared, first, end): units [first, end)
  // of the prepared parameters (unit q < dim: from V[q]; unit dim: from W)
  // into `prepared`, for forwardBackwardShards.
  Napi::Value PrepareParameters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 5) throwType(env, "prepareParameters(params, dims, prepared, first, end) takes 5 arguments");
    const Dims k = dimsArg(info[1]);
    const auto [first, end] = unitRangeArg(env, info[3], info[4], k);
    Span<float> params = float32Arg(env, info[0], "params", Layout(k).size);
    Span<float> prepared = preparedArg(env, info[2], k);
    if (overlaps(params.data, params.length * 4, prepared.data, prepared.length * 4)) throwRange(env, "params and prepared must not share memory");
    rntn::prepareParameters<float>(k, params.data, prepared.data, first, end);
    return env.Undefined();
  }

  // packedWeightGradientSize(dim) → values of a schedule's packed weight gradient (rntn.h).
  Napi::Value PackedWeightGradientSize(const Napi::CallbackInfo& info) {
    return SizeOfDim(info, "packedWeightGradientSize", rntn::packedWeightGradientSize);
  }

  // unpackWeightGradients(packed[], grad, dims, first, end): ∂V[q] for the
  // units q in [first, end) below dim, and ∂W if unit dim is among them,
  // from the sum of the packed weight gradients in array order, written over
  // grad's entries (rntn.h, unpackWeightGradient).
  Napi::Value UnpackWeightGradients(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 5) throwType(env, "unpackWeightGradients(packed, grad, dims, first, end) takes 5 arguments");
    const PackedUnits a = packedUnitsArgs(env, info[0], info[2], info[3], info[4]);
    Span<float> grad = float32Arg(env, info[1], "grad", Layout(a.k).size);
    const std::vector<const float*> packed = packedArgs(env, a.packed, a.k, {grad});
    std::vector<float> sum(static_cast<size_t>(rntn::quadraticRows(a.k.d)));
    rntn::unpackWeightGradient<false>(a.k.d, packed.data(), static_cast<int>(packed.size()), a.first, a.end, grad.data + Layout(a.k).V, sum.data());
    return env.Undefined();
  }

  // adagradStep(params, history, grads[], ranges, lambdas, scale, lr, eps) → finite?
  // ranges holds [start, end) pairs into params; lambdas one L2 weight per pair.
  Napi::Value AdaGradStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 8) throwType(env, "adagradStep(params, history, grads, ranges, lambdas, scale, lr, eps) takes 8 arguments");
    const std::vector<Napi::Value> gradValues = elementsArg(env, info[2], "grads");
    Span<float> params = float32Arg(env, info[0], "params");
    Span<float> history = float32Arg(env, info[1], "history");
    if (history.length != params.length) throwRange(env, "history must have as many values as params");
    std::vector<float*> grads;
    std::vector<Span<float>> gradSpans;
    for (uint32_t s = 0; s < gradValues.size(); s++) {
      Span<float> g = float32Arg(env, gradValues[s], "grads[" + std::to_string(s) + "]");
      if (g.length != params.length) throwRange(env, "grads[" + std::to_string(s) + "] must have as many values as params");
      grads.push_back(g.data);
      gradSpans.push_back(g);
    }
    if (grads.empty()) throwRange(env, "grads must hold at least one gradient");
    auto ranges = int32Arg(info[3], "ranges");
    Span<float> lambdas = float32Arg(env, info[4], "lambdas");
    if (ranges.length % 2 != 0 || lambdas.length != ranges.length / 2) throwRange(env, "ranges must hold [start, end) pairs, one lambda each");
    std::vector<rntn::AdaGradRange> rs(lambdas.length);
    for (size_t r = 0; r < rs.size(); r++) {
      const int32_t a = ranges.data[2 * r], b = ranges.data[2 * r + 1];
      if (a < 0 || b < a || static_cast<size_t>(b) > params.length) {
        throwRange(env, "range " + std::to_string(r) + " [" + std::to_string(a) + ", " + std::to_string(b) + ") is not inside params");
      }
      rs[r] = {static_cast<size_t>(a), static_cast<size_t>(b), lambdas.data[r]};
    }
    const std::vector<double> scalars = numberArgs(env, info, 5, 3, "scale, lr and eps");
    // Every buffer is written: none may alias another.
    std::vector<Span<float>> all = gradSpans;
    all.push_back(params);
    all.push_back(history);
    for (size_t i = 0; i < all.size(); i++)
      for (size_t j = i + 1; j < all.size(); j++)
        if (overlaps(all[i].data, all[i].length * 4, all[j].data, all[j].length * 4)) throwRange(env, "params, history and grads must not share memory");
    const bool finite = rntn::adagradStep(params.data, history.data, grads.data(), static_cast<int>(grads.size()), rs.data(),
                                          static_cast<int>(rs.size()), static_cast<float>(scalars[0]), static_cast<float>(scalars[1]),
                                          static_cast<float>(scalars[2]));
    return Napi::Boolean::New(env, finite);
  }

  // adagradPackedStep(params, history, packed[], dims, first, end, lambdaV, lambdaW, scale, lr, eps) → finite?
  // The step of V and W's units [first, end), their gradient the sum of the
  // packed weight gradients in array order (adagrad.h).
  Napi::Value AdaGradPackedStep(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 11) throwType(env, "adagradPackedStep(params, history, packed, dims, first, end, lambdaV, lambdaW, scale, lr, eps) takes 11 arguments");
    const PackedUnits a = packedUnitsArgs(env, info[2], info[3], info[4], info[5]);
    const std::vector<double> numbers = numberArgs(env, info, 6, 5, "lambdaV, lambdaW, scale, lr and eps");
    Span<float> params = float32Arg(env, info[0], "params", Layout(a.k).size), history = float32Arg(env, info[1], "history", Layout(a.k).size);
    if (overlaps(params.data, params.length * 4, history.data, history.length * 4)) throwRange(env, "params and history must not share memory");
    const std::vector<const float*> packed = packedArgs(env, a.packed, a.k, {params, history});
    const bool finite = rntn::adagradPackedStep(params.data, history.data, packed.data(), static_cast<int>(packed.size()), a.k, a.first, a.end,
                                                static_cast<float>(numbers[0]), static_cast<float>(numbers[1]), static_cast<float>(numbers[2]),
                                                static_cast<float>(numbers[3]), static_cast<float>(numbers[4]));
    return Napi::Boolean::New(env, finite);
  }

  // {float32, float64}: worst relative error of GEMM against exact sums.
  Napi::Value GemmSelfTest(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("float32", gemmSelfTest<float>());
    o.Set("float64", gemmSelfTest<double>());
    return o;
  }

  // sgemmRate(n, repetitions) → median GFLOP/s of an n×n by n×n sgemm: the
  // machine's attainable rate, measured beside the model's own throughput.
  Napi::Value SgemmRate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() != 2 || !info[0].IsNumber() || !info[1].IsNumber()) throwType(env, "sgemmRate(n, repetitions) takes two numbers");
    const double nd = info[0].As<Napi::Number>().DoubleValue(), rd = info[1].As<Napi::Number>().DoubleValue();
    if (!isIntegerIn(nd, 1, 8192)) throwRange(env, "n must be an integer in [1, 8192]");
    if (!isIntegerIn(rd, 1, 1000)) throwRange(env, "repetitions must be an integer in [1, 1000]");
    const int n = static_cast<int>(nd), reps = static_cast<int>(rd);
    std::vector<float> a(static_cast<size_t>(n) * n), b(a.size()), c(a.size());
    for (size_t i = 0; i < a.size(); i++) {
      a[i] = static_cast<float>((i * 7) % 13) / 13.0f - 0.5f;
      b[i] = static_cast<float>((i * 5) % 11) / 11.0f - 0.5f;
    }
    std::vector<double> rates;
    for (int r = 0; r < reps; r++) {
      auto t0 = std::chrono::steady_clock::now();
      rntn::gemm(false, false, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
      double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      rates.push_back(2.0 * n * n * static_cast<double>(n) / sec / 1e9);
    }
    std::sort(rates.begin(), rates.end());
    return Napi::Number::New(env, rates[rates.size() / 2]);
  }

  // Worst relative error of the float tanh over [-20, 20], against libm in double.
  Napi::Value TanhError(const Napi::CallbackInfo& info) {
    double worst = 0;
    std::vector<float> x(400001);
    for (size_t i = 0; i < x.size(); i++) x[i] = static_cast<float>(-20.0 + 40.0 * i / (x.size() - 1));
    std::vector<float> y = x;
    rntn::tanhInPlace(y.data(), static_cast<int>(y.size()));
    for (size_t i = 0; i < x.size(); i++) {
      double exact = std::tanh(static_cast<double>(x[i]));
      if (exact != 0) worst = std::max(worst, std::fabs((y[i] - exact) / exact));
    }
    return Napi::Number::New(info.Env(), worst);
  }
};

}  // namespace

NODE_API_ADDON(RntnAddon)
