// The per-coordinate MLP update of loptim's MLP optimizer (both designs) as one fused CPU kernel.
//
// The reference is the pure PyTorch update (loptim/optimizers/mlp.py, MLPOptimizerNet.step_flat, and
// loptim/optimizers/mlp_generalist.py, update); tests/test_kernels.py checks that both agree to float tolerance.
// Two passes over tiles of TILE coordinates that never straddle two tensors: pass 1 advances the accumulators in
// place and sums each raw feature's square per tensor (per thread, then reduced); pass 2 recomputes the raw
// features from the new state, multiplies them into the first layer with the per-tensor normalizer folded into its
// weights, and runs the rest of the network with the hidden activations of one tile in registers and L1.
// Built at first use by loptim/kernels/__init__.py (g++ -O3 -march=native -fopenmp); float32 only.
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace {

constexpr int TILE = 64;

// exp(x) for x in [-87, 88]: 2^n * p(r) with a degree-6 polynomial (Cephes' expf coefficients), written so that
// the compiler vectorizes it (libm's expf is not vectorized without -ffast-math). Relative error ~2e-7.
inline float fast_exp(float x) {
  x = std::fmin(std::fmax(x, -87.0f), 88.0f);
  const float n = std::nearbyint(x * 1.44269504088896341f);
  const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  __builtin_memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

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

// One dense layer over a tile: out[j][c] = act(bias[j] + sum_i w[j][i] in[i][c]), I inputs, J outputs.
// Register blocking: JB output units x VB vectors of 8 coordinates stay in ymm registers across the input loop
// (3 x 4 = 12 accumulators of the 16 registers), so each FMA takes one operand from L1 and the rest from registers.
typedef float v8 __attribute__((vector_size(32)));
constexpr int V = TILE / 8;  // vectors per tile row

inline v8 splat(float s) { return v8{s, s, s, s, s, s, s, s}; }

template <int I, int JB, int VB, bool Relu>
inline void block(const float* __restrict w, const float* __restrict bias, const v8* __restrict in,
                  v8* __restrict out, int j0, int v0) {
  v8 acc[JB][VB];
#pragma GCC unroll 16
  for (int a = 0; a < JB; ++a) {
#pragma GCC unroll 16
    for (int b = 0; b < VB; ++b) acc[a][b] = splat(bias[j0 + a]);
  }
  for (int i = 0; i < I; ++i) {
    v8 x[VB];
#pragma GCC unroll 16
    for (int b = 0; b < VB; ++b) x[b] = in[i * V + v0 + b];
#pragma GCC unroll 16
    for (int a = 0; a < JB; ++a) {
      const v8 wa = splat(w[(j0 + a) * I + i]);
#pragma GCC unroll 16
      for (int b = 0; b < VB; ++b) acc[a][b] += wa * x[b];
    }
  }
#pragma GCC unroll 16
  for (int a = 0; a < JB; ++a) {
#pragma GCC unroll 16
    for (int b = 0; b < VB; ++b) {
      v8 y = acc[a][b];
      if (Relu) y = y > 0.0f ? y : v8{};
      out[(j0 + a) * V + v0 + b] = y;
    }
  }
}

template <int I, int J, bool Relu>
inline void layer(const float* __restrict w, const float* __restrict bias, const float* __restrict in,
                  float* __restrict out) {
  constexpr int JB = 3, VB = 4, REST = J % JB;
  const v8* vin = reinterpret_cast<const v8*>(in);
  v8* vout = reinterpret_cast<v8*>(out);
  for (int v0 = 0; v0 < V; v0 += VB) {
    for (int j0 = 0; j0 + JB <= J; j0 += JB) block<I, JB, VB, Relu>(w, bias, vin, vout, j0, v0);
    if constexpr (REST > 0) block<I, REST, VB, Relu>(w, bias, vin, vout, J - REST, v0);
  }
}

// ---- the Metz 2019 design: 6 momenta, 10 features, update -step_mult * d * exp(exp_mult * m) -----------------
struct Metz {
  static constexpr int K = 6;
  static constexpr int F = 10;
  float decay[K];
  float rms_decay, rsqrt_eps;
  float step_mult, exp_mult;

  // Advance the state of coordinate i (in place) and write its raw features into x[f * TILE + c].
  inline void advance(int64_t n, int64_t i, float g, float* __restrict momenta, float* __restrict rms) const {
    for (int k = 0; k < K; ++k) {
      float* m = momenta + k * n + i;
      *m = decay[k] * *m + (1.0f - decay[k]) * g;
    }
    rms[i] = rms_decay * rms[i] + (1.0f - rms_decay) * g * g;
  }
  inline void features(int64_t n, int64_t i, float g, float p, const float* __restrict momenta,
                       const float* __restrict rms, float* __restrict x, int c) const {
    const float r = 1.0f / std::sqrt(rms[i] + rsqrt_eps);
    x[0 * TILE + c] = g;
    x[1 * TILE + c] = p;
    for (int k = 0; k < K; ++k) x[(2 + k) * TILE + c] = momenta[k * n + i];
    x[8 * TILE + c] = g * r;
    x[9 * TILE + c] = momenta[2 * n + i] * r;  // the 0.9 momentum
  }
  inline float delta(float d, float m, int64_t, const float*, const float*, float) const {
    return -step_mult * d * fast_exp(exp_mult * m);
  }
};

// ---- the generalist design: 3 momenta and Adam's v, 9 features, a nominal Adam step the network corrects ------
struct Generalist {
  static constexpr int K = 3;
  static constexpr int F = 9;
  float decay[K];
  float rms_decay, adam_eps;
  float bias1, bias2;  // 1 - beta1^t, 1 - beta2^t
  float nominal_lr, schedule, log_lo, log_hi;

  inline void advance(int64_t n, int64_t i, float g, float* __restrict momenta, float* __restrict rms) const {
    for (int k = 0; k < K; ++k) {
      float* m = momenta + k * n + i;
      *m = decay[k] * *m + (1.0f - decay[k]) * g;
    }
    rms[i] = rms_decay * rms[i] + (1.0f - rms_decay) * g * g;
  }
  inline float inverse(int64_t i, const float* __restrict rms) const {
    return 1.0f / (std::sqrt(rms[i] / bias2) + adam_eps);
  }
  inline void features(int64_t n, int64_t i, float g, float p, const float* __restrict momenta,
                       const float* __restrict rms, float* __restrict x, int c) const {
    const float inv = inverse(i, rms);
    x[0 * TILE + c] = g;
    x[1 * TILE + c] = p;
    for (int k = 0; k < K; ++k) x[(2 + k) * TILE + c] = momenta[k * n + i];
    x[5 * TILE + c] = g * inv;
    for (int k = 0; k < K; ++k) x[(6 + k) * TILE + c] = momenta[k * n + i] * inv;
  }
  inline float delta(float d, float s, int64_t i, const float* __restrict momenta, const float* __restrict rms,
                     float) const {
    const float nominal = momenta[i] / bias1 * inverse(i, rms);
    const float log_step = std::fmin(std::fmax(schedule + s, log_lo), log_hi);
    return -nominal_lr * fast_exp(log_step) * (nominal + d);
  }
};

// The whole update. w1 (H, F), w2 (H, H), w3 (2, H); b1 (H,) already holds the per-step bias (time features);
// w1_tensor (H,) or null multiplies log RMS(param) of the tensor (generalist). Returns 0, or -1 on a bad thread count.
template <class D, int H>
int run(const D& design, int64_t n, int64_t n_tensors, const int64_t* offsets, const float* grad, const float* param,
        float* momenta, float* rms, float* out, const float* w1, const float* b1, const float* w1_tensor,
        const float* w2, const float* b2, const float* w3, const float* b3, float normalizer_eps, int threads) {
  constexpr int F = D::F;
  if (threads < 1) return -1;
  const Tiles tiles = make_tiles(offsets, n_tensors);
  const int64_t n_tiles = static_cast<int64_t>(tiles.start.size());
  std::vector<double> sums(static_cast<size_t>(threads) * n_tensors * F, 0.0);

#pragma omp parallel num_threads(threads)
  {
    double* mine = sums.data() + static_cast<size_t>(omp_get_thread_num()) * n_tensors * F;
    alignas(64) float x[F * TILE];
#pragma omp for schedule(static)
    for (int64_t k = 0; k < n_tiles; ++k) {
      const int64_t lo = tiles.start[k], hi = tiles.end[k];
      const int width = static_cast<int>(hi - lo);
      for (int c = 0; c < width; ++c) {
        const int64_t i = lo + c;
        design.advance(n, i, grad[i], momenta, rms);
        design.features(n, i, grad[i], param[i], momenta, rms, x, c);
      }
      double* acc = mine + tiles.owner[k] * F;
      for (int f = 0; f < F; ++f) {
        float s = 0.0f;
        for (int c = 0; c < width; ++c) s += x[f * TILE + c] * x[f * TILE + c];
        acc[f] += s;
      }
    }
  }

  // Fold each tensor's normalizer rsqrt(mean(x_f^2) + eps) into the first layer's columns.
  std::vector<float> w1f(static_cast<size_t>(n_tensors) * H * F), b1f(static_cast<size_t>(n_tensors) * H);
  for (int64_t t = 0; t < n_tensors; ++t) {
    const double size = static_cast<double>(offsets[t + 1] - offsets[t]);
    double mean_sq[F];
    for (int f = 0; f < F; ++f) {
      double total = 0.0;
      for (int r = 0; r < threads; ++r) total += sums[(static_cast<size_t>(r) * n_tensors + t) * F + f];
      mean_sq[f] = total / size;
    }
    const float log_rms = w1_tensor ? 0.5f * std::log(static_cast<float>(mean_sq[1]) + normalizer_eps) : 0.0f;
    for (int j = 0; j < H; ++j) {
      for (int f = 0; f < F; ++f) {
        const float scale = 1.0f / std::sqrt(static_cast<float>(mean_sq[f]) + normalizer_eps);
        w1f[(t * H + j) * F + f] = w1[j * F + f] * scale;
      }
      b1f[t * H + j] = b1[j] + (w1_tensor ? w1_tensor[j] * log_rms : 0.0f);
    }
  }

#pragma omp parallel num_threads(threads)
  {
    alignas(64) float x[F * TILE];
    alignas(64) float h1[H * TILE];
    alignas(64) float h2[H * TILE];
    alignas(64) float o[2 * TILE];
#pragma omp for schedule(static)
    for (int64_t k = 0; k < n_tiles; ++k) {
      const int64_t lo = tiles.start[k], hi = tiles.end[k], t = tiles.owner[k];
      const int width = static_cast<int>(hi - lo);
      for (int c = 0; c < width; ++c) design.features(n, lo + c, grad[lo + c], param[lo + c], momenta, rms, x, c);
      for (int f = 0; f < F; ++f) {
        for (int c = width; c < TILE; ++c) x[f * TILE + c] = 0.0f;
      }
      layer<F, H, true>(w1f.data() + t * H * F, b1f.data() + t * H, x, h1);
      layer<H, H, true>(w2, b2, h1, h2);
      layer<H, 2, false>(w3, b3, h2, o);
      for (int c = 0; c < width; ++c) out[lo + c] = design.delta(o[c], o[TILE + c], lo + c, momenta, rms, 0.0f);
    }
  }
  return 0;
}

template <class D>
int dispatch(const D& design, int hidden, int64_t n, int64_t n_tensors, const int64_t* offsets, const float* grad,
             const float* param, float* momenta, float* rms, float* out, const float* w1, const float* b1,
             const float* w1_tensor, const float* w2, const float* b2, const float* w3, const float* b3, float eps,
             int threads) {
  switch (hidden) {
    case 4:
      return run<D, 4>(design, n, n_tensors, offsets, grad, param, momenta, rms, out, w1, b1, w1_tensor, w2, b2,
                       w3, b3, eps, threads);
    case 8:
      return run<D, 8>(design, n, n_tensors, offsets, grad, param, momenta, rms, out, w1, b1, w1_tensor, w2, b2,
                       w3, b3, eps, threads);
    case 16:
      return run<D, 16>(design, n, n_tensors, offsets, grad, param, momenta, rms, out, w1, b1, w1_tensor, w2, b2,
                        w3, b3, eps, threads);
    case 32:
      return run<D, 32>(design, n, n_tensors, offsets, grad, param, momenta, rms, out, w1, b1, w1_tensor, w2, b2,
                        w3, b3, eps, threads);
    default:
      return -2;  // no kernel for this width: the caller falls back to the reference
  }
}

}  // namespace

extern "C" {

// hyper: momentum decays (6), rms decay, rsqrt eps, step_mult, exp_mult.
int loptim_mlp_metz(int hidden, int64_t n, int64_t n_tensors, const int64_t* offsets, const float* grad,
                    const float* param, float* momenta, float* rms, float* out, const float* w1, const float* b1,
                    const float* w2, const float* b2, const float* w3, const float* b3, const float* hyper,
                    float normalizer_eps, int threads) {
  Metz design{};
  for (int k = 0; k < Metz::K; ++k) design.decay[k] = hyper[k];
  design.rms_decay = hyper[6];
  design.rsqrt_eps = hyper[7];
  design.step_mult = hyper[8];
  design.exp_mult = hyper[9];
  return dispatch(design, hidden, n, n_tensors, offsets, grad, param, momenta, rms, out, w1, b1, nullptr, w2, b2,
                  w3, b3, normalizer_eps, threads);
}

// hyper: momentum decays (3), rms decay, adam eps, 1 - beta1^t, 1 - beta2^t, nominal lr, schedule (the head's
// output this step), log step range (lo, hi).
int loptim_mlp_generalist(int hidden, int64_t n, int64_t n_tensors, const int64_t* offsets, const float* grad,
                          const float* param, float* momenta, float* rms, float* out, const float* w1,
                          const float* b1, const float* w1_tensor, const float* w2, const float* b2, const float* w3,
                          const float* b3, const float* hyper, float normalizer_eps, int threads) {
  Generalist design{};
  for (int k = 0; k < Generalist::K; ++k) design.decay[k] = hyper[k];
  design.rms_decay = hyper[3];
  design.adam_eps = hyper[4];
  design.bias1 = hyper[5];
  design.bias2 = hyper[6];
  design.nominal_lr = hyper[7];
  design.schedule = hyper[8];
  design.log_lo = hyper[9];
  design.log_hi = hyper[10];
  return dispatch(design, hidden, n, n_tensors, offsets, grad, param, momenta, rms, out, w1, b1, w1_tensor, w2, b2,
                  w3, b3, normalizer_eps, threads);
}

}  // extern "C"
