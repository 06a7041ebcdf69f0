// The learned updates as fused CPU kernels: the per-coordinate MLP of loptim's MLP optimizer (both designs) and
// the coordinate-wise LSTM of the L2L optimizer. Built at first use by loptim/kernels/__init__.py
// (g++ -O3 -march=native -fopenmp); float32 only.
//
// MLP. The reference is the pure PyTorch update (MLPOptimizerNet.step_flat in loptim/optimizers/mlp.py, and
// update in mlp_generalist.py). Two passes over tiles of 64 coordinates that never straddle two tensors: pass 1
// advances the accumulators in the tile only, checks the gradient is finite and sums each raw feature's square per
// tensor (in float vectors, flushed to a per-thread double sum every 1,024 coordinates and at each tensor's end,
// then reduced over threads); pass 2 advances them again and writes them, multiplies the raw features into
// the first layer with the per-tensor normalizer folded into its weights, and runs the rest of the network on the
// tile in registers and L1. The step goes to a flat output, or straight into each parameter (loptim_mlp_direct).
// LSTM. The reference is LSTMOptimizerNet.step_flat (loptim/optimizers/lstm.py): per tile of 32 coordinates, the
// preprocessed gradient and both layers' gates, activations and state updates stay in L1; the state (units, N) is
// read and written once, a panel of 512 coordinates at a time through an L2 scratch.
// Elementwise code is written on 8-float vectors (GCC vector extensions) so that it vectorizes without
// -ffast-math; tests/test_kernels.py checks both kernels against their references to float tolerance.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

typedef float v8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));

inline v8 splat(float s) { return v8{s, s, s, s, s, s, s, s}; }
inline v8 load(const float* p) {
  v8 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store(float* p, v8 v) { std::memcpy(p, &v, sizeof(v)); }
inline v8 vmax(v8 a, v8 b) { return a > b ? a : b; }
inline v8 vmin(v8 a, v8 b) { return a < b ? a : b; }
inline v8 vsqrt(v8 x) {
  v8 y;
  for (int k = 0; k < 8; ++k) y[k] = __builtin_sqrtf(x[k]);  // vsqrtps
  return y;
}

// exp(x) for x clamped to [-87, 88]: 2^n p(r), Cephes' expf polynomial. Relative error ~2e-7.
inline v8 vexp(v8 x) {
  x = vmin(vmax(x, splat(-87.0f)), splat(88.0f));
  const v8 n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  const v8 r = x - n * 0.693359375f + n * 2.12194440e-4f;
  v8 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const vi8 bits = (__builtin_convertvector(n, vi8) + 127) << 23;
  return p * reinterpret_cast<const v8&>(bits);
}

// log(x) for normal x > 0: x = 2^e m, m in [sqrt(1/2), sqrt(2)), Cephes' logf polynomial.
inline v8 vlog(v8 x) {
  vi8 bits = reinterpret_cast<const vi8&>(x);
  vi8 e = ((bits >> 23) & 0xff) - 126;
  bits = (bits & 0x007fffff) | 0x3f000000;  // m in [0.5, 1)
  v8 m = reinterpret_cast<const v8&>(bits);
  const vi8 small = m < 0.707106781186547524f;  // -1 where true
  m = small ? m + m : m;
  e = e + small;
  m = m - 1.0f;
  const v8 z = m * m;
  v8 y = splat(7.0376836292e-2f);
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const v8 fe = __builtin_convertvector(e, v8);
  y = y - 2.12194440e-4f * fe - 0.5f * z;
  return m + y + 0.693359375f * fe;
}

// 1 / x: on x86 the 12-bit reciprocal estimate and one Newton step (~23 bits), cheaper than a division.
inline v8 vrcp(v8 x) {
#if defined(__AVX__)
  const v8 r = __builtin_ia32_rcpps256(x);
  return r * (2.0f - x * r);
#else
  return 1.0f / x;
#endif
}

// exp(x) for the sigmoid: 2^(x log2 e) = 2^n 2^r, r in [-1/2, 1/2], 2^r by Cephes' exp2f polynomial (relative
// error ~2e-7); fewer operations than vexp, whose cost dominates the LSTM's 200 activations per coordinate.
inline v8 vexp_sigmoid(v8 x) {
#if defined(__AVX__)
  const v8 t = __builtin_ia32_minps256(__builtin_ia32_maxps256(x * 1.44269504088896341f, splat(-126.0f)),
                                       splat(126.0f));
  const v8 n = __builtin_ia32_roundps256(t, 0);  // to nearest
#else
  const v8 t = vmin(vmax(x * 1.44269504088896341f, splat(-126.0f)), splat(126.0f));
  const v8 n = (t + 12582912.0f) - 12582912.0f;
#endif
  const v8 r = t - n;
  v8 p = splat(1.535336188319500e-4f);
  p = p * r + 1.339887440266574e-3f;
  p = p * r + 9.618437357674640e-3f;
  p = p * r + 5.550332471162809e-2f;
  p = p * r + 2.402264791363012e-1f;
  p = p * r + 6.931472028550421e-1f;
  p = p * r + 1.0f;
  const vi8 bits = (__builtin_convertvector(n, vi8) + 127) << 23;
  return p * reinterpret_cast<const v8&>(bits);
}

inline v8 vsigmoid(v8 z) { return vrcp(1.0f + vexp_sigmoid(-z)); }

// One dense layer over a tile of T coordinates: out[j][c] = act(bias[j] + sum_i w[j][i] in[i][c]).
// Register blocking: JB output units x VB vectors stay in ymm registers across the input loop (3 x 4 = 12 of the
// 16), so each FMA takes one operand from L1 and the rest from registers.
template <int T, int I, int JB, int VB, bool Relu>
inline void block(const float* __restrict w, const float* __restrict bias, const v8* __restrict in,
                  v8* __restrict out, int j0, int v0) {
  constexpr int V = T / 8;
  v8 acc[JB][VB];
#pragma GCC unroll 16
  for (int a = 0; a < JB; ++a) {
#pragma GCC unroll 16
    for (int b = 0; b < VB; ++b) acc[a][b] = splat(bias[j0 + a]);
  }
  for (int i = 0; i < I; ++i) {
#pragma GCC unroll 16
    for (int a = 0; a < JB; ++a) {
      const v8 wa = splat(w[(j0 + a) * I + i]);
#pragma GCC unroll 16
      for (int b = 0; b < VB; ++b) acc[a][b] += wa * in[i * V + v0 + b];
    }
  }
#pragma GCC unroll 16
  for (int a = 0; a < JB; ++a) {
#pragma GCC unroll 16
    for (int b = 0; b < VB; ++b) out[(j0 + a) * V + v0 + b] = Relu ? vmax(acc[a][b], v8{}) : acc[a][b];
  }
}

template <int T, int I, int J, bool Relu>
inline void layer(const float* __restrict w, const float* __restrict bias, const v8* __restrict in,
                  v8* __restrict out) {
  constexpr int V = T / 8, JB = 3, VB = 4, REST = J % JB;
  static_assert(V % VB == 0, "the tile must be a multiple of 32 coordinates");
  for (int v0 = 0; v0 < V; v0 += VB) {
    for (int j0 = 0; j0 + JB <= J; j0 += JB) block<T, I, JB, VB, Relu>(w, bias, in, out, j0, v0);
    if constexpr (REST > 0) block<T, I, REST, VB, Relu>(w, bias, in, out, J - REST, v0);
  }
}

// Copy `width` floats of row `src` into a zero-padded tile row of T, and back.
template <int T>
inline void gather(const float* __restrict src, int width, float* __restrict dst) {
  if (width == T) {
    std::memcpy(dst, src, sizeof(float) * T);
  } else {
    std::memcpy(dst, src, sizeof(float) * width);
    std::memset(dst + width, 0, sizeof(float) * (T - width));
  }
}

// ---- MLP ----------------------------------------------------------------------------------------------------------
constexpr int TILE = 64;
constexpr int SUM_FLUSH = 16;  // tiles summed in float before a flush to double (1,024 coordinates)
constexpr int V = TILE / 8;

// The tile's state: gradient, parameter, K momenta and the second moment, zero-padded to TILE coordinates.
template <int K>
struct Tile {
  alignas(32) float g[TILE], p[TILE], m[K][TILE], v[TILE];
  alignas(32) float aux[TILE];  // a design's per-coordinate term, computed by features() for delta()

  // grad and param point at the tile's first coordinate; momenta and rms are the flat state of all n.
  void read(const float* grad, const float* param, const float* momenta, const float* rms, int64_t n, int64_t lo,
            int width) {
    gather<TILE>(grad, width, g);
    gather<TILE>(param, width, p);
    for (int k = 0; k < K; ++k) gather<TILE>(momenta + k * n + lo, width, m[k]);
    gather<TILE>(rms + lo, width, v);
  }
  // Whether every gradient entry is finite (g - g is 0 exactly then, NaN for an inf or a NaN).
  bool finite() const {
    vi8 all = vi8{} - 1;
    for (int b = 0; b < V; ++b) {
      const v8 gv = load(g + 8 * b);
      all &= (gv - gv) == 0.0f;
    }
    int ok = -1;
    for (int l = 0; l < 8; ++l) ok &= all[l];
    return ok != 0;
  }
  void write_state(float* momenta, float* rms, int64_t n, int64_t lo, int width) const {
    for (int k = 0; k < K; ++k) std::memcpy(momenta + k * n + lo, m[k], sizeof(float) * width);
    std::memcpy(rms + lo, v, sizeof(float) * width);
  }
  // m_k <- b_k m_k + (1 - b_k) g; v <- b v + (1 - b) g^2
  void advance(const float* decay, float rms_decay) {
    for (int b = 0; b < V; ++b) {
      const v8 gv = load(g + 8 * b);
      for (int k = 0; k < K; ++k) store(m[k] + 8 * b, decay[k] * load(m[k] + 8 * b) + (1.0f - decay[k]) * gv);
      store(v + 8 * b, rms_decay * load(v + 8 * b) + (1.0f - rms_decay) * gv * gv);
    }
  }
};

// Metz 2019: 6 momenta, 10 features (g, p, momenta, g rsqrt(v + eps), m_0.9 rsqrt(v + eps)),
// update -step_mult d exp(exp_mult m).
struct Metz {
  static constexpr int K = 6;
  static constexpr int F = 10;
  float decay[K];
  float rms_decay, rsqrt_eps, step_mult, exp_mult;

  explicit Metz(const float* h) : rms_decay(h[K]), rsqrt_eps(h[K + 1]), step_mult(h[K + 2]), exp_mult(h[K + 3]) {
    for (int k = 0; k < K; ++k) decay[k] = h[k];
  }

  void features(Tile<K>& t, v8* x) const {
    for (int b = 0; b < V; ++b) {
      const v8 g = load(t.g + 8 * b);
      const v8 r = 1.0f / vsqrt(load(t.v + 8 * b) + rsqrt_eps);
      x[0 * V + b] = g;
      x[1 * V + b] = load(t.p + 8 * b);
      for (int k = 0; k < K; ++k) x[(2 + k) * V + b] = load(t.m[k] + 8 * b);
      x[8 * V + b] = g * r;
      x[9 * V + b] = load(t.m[2] + 8 * b) * r;  // the 0.9 momentum
    }
  }
  v8 delta(v8 d, v8 m, const Tile<K>&, int) const { return -step_mult * d * vexp(exp_mult * m); }
};

// The generalist design: 3 momenta and Adam's v, 9 features, a nominal Adam step the network corrects.
struct Generalist {
  static constexpr int K = 3;
  static constexpr int F = 9;
  float decay[K];
  float rms_decay, adam_eps, bias1, bias2, nominal_lr, schedule, log_lo, log_hi;

  explicit Generalist(const float* h)
      : rms_decay(h[K]), adam_eps(h[K + 1]), bias1(h[K + 2]), bias2(h[K + 3]), nominal_lr(h[K + 4]),
        schedule(h[K + 5]), log_lo(h[K + 6]), log_hi(h[K + 7]) {
    for (int k = 0; k < K; ++k) decay[k] = h[k];
  }

  // 1 / (sqrt(v / bias2) + eps), stored in t.aux for delta(): one square root and a reciprocal estimate with a
  // Newton step per coordinate (no division).
  void features(Tile<K>& t, v8* x) const {
    const float inv_bias2 = 1.0f / bias2;
    for (int b = 0; b < V; ++b) {
      const v8 inv = vrcp(vsqrt(load(t.v + 8 * b) * inv_bias2) + adam_eps), g = load(t.g + 8 * b);
      store(t.aux + 8 * b, inv);
      x[0 * V + b] = g;
      x[1 * V + b] = load(t.p + 8 * b);
      for (int k = 0; k < K; ++k) x[(2 + k) * V + b] = load(t.m[k] + 8 * b);
      x[5 * V + b] = g * inv;
      for (int k = 0; k < K; ++k) x[(6 + k) * V + b] = load(t.m[k] + 8 * b) * inv;
    }
  }
  v8 delta(v8 d, v8 s, const Tile<K>& t, int b) const {
    const v8 nominal = load(t.m[0] + 8 * b) * (1.0f / bias1) * load(t.aux + 8 * b);
    const v8 log_step = vmin(vmax(schedule + s, splat(log_lo)), splat(log_hi));
    return -nominal_lr * vexp(log_step) * (nominal + d);
  }
};

struct Tiles {
  std::vector<int64_t> start, end, owner;
};

Tiles make_tiles(const int64_t* offsets, int64_t n_tensors) {
  Tiles tiles;
  for (int64_t t = 0; t < n_tensors; ++t) {
    for (int64_t lo = offsets[t]; lo < offsets[t + 1]; lo += TILE) {
      tiles.start.push_back(lo);
      tiles.end.push_back(std::min(lo + TILE, offsets[t + 1]));
      tiles.owner.push_back(t);
    }
  }
  return tiles;
}

// Where a tile's gradient and parameter come from and where its step goes. FlatIO: flat vectors of all
// coordinates, the step written to a flat output (the shell adds it). DirectIO: each tensor's own storage, the step
// applied in place as p <- decay_t p + lr_t D (torch.optim's decoupled weight decay), so that the shell makes no
// flat copy of gradients and parameters and runs no separate pass to add the step.
struct FlatIO {
  const float *grad, *param;
  float* out;
  bool active(int64_t) const { return true; }
  const float* g(int64_t, int64_t lo) const { return grad + lo; }
  const float* p(int64_t, int64_t lo) const { return param + lo; }
  void put(int64_t, int64_t lo, int width, const float* delta, const float*) const {
    std::memcpy(out + lo, delta, sizeof(float) * width);
  }
};

struct DirectIO {
  const int64_t* offsets;
  float* const* params;
  const float* const* grads;
  const float *lr, *decay;
  bool active(int64_t t) const { return grads[t] != nullptr; }  // no gradient: no step, its state as it was
  const float* g(int64_t t, int64_t lo) const { return grads[t] + (lo - offsets[t]); }
  const float* p(int64_t t, int64_t lo) const { return params[t] + (lo - offsets[t]); }
  void put(int64_t t, int64_t lo, int width, const float* delta, const float* old) const {
    float* dst = params[t] + (lo - offsets[t]);
    const float l = lr[t], d = decay[t];
    for (int i = 0; i < width; ++i) dst[i] = old[i] * d + l * delta[i];
  }
};

// The whole MLP update. w1 (H, F), w2 (H, H), w3 (2, H); b1 (H,) already holds the per-step bias (time features);
// w1_tensor (H,) or null multiplies log RMS(param) of the tensor (generalist). Pass 1 only reads (the new
// accumulators stay in the tile), so a non-finite gradient found there leaves everything as it was. Returns 0;
// 1 for a non-finite gradient (nothing written); -1 on a bad thread count.
template <class D, int H, class IO>
int mlp_run(const D& design, const IO& io, int64_t n, int64_t n_tensors, const int64_t* offsets, float* momenta,
            float* rms, const float* w1, const float* b1, const float* w1_tensor, const float* w2, const float* b2,
            const float* w3, const float* b3, float normalizer_eps, int threads) {
  constexpr int F = D::F, K = D::K;
  if (threads < 1) return -1;
  const Tiles tiles = make_tiles(offsets, n_tensors);
  const int64_t n_tiles = static_cast<int64_t>(tiles.start.size());
  std::vector<double> sums(static_cast<size_t>(threads) * n_tensors * F, 0.0);
  int bad = 0;

#pragma omp parallel num_threads(threads) reduction(| : bad)
  {
    double* mine = sums.data() + static_cast<size_t>(omp_get_thread_num()) * n_tensors * F;
    Tile<K> tile;
    alignas(32) v8 x[F * V];
    // Squares summed in float vectors (independent lanes, no per-tile horizontal sum) and flushed into the
    // tensor's double sums when the tensor changes or every SUM_FLUSH tiles.
    v8 part[F] = {};
    int64_t current = -1;
    int pending = 0;
    const auto flush = [&]() {
      if (current < 0) return;
      double* acc = mine + current * F;
      for (int f = 0; f < F; ++f) {
        double total = 0.0;
        for (int l = 0; l < 8; ++l) total += part[f][l];
        acc[f] += total;
        part[f] = v8{};
      }
      pending = 0;
    };
#pragma omp for schedule(static)
    for (int64_t k = 0; k < n_tiles; ++k) {
      const int64_t lo = tiles.start[k], t = tiles.owner[k];
      if (!io.active(t)) continue;
      if (t != current || pending == SUM_FLUSH) {
        flush();
        current = t;
      }
      const int width = static_cast<int>(tiles.end[k] - lo);
      tile.read(io.g(t, lo), io.p(t, lo), momenta, rms, n, lo, width);
      bad |= !tile.finite();
      tile.advance(design.decay, design.rms_decay);
      design.features(tile, x);  // zero-padded coordinates give zero features
      for (int f = 0; f < F; ++f) {
        v8 s = part[f];
        for (int b = 0; b < V; ++b) s += x[f * V + b] * x[f * V + b];
        part[f] = s;
      }
      ++pending;
    }
    flush();
  }
  if (bad) return 1;

  // Fold each tensor's normalizer rsqrt(mean(x_f^2) + eps) into the first layer's columns.
  std::vector<float> w1f(static_cast<size_t>(n_tensors) * H * F), b1f(static_cast<size_t>(n_tensors) * H);
  for (int64_t t = 0; t < n_tensors; ++t) {
    const double size = static_cast<double>(offsets[t + 1] - offsets[t]);
    float scale[F];
    float mean_sq_param = 0.0f;
    for (int f = 0; f < F; ++f) {
      double total = 0.0;
      for (int r = 0; r < threads; ++r) total += sums[(static_cast<size_t>(r) * n_tensors + t) * F + f];
      scale[f] = 1.0f / std::sqrt(static_cast<float>(total / size) + normalizer_eps);
      if (f == 1) mean_sq_param = static_cast<float>(total / size);
    }
    const float log_rms = w1_tensor ? 0.5f * std::log(mean_sq_param + normalizer_eps) : 0.0f;
    for (int j = 0; j < H; ++j) {
      for (int f = 0; f < F; ++f) w1f[(t * H + j) * F + f] = w1[j * F + f] * scale[f];
      b1f[t * H + j] = b1[j] + (w1_tensor ? w1_tensor[j] * log_rms : 0.0f);
    }
  }

#pragma omp parallel num_threads(threads)
  {
    Tile<K> tile;
    alignas(32) v8 x[F * V], h1[H * V], h2[H * V], o[2 * V];
#pragma omp for schedule(static)
    for (int64_t k = 0; k < n_tiles; ++k) {
      const int64_t lo = tiles.start[k], t = tiles.owner[k];
      if (!io.active(t)) continue;
      const int width = static_cast<int>(tiles.end[k] - lo);
      tile.read(io.g(t, lo), io.p(t, lo), momenta, rms, n, lo, width);
      tile.advance(design.decay, design.rms_decay);
      tile.write_state(momenta, rms, n, lo, width);
      design.features(tile, x);
      layer<TILE, F, H, true>(w1f.data() + t * H * F, b1f.data() + t * H, x, h1);
      layer<TILE, H, H, true>(w2, b2, h1, h2);
      layer<TILE, H, 2, false>(w3, b3, h2, o);
      alignas(32) float delta[TILE];
      for (int b = 0; b < V; ++b) store(delta + 8 * b, design.delta(o[b], o[V + b], tile, b));
      io.put(t, lo, width, delta, tile.p);
    }
  }
  return 0;
}

template <class D, class IO>
int mlp_dispatch(const D& design, const IO& io, int hidden, int64_t n, int64_t n_tensors, const int64_t* offsets,
                 float* momenta, float* rms, const float* w1, const float* b1, const float* w1_tensor,
                 const float* w2, const float* b2, const float* w3, const float* b3, float eps, int threads) {
#define LOPTIM_MLP_CASE(H)                                                                                      \
  case H:                                                                                                       \
    return mlp_run<D, H, IO>(design, io, n, n_tensors, offsets, momenta, rms, w1, b1, w1_tensor, w2, b2, w3, b3, \
                             eps, threads);
  switch (hidden) {
    LOPTIM_MLP_CASE(4)
    LOPTIM_MLP_CASE(8)
    LOPTIM_MLP_CASE(16)
    LOPTIM_MLP_CASE(32)
    default:
      return -2;  // no kernel for this width: the caller falls back to the reference
  }
#undef LOPTIM_MLP_CASE
}

template <class IO>
int mlp_design(int design, const IO& io, int hidden, int64_t n, int64_t n_tensors, const int64_t* offsets,
               float* momenta, float* rms, const float* w1, const float* b1, const float* w1_tensor, const float* w2,
               const float* b2, const float* w3, const float* b3, const float* hyper, float eps, int threads) {
  if (design == 0) {
    return mlp_dispatch(Metz(hyper), io, hidden, n, n_tensors, offsets, momenta, rms, w1, b1, nullptr, w2, b2, w3,
                        b3, eps, threads);
  }
  if (design == 1) {
    return mlp_dispatch(Generalist(hyper), io, hidden, n, n_tensors, offsets, momenta, rms, w1, b1, w1_tensor, w2,
                        b2, w3, b3, eps, threads);
  }
  return -3;  // no such design
}

// ---- LSTM: two layers of U units; gate rows input, forget, output, cell input (x2: tanh z = 2 s(2z) - 1) --------
constexpr int LSTM_TILE = 32;  // the 80 gates of a tile, both inputs and both cell states fit L1 (32 KB)
constexpr int LV = LSTM_TILE / 8;

// Gates (4U, T) -> new cell state (in place in c, U x T) and hidden state h (U x T). In phases over the whole tile
// (all sigmoids, then the cells, then their tanh) so that the long exp chains of independent vectors overlap.
template <int U>
inline void lstm_cell(v8* __restrict gates, v8* __restrict c, v8* __restrict h) {
  for (int k = 0; k < 4 * U * LV; ++k) gates[k] = vsigmoid(gates[k]);
  for (int k = 0; k < U * LV; ++k) {
    const v8 i = gates[k], f = gates[U * LV + k], g = 2.0f * gates[3 * U * LV + k] - 1.0f;
    c[k] = f * c[k] + i * g;
    h[k] = vsigmoid(2.0f * c[k]);
  }
  for (int k = 0; k < U * LV; ++k) h[k] = gates[2 * U * LV + k] * (2.0f * h[k] - 1.0f);
}

// One step for N coordinates, state (U, N) each, updated in place; weights in the layout of lstm._scaled
// (cell-input rows x2): w1 (4U, 2 + U), w2 (4U, 2U), biases (4U,), wout (U,), bout (1,).
// Panels of LSTM_PANEL coordinates. A panel's 4U state rows are copied in long contiguous runs (which the hardware
// prefetcher follows; 4U separate 128-byte pieces per tile it does not: 1.2x the whole update) into a per-thread
// scratch laid out tile by tile as [x (2), h1, h2, c1, c2] x T, where the layers read their inputs and the cells
// write their outputs in place: layer 1 reads [x, h1], its cell overwrites h1 and c1, layer 2 reads [h1, h2], its
// cell overwrites h2 and c2. The panel is then copied back. While a panel computes, each tile prefetches a share
// of the next panel's state lines. The arithmetic is the same per coordinate as the reference's.
constexpr int LSTM_PANEL = 512;  // its scratch, 4U + 2 rows of 512 floats (168 KB for U = 20), stays in L2

template <int U>
int lstm_run(int64_t n, const float* grad, float* h1, float* c1, float* h2, float* c2, float* out, const float* w1,
             const float* b1, const float* w2, const float* b2, const float* wout, const float* bout, float p,
             float output_scale, int threads) {
  constexpr int T = LSTM_TILE, P = LSTM_PANEL, TILES = P / T, ROWS = 2 + 4 * U;
  constexpr int LINES = 4 * U * P / 16;  // cache lines of a panel's state
  static_assert(P % T == 0 && P % 16 == 0, "a panel is whole tiles and whole cache lines");
  if (threads < 1) return -1;
  const int64_t n_panels = (n + P - 1) / P;
  const float threshold = std::exp(-p), inverse_p = 1.0f / p, scale_small = std::exp(p);
  float* const state[4] = {h1, h2, c1, c2};  // in the scratch's row order
#pragma omp parallel num_threads(threads)
  {
    alignas(32) v8 gates[4 * U * LV];
    alignas(32) float g[T], delta[T];
    std::vector<v8> scratch(static_cast<size_t>(TILES) * ROWS * LV);
    float* const rows = reinterpret_cast<float*>(scratch.data());
#pragma omp for schedule(static)
    for (int64_t q = 0; q < n_panels; ++q) {
      const int64_t plo = q * P, next = plo + P;  // a static schedule gives each thread consecutive panels
      const int width = static_cast<int>(std::min<int64_t>(P, n - plo));
      const int tiles = (width + T - 1) / T;
      for (int r = 0; r < 4 * U; ++r) {  // panel rows -> tiles; the last tile's tail is zero
        const float* src = state[r / U] + (r % U) * n + plo;
        for (int t = 0; t < tiles; ++t)
          gather<T>(src + t * T, std::min(T, width - t * T), rows + (t * ROWS + 2 + r) * T);
      }
      for (int t = 0; t < tiles; ++t) {
        for (int k = t * LINES / TILES; next < n && k < (t + 1) * LINES / TILES; ++k) {
          const int r = k / (P / 16);  // past the end of a row is harmless: a prefetch never faults
          __builtin_prefetch(state[r / U] + (r % U) * n + next + 16 * (k % (P / 16)), 0, 3);
        }
        v8* const tile = scratch.data() + static_cast<size_t>(t) * ROWS * LV;
        v8* const th1 = tile + 2 * LV;
        v8* const th2 = th1 + U * LV;
        v8* const tc1 = th2 + U * LV;
        v8* const tc2 = tc1 + U * LV;
        const int64_t lo = plo + t * T;
        const int tw = std::min(T, width - t * T);
        gather<T>(grad + lo, tw, g);
        for (int b = 0; b < LV; ++b) {  // Appendix A preprocessing: (log|g| / p, sign g) or (-1, e^p g)
          const v8 gv = load(g + 8 * b);
          const v8 a = vmax(gv, -gv);
          const vi8 large = a >= threshold;
          const v8 sign = (gv > 0.0f ? splat(1.0f) : v8{}) - (gv < 0.0f ? splat(1.0f) : v8{});
          tile[b] = large ? vlog(vmax(a, splat(threshold))) * inverse_p : splat(-1.0f);
          tile[LV + b] = large ? sign : gv * scale_small;
        }
        layer<T, 2 + U, 4 * U, false>(w1, b1, tile, gates);
        lstm_cell<U>(gates, tc1, th1);  // the new h1 over the old one, which layer 1 has read
        layer<T, 2 * U, 4 * U, false>(w2, b2, th1, gates);
        lstm_cell<U>(gates, tc2, th2);
        for (int b = 0; b < LV; ++b) {
          v8 acc = splat(bout[0]);
          for (int u = 0; u < U; ++u) acc += wout[u] * th2[u * LV + b];
          store(delta + 8 * b, output_scale * acc);
        }
        std::memcpy(out + lo, delta, sizeof(float) * tw);
      }
      for (int r = 0; r < 4 * U; ++r) {  // tiles -> panel rows
        float* dst = state[r / U] + (r % U) * n + plo;
        for (int t = 0; t < tiles; ++t)
          std::memcpy(dst + t * T, rows + (t * ROWS + 2 + r) * T, sizeof(float) * std::min(T, width - t * T));
      }
    }
  }
  return 0;
}


// ---- LHOPT's inner AdamW ------------------------------------------------------------------------------------------
// The reference is inner_step (loptim/optimizers/lhopt/inner.py) and the per-tensor statistics of
// features.tensor_stats. Work is split into jobs of at most LHOPT_BLOCK coordinates of one tensor; every job keeps
// its own sums (float vectors flushed to double every LHOPT_FLUSH vectors), added in job order afterwards, so the
// result does not depend on the thread count.
constexpr int64_t LHOPT_BLOCK = 1 << 14;
constexpr int LHOPT_FLUSH = 64;
// Per tensor: g.g, u.u, p.p, m.m, |m - c1 g|^2, #(sqrt(v_hat) - eps > 0), sum log(|u| + 1e-8), g.m, g.p, g.u
// (g the clipped gradient, m and v the new moments, u the pre-learning-rate update, p before the step).
constexpr int LHOPT_SUMS = 10;

struct LhoptConstants {
  float clip, beta1, one_minus_beta1, beta2, one_minus_beta2, sqrt_bias2, eps, bias1;
  bool adamax;
  explicit LhoptConstants(const float* h, int adamax_denominator)
      : clip(h[0]), beta1(h[1]), one_minus_beta1(h[2]), beta2(h[3]), one_minus_beta2(h[4]), sqrt_bias2(h[5]),
        eps(h[6]), bias1(h[7]), adamax(adamax_denominator != 0) {}

  // sqrt(v_hat): v itself for the AdaMax denominator (no bias correction, as published), else sqrt(v) / sqrt(c2).
  v8 sqrt_v_hat(v8 v) const { return adamax ? v : vsqrt(v) / sqrt_bias2; }
  // m_hat / (sqrt(v_hat) + eps) + wd p
  v8 update(v8 m, v8 v, v8 p, float decay_in_update) const {
    return m / ((sqrt_v_hat(v) + eps) * bias1) + decay_in_update * p;
  }
};

// x as computed, never fused into a following multiply-add (where a rounding must match the reference's).
inline v8 rounded(v8 x) {
  asm("" : "+x"(x));
  return x;
}

struct LhoptJob {
  int64_t tensor, lo, hi;
};

std::vector<LhoptJob> lhopt_jobs(int64_t n_tensors, const int64_t* sizes) {
  std::vector<LhoptJob> jobs;
  for (int64_t t = 0; t < n_tensors; ++t) {
    for (int64_t lo = 0; lo < sizes[t]; lo += LHOPT_BLOCK) jobs.push_back({t, lo, std::min(lo + LHOPT_BLOCK, sizes[t])});
  }
  return jobs;
}

inline v8 load_part(const float* p, int width) {
  if (width == 8) return load(p);
  alignas(32) float padded[8] = {};
  std::memcpy(padded, p, sizeof(float) * width);
  return load(padded);
}
inline void store_part(float* p, v8 v, int width) {
  if (width == 8) return store(p, v);
  alignas(32) float padded[8];
  store(padded, v);
  std::memcpy(p, padded, sizeof(float) * width);
}

// Pass 1 over one job: the moments in place and the job's sums (all ten with Stats, else u.u and p.p); with Apply
// (a learning rate that does not depend on the sums) the parameter step too, p <- decay p - lr u.
template <bool Stats, bool Apply>
void lhopt_moments_job(const LhoptConstants& k, int64_t lo, int64_t hi, float* p, const float* g, float* m, float* v,
                       float decay_in_update, float lr, float decay, double* sums) {
  v8 acc[LHOPT_SUMS] = {};
  int pending = 0;
  const auto flush = [&]() {
    for (int s = 0; s < LHOPT_SUMS; ++s) {
      for (int l = 0; l < 8; ++l) sums[s] += acc[s][l];
      acc[s] = v8{};
    }
    pending = 0;
  };
  for (int64_t i = lo; i < hi; i += 8) {
    const int width = static_cast<int>(std::min<int64_t>(8, hi - i));
    const v8 gv = load_part(g + i, width) * k.clip, pv = load_part(p + i, width);
    const v8 mv = k.beta1 * load_part(m + i, width) + k.one_minus_beta1 * gv;
    const v8 old_v = load_part(v + i, width);
    const v8 vv = k.adamax ? vmax(k.beta2 * old_v, vmax(gv, -gv)) : k.beta2 * old_v + k.one_minus_beta2 * gv * gv;
    store_part(m + i, mv, width);
    store_part(v + i, vv, width);
    const v8 u = k.update(mv, vv, pv, decay_in_update);
    acc[1] += u * u;
    acc[2] += pv * pv;
    if constexpr (Stats) {
      const v8 noise = mv - rounded(k.bias1 * gv);  // exactly 0 at the first step, as the reference's
      const v8 above = (k.sqrt_v_hat(vv) - k.eps) > 0.0f ? splat(1.0f) : v8{};
      v8 log_u = vlog(vmax(u, -u) + 1e-8f);
      if (width < 8) {
        for (int l = width; l < 8; ++l) log_u[l] = 0.0f;
      }
      acc[0] += gv * gv;
      acc[3] += mv * mv;
      acc[4] += noise * noise;
      acc[5] += above;
      acc[6] += log_u;
      acc[7] += gv * mv;
      acc[8] += gv * pv;
      acc[9] += gv * u;
    }
    if constexpr (Apply) store_part(p + i, decay * pv - lr * u, width);
    if (++pending == LHOPT_FLUSH) flush();
  }
  flush();
}

// Pass 2 over one job: p <- decay p - lr u, u recomputed from the new moments and the parameter before the step.
void lhopt_apply_job(const LhoptConstants& k, int64_t lo, int64_t hi, float* p, const float* m, const float* v,
                     float decay_in_update, float lr, float decay) {
  for (int64_t i = lo; i < hi; i += 8) {
    const int width = static_cast<int>(std::min<int64_t>(8, hi - i));
    const v8 pv = load_part(p + i, width);
    const v8 u = k.update(load_part(m + i, width), load_part(v + i, width), pv, decay_in_update);
    store_part(p + i, decay * pv - lr * u, width);
  }
}

}  // namespace

extern "C" {

// design 0: Metz 2019 (w1_tensor null); hyper: momentum decays (6), rms decay, rsqrt eps, step_mult, exp_mult.
// design 1: the generalist; hyper: momentum decays (3), rms decay, adam eps, 1 - beta1^t, 1 - beta2^t, nominal lr,
// schedule (the head's output this step), log step range (lo, hi). Returns 1, having written nothing, when a
// gradient entry is not finite.
int loptim_mlp(int design, int hidden, int64_t n, int64_t n_tensors, const int64_t* offsets, const float* grad,
               const float* param, float* momenta, float* rms, float* out, const float* w1, const float* b1,
               const float* w1_tensor, const float* w2, const float* b2, const float* w3, const float* b3,
               const float* hyper, float normalizer_eps, int threads) {
  return mlp_design(design, FlatIO{grad, param, out}, hidden, n, n_tensors, offsets, momenta, rms, w1, b1,
                    w1_tensor, w2, b2, w3, b3, hyper, normalizer_eps, threads);
}

// The same update read from and applied to each tensor's own storage (params[t], grads[t], offsets[t + 1] -
// offsets[t] floats each): p <- decay[t] p + lr[t] D in place. A tensor whose grads[t] is null is left as it is,
// parameter and state (torch.optim skips a parameter without a gradient).
int loptim_mlp_direct(int design, int hidden, int64_t n, int64_t n_tensors, const int64_t* offsets,
                      float* const* params, const float* const* grads, const float* lr, const float* decay,
                      float* momenta, float* rms, const float* w1, const float* b1, const float* w1_tensor,
                      const float* w2, const float* b2, const float* w3, const float* b3, const float* hyper,
                      float normalizer_eps, int threads) {
  return mlp_design(design, DirectIO{offsets, params, grads, lr, decay}, hidden, n, n_tensors, offsets, momenta,
                    rms, w1, b1, w1_tensor, w2, b2, w3, b3, hyper, normalizer_eps, threads);
}

// The L2L LSTM update with log-sign preprocessing (p) and U = hidden units (20, as in the paper; others: -2).
int loptim_lstm(int hidden, int64_t n, const float* grad, float* h1, float* c1, float* h2, float* c2, float* out,
                const float* w1, const float* b1, const float* w2, const float* b2, const float* wout,
                const float* bout, float p, float output_scale, int threads) {
  if (hidden != 20) return -2;
  return lstm_run<20>(n, grad, h1, c1, h2, c2, out, w1, b1, w2, b2, wout, bout, p, output_scale, threads);
}

// LHOPT's inner AdamW, pass 1, over n_tensors tensors given by pointer arrays: the moments m, v in place and the
// per-tensor sums (n_tensors x LHOPT_SUMS doubles; all ten when stats, else only u.u and p.p are filled). With lr
// non-null the parameter step happens in this pass (p <- decay p - lr u; the learning rate does not depend on the
// sums). constants: gradient clip coefficient, beta1, 1 - beta1, beta2, 1 - beta2, sqrt(c2), eps, c1.
// decay_in_update, lr, decay: per tensor.
int loptim_lhopt_moments(int64_t n_tensors, const int64_t* sizes, float* const* p, const float* const* g,
                         float* const* m, float* const* v, const float* constants, int adamax, int stats,
                         const float* decay_in_update, const float* lr, const float* decay, double* sums,
                         int threads) {
  if (threads < 1) return -1;
  const LhoptConstants k(constants, adamax);
  const std::vector<LhoptJob> jobs = lhopt_jobs(n_tensors, sizes);
  const int64_t n_jobs = static_cast<int64_t>(jobs.size());
  std::vector<double> partial(static_cast<size_t>(n_jobs) * LHOPT_SUMS, 0.0);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t j = 0; j < n_jobs; ++j) {
    const LhoptJob& job = jobs[j];
    const int64_t t = job.tensor;
    double* out = partial.data() + j * LHOPT_SUMS;
    const float l = lr ? lr[t] : 0.0f, d = lr ? decay[t] : 1.0f;
    if (stats && lr) {
      lhopt_moments_job<true, true>(k, job.lo, job.hi, p[t], g[t], m[t], v[t], decay_in_update[t], l, d, out);
    } else if (stats) {
      lhopt_moments_job<true, false>(k, job.lo, job.hi, p[t], g[t], m[t], v[t], decay_in_update[t], l, d, out);
    } else if (lr) {
      lhopt_moments_job<false, true>(k, job.lo, job.hi, p[t], g[t], m[t], v[t], decay_in_update[t], l, d, out);
    } else {
      lhopt_moments_job<false, false>(k, job.lo, job.hi, p[t], g[t], m[t], v[t], decay_in_update[t], l, d, out);
    }
  }
  std::fill(sums, sums + n_tensors * LHOPT_SUMS, 0.0);
  for (int64_t j = 0; j < n_jobs; ++j) {
    for (int s = 0; s < LHOPT_SUMS; ++s) sums[jobs[j].tensor * LHOPT_SUMS + s] += partial[j * LHOPT_SUMS + s];
  }
  return 0;
}

// LHOPT's inner AdamW, pass 2: p <- decay p - lr u per tensor, after pass 1 (whose constants it takes).
int loptim_lhopt_apply(int64_t n_tensors, const int64_t* sizes, float* const* p, float* const* m, float* const* v,
                       const float* constants, int adamax, const float* decay_in_update, const float* lr,
                       const float* decay, int threads) {
  if (threads < 1) return -1;
  const LhoptConstants k(constants, adamax);
  const std::vector<LhoptJob> jobs = lhopt_jobs(n_tensors, sizes);
  const int64_t n_jobs = static_cast<int64_t>(jobs.size());
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t j = 0; j < n_jobs; ++j) {
    const int64_t t = jobs[j].tensor;
    lhopt_apply_job(k, jobs[j].lo, jobs[j].hi, p[t], m[t], v[t], decay_in_update[t], lr[t], decay[t]);
  }
  return 0;
}

}  // extern "C"
