// Representation flow (Piergiovanni & Ryoo 2019, Algorithm 1): fused TV-L1 iterations on the CPU.
// Each (sample, channel, frame pair) image runs all its iterations while its fields stay in cache.
// Backward recomputes the forward of one image, storing its per-iteration states in a per-thread
// buffer, and sweeps back through the iterations (adjoint of every step, see kernels/cpu_native.py).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <thread>
#include <vector>

namespace {

typedef int64_t i64;

struct Spec {
  i64 B, C, T, H, W, M;
  int K;       // iterations
  int sobel;   // 1: 3x3 replicate-padded flow gradient; 0: forward differences (0 at the far edge)
  float theta, lt, tot, eps;
  const float* ig;  // [2][9] image gradient kernels (x, y) as 3x3, replicate padding
  const float* fg;  // [2][9] flow gradient kernels: sobel 3x3; central taps (u[j], u[j+1]) in [0..1]
  const float* dv;  // [2][2] divergence kernels: x: k0*p[j-1] + k1*p[j]; y: k0*p[i-1] + k1*p[i]
};

// Parameter-gradient accumulators (double): theta, lambda*theta, tau/theta, ig[18], fg[18], dv[4].
enum { G_THETA = 0, G_LT = 1, G_TOT = 2, G_IG = 3, G_FG = 21, G_DV = 39, G_N = 43 };

inline float tap9(const float* k, const float* r0, const float* r1, const float* r2, i64 jm, i64 j, i64 jp) {
  return k[0] * r0[jm] + k[1] * r0[j] + k[2] * r0[jp] + k[3] * r1[jm] + k[4] * r1[j] + k[5] * r1[jp] +
         k[6] * r2[jm] + k[7] * r2[j] + k[8] * r2[jp];
}

// One output row of two 3x3 cross-correlations with replicate padding.
inline void corr3_rep2_row(const float* in, i64 H, i64 W, i64 i, const float* kx, const float* ky, float* ox,
                           float* oy) {
  const float* r0 = in + (i > 0 ? i - 1 : 0) * W;
  const float* r1 = in + i * W;
  const float* r2 = in + (i + 1 < H ? i + 1 : H - 1) * W;
  for (i64 j = 1; j < W - 1; ++j) {
    ox[j] = tap9(kx, r0, r1, r2, j - 1, j, j + 1);
    oy[j] = tap9(ky, r0, r1, r2, j - 1, j, j + 1);
  }
  i64 last = W - 1;
  ox[0] = tap9(kx, r0, r1, r2, 0, 0, W > 1 ? 1 : 0);
  oy[0] = tap9(ky, r0, r1, r2, 0, 0, W > 1 ? 1 : 0);
  if (last > 0) {
    ox[last] = tap9(kx, r0, r1, r2, last - 1, last, last);
    oy[last] = tap9(ky, r0, r1, r2, last - 1, last, last);
  }
}

// Flow gradient of u, one row: (dx, dy).
inline void flow_grad_row(const Spec& s, const float* u, i64 i, float* dx, float* dy) {
  const i64 H = s.H, W = s.W;
  if (s.sobel) {
    corr3_rep2_row(u, H, W, i, s.fg, s.fg + 9, dx, dy);
    return;
  }
  const float k0 = s.fg[0], k1 = s.fg[1], l0 = s.fg[9], l1 = s.fg[10];
  const float* r = u + i * W;
  for (i64 j = 0; j < W - 1; ++j) dx[j] = k0 * r[j] + k1 * r[j + 1];
  dx[W - 1] = 0.0f;
  if (i + 1 < H) {
    const float* rn = r + W;
    for (i64 j = 0; j < W; ++j) dy[j] = l0 * r[j] + l1 * rn[j];
  } else {
    for (i64 j = 0; j < W; ++j) dy[j] = 0.0f;
  }
}

// Adjoint of the flow gradient: ub += grad^T (dbx, dby). q: (H+2)*(W+2) scratch.
void flow_grad_adjoint(const Spec& s, const float* kx, const float* ky, bool sobel, const float* dbx,
                       const float* dby, float* ub, float* q) {
  const i64 H = s.H, W = s.W, PW = W + 2;
  if (!sobel) {
    const float k0 = kx[0], k1 = kx[1], l0 = ky[0], l1 = ky[1];
    for (i64 i = 0; i < H; ++i) {
      const float* bx = dbx + i * W;
      float* o = ub + i * W;
      for (i64 j = 0; j < W - 1; ++j) o[j] += k0 * bx[j];
      for (i64 j = 1; j < W; ++j) o[j] += k1 * bx[j - 1];
    }
    for (i64 i = 0; i + 1 < H; ++i) {
      const float* by = dby + i * W;
      float* o0 = ub + i * W;
      float* o1 = o0 + W;
      for (i64 j = 0; j < W; ++j) {
        o0[j] += l0 * by[j];
        o1[j] += l1 * by[j];
      }
    }
    return;
  }
  std::fill(q, q + (H + 2) * PW, 0.0f);
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) {
      const float wx = kx[a * 3 + b], wy = ky[a * 3 + b];
      for (i64 i = 0; i < H; ++i) {
        float* qr = q + (i + a) * PW + b;
        const float* bx = dbx + i * W;
        const float* by = dby + i * W;
        for (i64 j = 0; j < W; ++j) qr[j] += wx * bx[j] + wy * by[j];
      }
    }
  // Fold the padding ring back onto the border it replicates.
  for (i64 j = 0; j < PW; ++j) {
    q[PW + j] += q[j];
    q[H * PW + j] += q[(H + 1) * PW + j];
  }
  for (i64 r = 1; r <= H; ++r) {
    q[r * PW + 1] += q[r * PW];
    q[r * PW + W] += q[r * PW + W + 1];
    const float* qr = q + r * PW + 1;
    float* o = ub + (r - 1) * W;
    for (i64 j = 0; j < W; ++j) o[j] += qr[j];
  }
}

// Replicate-padded copy (H+2)x(W+2).
void pad_rep(const float* in, i64 H, i64 W, float* out) {
  const i64 PW = W + 2;
  for (i64 r = 0; r < H + 2; ++r) {
    i64 i = std::min(std::max<i64>(r - 1, 0), H - 1);
    const float* src = in + i * W;
    float* dst = out + r * PW;
    dst[0] = src[0];
    std::memcpy(dst + 1, src, sizeof(float) * W);
    dst[W + 1] = src[W - 1];
  }
}

// g[a*3+b] += sum_ij db[i][j] * pad[i+a][j+b]
void kernel_grad3(const float* db, const float* pad, i64 H, i64 W, double* g) {
  const i64 PW = W + 2;
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) {
      double acc = 0.0;
      for (i64 i = 0; i < H; ++i) {
        const float* pr = pad + (i + a) * PW + b;
        const float* d = db + i * W;
        float row = 0.0f;
#pragma omp simd reduction(+ : row)
        for (i64 j = 0; j < W; ++j) row += d[j] * pr[j];
        acc += row;
      }
      g[a * 3 + b] += acc;
    }
}

struct Image {
  // Per image constants of Algorithm 1.
  float *gx, *gy, *thr, *inv, *rc;
};

void prepare(const Spec& s, const float* f1, const float* f2, Image& im) {
  const i64 H = s.H, W = s.W;
  for (i64 i = 0; i < H; ++i) corr3_rep2_row(f2, H, W, i, s.ig, s.ig + 9, im.gx + i * W, im.gy + i * W);
  for (i64 p = 0; p < s.M; ++p) {
    const float gsq = im.gx[p] * im.gx[p] + im.gy[p] * im.gy[p];
    im.thr[p] = s.lt * gsq;
    im.inv[p] = 1.0f / (gsq + s.eps);
    im.rc[p] = f2[p] - f1[p];
  }
}

inline float tv_step(float rho, float thr, float inv, float lt) {
  const float inner = rho > thr ? -lt : -rho * inv;
  return rho < -thr ? lt : inner;
}

// Phase A (Eqs. 2-4, 9): u1 = u0 + step * grad F2 + theta * div(p0); u1 may alias u0.
// zero: a row of W zeros (the zero padding above the first row).
void phase_a(const Spec& s, const Image& im, const float* ux0, const float* uy0, const float* pxx, const float* pyx,
             const float* pxy, const float* pyy, float* ux1, float* uy1, const float* zero) {
  const i64 H = s.H, W = s.W;
  const float dx0 = s.dv[0], dx1 = s.dv[1], dy0 = s.dv[2], dy1 = s.dv[3];
  const float theta = s.theta, lt = s.lt;
  auto pixel = [&](i64 p, float lxx, float lxy, float uyx, float uyy) {
    const float rho = im.rc[p] + im.gx[p] * ux0[p] + im.gy[p] * uy0[p];
    const float st = tv_step(rho, im.thr[p], im.inv[p], lt);
    const float divx = (dx0 * lxx + dx1 * pxx[p]) + (dy0 * uyx + dy1 * pyx[p]);
    const float divy = (dx0 * lxy + dx1 * pxy[p]) + (dy0 * uyy + dy1 * pyy[p]);
    ux1[p] = (ux0[p] + st * im.gx[p]) + theta * divx;
    uy1[p] = (uy0[p] + st * im.gy[p]) + theta * divy;
  };
  for (i64 i = 0; i < H; ++i) {
    const i64 o = i * W;
    const float* upx = i > 0 ? pyx + o - W : zero;
    const float* upy = i > 0 ? pyy + o - W : zero;
    pixel(o, 0.0f, 0.0f, upx[0], upy[0]);
#pragma omp simd
    for (i64 j = 1; j < W; ++j) pixel(o + j, pxx[o + j - 1], pxy[o + j - 1], upx[j], upy[j]);
  }
}

// Phase B (Eqs. 5, 10) for one flow component: p1 = (p0 + tot * grad u) / (1 + tot * |grad u|).
void phase_b(const Spec& s, const float* u, const float* px0, const float* py0, float* px1, float* py1, float* rx,
             float* ry) {
  const i64 H = s.H, W = s.W;
  const float tot = s.tot, eps = s.eps;
  for (i64 i = 0; i < H; ++i) {
    flow_grad_row(s, u, i, rx, ry);
    const i64 o = i * W;
    for (i64 j = 0; j < W; ++j) {
      const float nrm = std::sqrt(rx[j] * rx[j] + ry[j] * ry[j] + eps);
      const float den = 1.0f + tot * nrm;
      px1[o + j] = (px0[o + j] + tot * rx[j]) / den;
      py1[o + j] = (py0[o + j] + tot * ry[j]) / den;
    }
  }
}

template <class F>
void parallel_for(i64 n, int threads, F&& fn) {
  threads = (int)std::max<i64>(1, std::min<i64>(threads, n));
  std::atomic<i64> next(0);
  std::atomic<int> failed(0);
  auto work = [&](int tid) {
    try {
      for (i64 k = next++; k < n; k = next++) fn(tid, k);
    } catch (...) {
      failed = 1;
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
  if (failed) throw std::runtime_error("repflow native kernel failed");
}

Spec make_spec(const i64* shape, int K, int sobel, const float* coef, const float* ig, const float* fg,
               const float* dv) {
  Spec s;
  s.B = shape[0]; s.C = shape[1]; s.T = shape[2]; s.H = shape[3]; s.W = shape[4];
  s.M = s.H * s.W;
  s.K = K; s.sobel = sobel;
  s.theta = coef[0]; s.lt = coef[1]; s.tot = coef[2]; s.eps = coef[3];
  s.ig = ig; s.fg = fg; s.dv = dv;
  return s;
}

}  // namespace

extern "C" {

int repflow_abi_version() { return 1; }

// x (B, C, T, H, W) float32 contiguous -> out (B, 2C, T-1, H, W): u_x of all channels, then u_y.
int repflow_forward(const float* x, float* out, const int64_t* shape, int K, int sobel, const float* coef,
                    const float* ig, const float* fg, const float* dv, int threads) {
  try {
    const Spec s = make_spec(shape, K, sobel, coef, ig, fg, dv);
    const i64 M = s.M, P = s.T - 1;
    std::vector<std::vector<float>> work(std::max(1, threads));
    parallel_for(s.B * s.C * P, threads, [&](int tid, i64 task) {
      const i64 t = task % P, bc = task / P, b = bc / s.C, c = bc % s.C;
      std::vector<float>& w = work[tid];
      if (w.empty()) w.resize(11 * M + 3 * s.W);
      std::fill(w.begin(), w.begin() + 4 * M, 0.0f);
      float *pxx = w.data(), *pyx = pxx + M, *pxy = pyx + M, *pyy = pxy + M;
      Image im{pyy + M, pyy + 2 * M, pyy + 3 * M, pyy + 4 * M, pyy + 5 * M};
      float *rx = pyy + 6 * M, *ry = rx + s.W, *zero = ry + s.W;
      std::fill(zero, zero + s.W, 0.0f);
      const float* f1 = x + (bc * s.T + t) * M;
      float* ux = out + ((b * 2 * s.C + c) * P + t) * M;
      float* uy = out + ((b * 2 * s.C + s.C + c) * P + t) * M;
      std::fill(ux, ux + M, 0.0f);
      std::fill(uy, uy + M, 0.0f);
      prepare(s, f1, f1 + M, im);
      for (int k = 0; k < s.K; ++k) {
        phase_a(s, im, ux, uy, pxx, pyx, pxy, pyy, ux, uy, zero);
        phase_b(s, ux, pxx, pyx, pxx, pyx, rx, ry);
        phase_b(s, uy, pxy, pyy, pxy, pyy, rx, ry);
      }
    });
    return 0;
  } catch (...) {
    return 1;
  }
}

// Gradients of sum(out * gout). gx_in (B, C, T, H, W) is overwritten when non-null; gparams[43] (double) is
// overwritten. need: bit 1 divergence kernels, bit 2 flow-gradient kernels, bit 4 image-gradient kernels.
int repflow_backward(const float* x, const float* gout, float* gx_in, double* gparams, const int64_t* shape, int K,
                     int sobel, const float* coef, const float* ig, const float* fg, const float* dv, int need,
                     int threads) {
  try {
    const Spec s = make_spec(shape, K, sobel, coef, ig, fg, dv);
    const i64 M = s.M, P = s.T - 1, H = s.H, W = s.W;
    const i64 PM = (H + 2) * (W + 2);
    const bool need_dv = need & 1, need_fg = need & 2, need_ig = need & 4;
    threads = std::max(1, threads);
    std::vector<std::vector<float>> work(threads);
    // One gradient row per (sample, channel) task, summed in task order: deterministic for any thread count.
    std::vector<double> grads(s.B * s.C * G_N, 0.0);
    parallel_for(s.B * s.C, threads, [&](int tid, i64 bc) {
      const i64 b = bc / s.C, c = bc % s.C;
      std::vector<float>& w = work[tid];
      // states: U[k] (2M) k=0..K, Pd[k] (4M) k=0..K-1; image constants 5M; adjoints 10M; scratch
      const i64 n_states = (s.K + 1) * 2 * M + (i64)s.K * 4 * M;
      const i64 need_floats = n_states + 5 * M + 10 * M + 4 * M + 2 * PM + W;
      if ((i64)w.size() < need_floats) w.resize(need_floats);
      float* U = w.data();
      float* Pd = U + (s.K + 1) * 2 * M;
      float* base = Pd + (i64)s.K * 4 * M;
      Image im{base, base + M, base + 2 * M, base + 3 * M, base + 4 * M};
      float* ubx = base + 5 * M;
      float *uby = ubx + M, *pbxx = uby + M, *pbyx = pbxx + M, *pbxy = pbyx + M, *pbyy = pbxy + M;
      float *gbx = pbyy + M, *gby = gbx + M, *rcb = gby + M, *invb = rcb + M;
      float *dX = invb + M, *dY = dX + M, *dbX = dY + M, *dbY = dbX + M;
      float *q = dbY + M, *pad = q + PM, *zero = pad + PM;
      std::fill(zero, zero + W, 0.0f);
      double* G = grads.data() + bc * G_N;
      const float theta = s.theta, lt = s.lt, tot = s.tot, eps = s.eps;
      const float dvx0 = s.dv[0], dvx1 = s.dv[1], dvy0 = s.dv[2], dvy1 = s.dv[3];
      float* gin = gx_in ? gx_in + bc * s.T * M : nullptr;
      if (gin) std::fill(gin, gin + s.T * M, 0.0f);
      for (i64 t = 0; t < P; ++t) {
        const float* f1 = x + (bc * s.T + t) * M;
        const float* f2 = f1 + M;
        prepare(s, f1, f2, im);
        // Forward, keeping every state.
        std::fill(U, U + 2 * M, 0.0f);
        std::fill(Pd, Pd + 4 * M, 0.0f);
        for (int k = 0; k < s.K; ++k) {
          float* u0 = U + k * 2 * M;
          float* u1 = u0 + 2 * M;
          float* p0 = Pd + (i64)k * 4 * M;
          phase_a(s, im, u0, u0 + M, p0, p0 + M, p0 + 2 * M, p0 + 3 * M, u1, u1 + M, zero);
          if (k + 1 < s.K) {
            float* p1 = p0 + 4 * M;
            phase_b(s, u1, p0, p0 + M, p1, p1 + M, dX, dY);
            phase_b(s, u1 + M, p0 + 2 * M, p0 + 3 * M, p1 + 2 * M, p1 + 3 * M, dX, dY);
          }
        }
        // Reverse sweep.
        const float* go_x = gout + ((b * 2 * s.C + c) * P + t) * M;
        const float* go_y = gout + ((b * 2 * s.C + s.C + c) * P + t) * M;
        std::memcpy(ubx, go_x, sizeof(float) * M);
        std::memcpy(uby, go_y, sizeof(float) * M);
        std::fill(pbxx, pbxx + 8 * M, 0.0f);  // p adjoints, gbx, gby, rcb, invb
        double g_theta = 0, g_lt = 0, g_tot = 0;
        for (int k = s.K - 1; k >= 0; --k) {
          const float* u0 = U + k * 2 * M;
          const float* u1 = u0 + 2 * M;
          const float* p0 = Pd + (i64)k * 4 * M;
          // --- reverse phase B (p^{k+1} from u^{k+1}, p^k); skipped when p^{k+1} is unused (k = K-1).
          if (k + 1 < s.K) {
            for (int comp = 0; comp < 2; ++comp) {
              const float* u = u1 + comp * M;
              const float* px0 = p0 + comp * 2 * M;
              const float* py0 = px0 + M;
              float* pbx = comp ? pbxy : pbxx;
              float* pby = comp ? pbyy : pbyx;
              float* ub = comp ? uby : ubx;
              for (i64 i = 0; i < H; ++i) flow_grad_row(s, u, i, dX + i * W, dY + i * W);
              float acc_tot = 0.0f;
#pragma omp simd reduction(+ : acc_tot)
              for (i64 p = 0; p < M; ++p) {
                const float nrm = std::sqrt(dX[p] * dX[p] + dY[p] * dY[p] + eps);
                const float den = 1.0f + tot * nrm;
                const float p1x = (px0[p] + tot * dX[p]) / den, p1y = (py0[p] + tot * dY[p]) / den;
                const float qbx = pbx[p] / den, qby = pby[p] / den;
                const float denb = -(pbx[p] * p1x + pby[p] * p1y) / den;
                acc_tot += qbx * dX[p] + qby * dY[p] + denb * nrm;
                const float nb = denb * tot / nrm;
                dbX[p] = qbx * tot + nb * dX[p];
                dbY[p] = qby * tot + nb * dY[p];
                pbx[p] = qbx;
                pby[p] = qby;
              }
              g_tot += acc_tot;
              flow_grad_adjoint(s, s.fg, s.fg + 9, s.sobel, dbX, dbY, ub, q);
              if (need_fg) {
                if (s.sobel) {
                  pad_rep(u, H, W, pad);
                  kernel_grad3(dbX, pad, H, W, G + G_FG);
                  kernel_grad3(dbY, pad, H, W, G + G_FG + 9);
                } else {
                  double k0 = 0, k1 = 0, l0 = 0, l1 = 0;
                  for (i64 i = 0; i < H; ++i) {
                    const float* r = u + i * W;
                    const float* bx = dbX + i * W;
                    for (i64 j = 0; j + 1 < W; ++j) {
                      k0 += bx[j] * r[j];
                      k1 += bx[j] * r[j + 1];
                    }
                    if (i + 1 < H) {
                      const float* by = dbY + i * W;
                      for (i64 j = 0; j < W; ++j) {
                        l0 += by[j] * r[j];
                        l1 += by[j] * r[j + W];
                      }
                    }
                  }
                  G[G_FG] += k0; G[G_FG + 1] += k1; G[G_FG + 9] += l0; G[G_FG + 10] += l1;
                }
              }
            }
          } else {
            std::fill(pbxx, pbxx + 4 * M, 0.0f);
          }
          // --- reverse phase A: u^{k+1} = (u^k + step * g) + theta * div(p^k).
          float acc_theta = 0.0f;
          double gdv[4] = {0, 0, 0, 0};
          for (int comp = 0; comp < 2; ++comp) {
            const float* px = p0 + comp * 2 * M;
            const float* py = px + M;
            const float* ub = comp ? uby : ubx;
            float* pbx = comp ? pbxy : pbxx;
            float* pby = comp ? pbyy : pbyx;
            for (i64 i = 0; i < H; ++i) {
              const i64 o = i * W;
              const float* up = i > 0 ? py + o - W : zero;      // p_y one row up (zero padded)
              const float* ubd = i + 1 < H ? ub + o + W : zero;  // adjoint one row down (zero past the end)
              float a0 = 0, a1 = 0, a2 = 0, a3 = 0, at = 0;
              // w = v + theta * div(p): div = (k0 p_x[j-1] + k1 p_x[j]) + (l0 p_y[i-1] + l1 p_y[i]).
              auto pixel = [&](i64 j, float lx, float zr) {
                const i64 p = o + j;
                const float div = (dvx0 * lx + dvx1 * px[p]) + (dvy0 * up[j] + dvy1 * py[p]);
                at += ub[p] * div;
                const float z = theta * ub[p];
                pbx[p] += dvx1 * z + dvx0 * zr;
                pby[p] += dvy1 * z + dvy0 * (theta * ubd[j]);
                a0 += z * lx;
                a1 += z * px[p];
                a2 += z * up[j];
                a3 += z * py[p];
              };
              pixel(0, 0.0f, W > 1 ? theta * ub[o + 1] : 0.0f);
#pragma omp simd reduction(+ : a0, a1, a2, a3, at)
              for (i64 j = 1; j < W - 1; ++j) pixel(j, px[o + j - 1], theta * ub[o + j + 1]);
              if (W > 1) pixel(W - 1, px[o + W - 2], 0.0f);
              gdv[0] += a0; gdv[1] += a1; gdv[2] += a2; gdv[3] += a3;
              acc_theta += at;
            }
          }
          g_theta += acc_theta;
          if (need_dv)
            for (int e = 0; e < 4; ++e) G[G_DV + e] += gdv[e];
          float acc_lt = 0.0f;
          const float* u0x = u0;
          const float* u0y = u0 + M;
#pragma omp simd reduction(+ : acc_lt)
          for (i64 p = 0; p < M; ++p) {
            const float rho = im.rc[p] + im.gx[p] * u0x[p] + im.gy[p] * u0y[p];
            const float st = tv_step(rho, im.thr[p], im.inv[p], lt);
            const float sb = ubx[p] * im.gx[p] + uby[p] * im.gy[p];
            const bool lo = rho < -im.thr[p];
            const bool hi = rho > im.thr[p];
            // Eq. 3 branches: +lt where rho < -thr, -lt where rho > thr, -rho * inv elsewhere.
            acc_lt += lo ? sb : (hi ? -sb : 0.0f);
            const bool mid = !(lo | hi);
            const float rb = mid ? -sb * im.inv[p] : 0.0f;
            invb[p] += mid ? -sb * rho : 0.0f;
            rcb[p] += rb;
            gbx[p] += ubx[p] * st + rb * u0x[p];
            gby[p] += uby[p] * st + rb * u0y[p];
            ubx[p] += rb * im.gx[p];
            uby[p] += rb * im.gy[p];
          }
          g_lt += acc_lt;
        }
        G[G_THETA] += g_theta;
        G[G_LT] += g_lt;
        G[G_TOT] += g_tot;
        // Through the image constants: inv = 1 / (|g|^2 + eps), rho_c = f2 - f1, g = grad F2.
        for (i64 p = 0; p < M; ++p) {
          const float gsqb = -invb[p] * im.inv[p] * im.inv[p];
          gbx[p] += 2.0f * im.gx[p] * gsqb;
          gby[p] += 2.0f * im.gy[p] * gsqb;
        }
        if (need_ig) {
          pad_rep(f2, H, W, pad);
          kernel_grad3(gbx, pad, H, W, G + G_IG);
          kernel_grad3(gby, pad, H, W, G + G_IG + 9);
        }
        if (gin) {
          float* g1 = gin + t * M;
          float* g2 = g1 + M;
          for (i64 p = 0; p < M; ++p) {
            g1[p] -= rcb[p];
            g2[p] += rcb[p];
          }
          flow_grad_adjoint(s, s.ig, s.ig + 9, true, gbx, gby, g2, q);
        }
      }
    });
    for (int e = 0; e < G_N; ++e) {
      double v = 0.0;
      for (i64 task = 0; task < s.B * s.C; ++task) v += grads[task * G_N + e];
      gparams[e] = v;
    }
    return 0;
  } catch (...) {
    return 1;
  }
}

}  // extern "C"
