"""Triton kernels of the representation-flow iterations (Algorithm 1, Eqs. 2-10): forward and backward.

Imported only by :mod:`repflow_core.kernels.triton_flow` (it needs ``triton``; with ``TRITON_INTERPRET=1``
set before this module is imported, the kernels run on CPU tensors through Triton's interpreter).

Layout: one program per image at a time (an image = one (sample, channel, frame pair)); a persistent grid
of NPROG programs walks the images ``n = pid, pid + NPROG, ...``. A program holds the whole H x W image
flattened into one BLOCK = next_pow2(H * W) vector, so every field (u, p, grad F2, ...) lives in
registers across all iterations. Stencils need neighbours held by other threads: the field is stored to
the program's own global scratch (L1/L2 resident), ``tl.debug_barrier()`` (bar.sync, which also orders
global memory inside the block) and the shifted values are loaded back. Two barriers per iteration make
every read-after-write and write-after-read on the scratch safe.

Backward recomputes the forward of the image, keeping its per-iteration states (u^k, p^k) in the
program's state scratch (K * 6 * H * W floats per program, independent of the batch), then sweeps back
through the iterations with the hand-written adjoint of each step: the same algebra as the native CPU
kernel (``tvl1_flow.cpp``), which test/test_flow_fused.py checks against autograd of the eager layer.
Register pressure (why the backward reloads instead of keeping): a program holds BLOCK * fields floats and an SM
has 64K registers. At 56x56 (BLOCK 4096) the ~26 fields the reverse sweep once kept live (image constants, four
accumulators, six adjoints, temporaries) needed about twice that, and the H200 check measured the forward+backward
~5x slower per pixel than at 28x28 (89 ms against 4.2 ms for 4x the pixels), the signature of spills to local
memory. So the reverse sweep keeps only the six adjoints (and indices) in registers, the recomputed forward only
u and p: the image constants grad F2 and rho_c are reloaded from the program's scratch each iteration (the Eq. 3
threshold and 1/|grad F2|^2 recomputed from them, the same expressions as :func:`_prepare`) and the four
constant-adjoint accumulators live in scratch (each thread updates its own elements), all L1/L2 resident.
Scratch per program: 9 * BLOCK floats (2 stencil fields, 3 constants, 4 accumulators).
Parameter gradients are summed per program into a float64 row (64 slots, 43 used:
theta, lambda*theta, tau/theta, image kernels 2x9, flow kernels 2x9, divergence 4); the host sums the rows.
"""

from __future__ import annotations

import triton
import triton.language as tl

# Slots of the parameter-gradient row (the native kernel's order).
G_THETA, G_LT, G_TOT, G_IG, G_FG, G_DV, G_N = 0, 1, 2, 3, 21, 39, 43
G_SLOTS = 64
# Integer arguments that vary with the batch, the channels, the clip or the iterations: not specialised (Triton
# would otherwise compile a new variant whenever one turns 1 or a multiple of 16, tens of seconds each at 56x56).
# H and W stay specialised: their divisibility lets loads vectorise.
_RUNTIME_INTS = ["N", "C", "T", "K", "NPROG", "ZERO"]


@triton.jit
def _rep(ptr, ii, jj, H, W, mask):
    """f[clamp(ii), clamp(jj)]: replicate padding."""
    ii = tl.minimum(tl.maximum(ii, 0), H - 1)
    jj = tl.minimum(tl.maximum(jj, 0), W - 1)
    return tl.load(ptr + ii * W + jj, mask=mask, other=0.0)


@triton.jit
def _zero(ptr, ii, jj, H, W, mask):
    """f[ii, jj], 0 outside the image: zero padding."""
    ok = mask & (ii >= 0) & (ii < H) & (jj >= 0) & (jj < W)
    return tl.load(ptr + ii * W + jj, mask=ok, other=0.0)


@triton.jit
def _corr3_rep2(ptr, kx_ptr, ky_ptr, i, j, H, W, mask):
    """Two 3x3 cross-correlations of one field with replicate padding (Eq. 8 / Eq. 10 Sobel)."""
    ox = tl.zeros(i.shape, tl.float32)
    oy = tl.zeros(i.shape, tl.float32)
    for a in tl.static_range(3):
        for b in tl.static_range(3):
            v = _rep(ptr, i + (a - 1), j + (b - 1), H, W, mask)
            ox += tl.load(kx_ptr + a * 3 + b) * v
            oy += tl.load(ky_ptr + a * 3 + b) * v
    return ox, oy


@triton.jit
def _adj_tap(bx_ptr, by_ptr, kx, ky, ii, jj, H, W, mask):
    return kx * _zero(bx_ptr, ii, jj, H, W, mask) + ky * _zero(by_ptr, ii, jj, H, W, mask)


@triton.jit
def _corr3_rep2_adjoint(bx_ptr, by_ptr, kx_ptr, ky_ptr, i, j, H, W, mask):
    """Adjoint of :func:`_corr3_rep2` (w.r.t. its input) as a gather: out[i, j] = sum over taps (a, b) and
    outputs (i', j') with clamp(i' + a - 1) = i, clamp(j' + b - 1) = j of k[a, b] * bx[i', j'] (+ ky * by).
    Per tap the regular source is i' = i + 1 - a; a = 0 also reaches i = 0 from i' = 0 (clamped from -1)
    and a = 2 reaches i = H-1 from i' = H-1 (clamped from H); the same for columns."""
    acc = tl.zeros(i.shape, tl.float32)
    for a in tl.static_range(3):
        for b in tl.static_range(3):
            kx = tl.load(kx_ptr + a * 3 + b)
            ky = tl.load(ky_ptr + a * 3 + b)
            r = i + (1 - a)
            c = j + (1 - b)
            acc += _adj_tap(bx_ptr, by_ptr, kx, ky, r, c, H, W, mask)
            if a != 1:
                if a == 0:
                    er = 0
                else:
                    er = H - 1
                on_r = mask & (i == er)
                acc += _adj_tap(bx_ptr, by_ptr, kx, ky, i * 0 + er, c, H, W, on_r)
                if b != 1:
                    if b == 0:
                        ec = 0
                    else:
                        ec = W - 1
                    acc += _adj_tap(bx_ptr, by_ptr, kx, ky, i * 0 + er, j * 0 + ec, H, W, on_r & (j == ec))
            if b != 1:
                if b == 0:
                    ec = 0
                else:
                    ec = W - 1
                acc += _adj_tap(bx_ptr, by_ptr, kx, ky, r, j * 0 + ec, H, W, mask & (j == ec))
    return acc


@triton.jit
def _flow_grad(u_ptr, u, fg_ptr, i, j, H, W, mask, SOBEL: tl.constexpr):
    """grad u (Eq. 10): 3x3 replicate-padded stencil, or forward differences with 0 at the far edge."""
    if SOBEL:
        dx, dy = _corr3_rep2(u_ptr, fg_ptr, fg_ptr + 9, i, j, H, W, mask)
    else:
        right = _zero(u_ptr, i, j + 1, H, W, mask)
        down = _zero(u_ptr, i + 1, j, H, W, mask)
        dx = tl.where(j < W - 1, tl.load(fg_ptr) * u + tl.load(fg_ptr + 1) * right, 0.0)
        dy = tl.where(i < H - 1, tl.load(fg_ptr + 9) * u + tl.load(fg_ptr + 10) * down, 0.0)
    return dx, dy


@triton.jit
def _flow_grad_adjoint(bx_ptr, by_ptr, bx, by, fg_ptr, i, j, H, W, mask, SOBEL: tl.constexpr):
    """Adjoint of :func:`_flow_grad` applied to (bx, by) (the fields also stored at bx_ptr, by_ptr)."""
    if SOBEL:
        out = _corr3_rep2_adjoint(bx_ptr, by_ptr, fg_ptr, fg_ptr + 9, i, j, H, W, mask)
    else:
        out = tl.where(j < W - 1, tl.load(fg_ptr) * bx, 0.0) + tl.load(fg_ptr + 1) * _zero(bx_ptr, i, j - 1, H, W, mask)
        out += tl.where(i < H - 1, tl.load(fg_ptr + 9) * by, 0.0) + tl.load(fg_ptr + 10) * _zero(by_ptr, i - 1, j, H, W,
                                                                                                   mask)
    return out


@triton.jit
def _tv_step(rho, thr, inv, lt):
    """Eq. 3 as one multiplier of grad F2: +lt where rho < -thr, -lt where rho > thr, else -rho / |grad F2|^2."""
    return tl.where(rho < -thr, lt, tl.where(rho > thr, -lt, -rho * inv))


@triton.jit
def _prepare(f1_ptr, f2_ptr, ig_ptr, offs, i, j, H, W, mask, lt, eps):
    """Per-image constants of Algorithm 1: grad F2 (Eq. 8), the Eq. 3 threshold, 1/|grad F2|^2, rho_c."""
    f1 = tl.load(f1_ptr + offs, mask=mask, other=0.0)
    f2 = tl.load(f2_ptr + offs, mask=mask, other=0.0)
    gx, gy = _corr3_rep2(f2_ptr, ig_ptr, ig_ptr + 9, i, j, H, W, mask)
    gsq = gx * gx + gy * gy
    return gx, gy, lt * gsq, 1.0 / (gsq + eps), f2 - f1


@triton.jit
def _phase_a(ux, uy, pxx, pyx, pxy, pyy, pxx_ptr, pyx_ptr, pxy_ptr, pyy_ptr, gx, gy, thr, inv, rc, theta, lt,
             dv0, dv1, dv2, dv3, i, j, H, W, mask):
    """Eqs. 2-4 and 9: u <- u + step * grad F2 + theta * div(p), div with zero padding on the first row/col."""
    rho = rc + gx * ux + gy * uy
    st = _tv_step(rho, thr, inv, lt)
    divx = (dv0 * _zero(pxx_ptr, i, j - 1, H, W, mask) + dv1 * pxx) + (dv2 * _zero(pyx_ptr, i - 1, j, H, W, mask)
                                                                        + dv3 * pyx)
    divy = (dv0 * _zero(pxy_ptr, i, j - 1, H, W, mask) + dv1 * pxy) + (dv2 * _zero(pyy_ptr, i - 1, j, H, W, mask)
                                                                        + dv3 * pyy)
    return (ux + st * gx) + theta * divx, (uy + st * gy) + theta * divy


@triton.jit
def _phase_b(u_ptr, u, px, py, fg_ptr, tot, eps, i, j, H, W, mask, SOBEL: tl.constexpr):
    """Eq. 5 with Eq. 10: p <- (p + tau/theta grad u) / (1 + tau/theta |grad u|)."""
    dx, dy = _flow_grad(u_ptr, u, fg_ptr, i, j, H, W, mask, SOBEL)
    den = 1.0 + tot * tl.sqrt(dx * dx + dy * dy + eps)
    return (px + tot * dx) / den, (py + tot * dy) / den


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def tvl1_forward_kernel(x_ptr, out_ptr, scratch_ptr, coef_ptr, ig_ptr, fg_ptr, dv_ptr, N, C, T, H, W, K, eps,
                        NPROG, SOBEL: tl.constexpr, BLOCK: tl.constexpr):
    """x (B, C, T, H, W) float32 -> out (B, 2C, T-1, H, W): u_x of every channel, then u_y (Algorithm 1)."""
    pid = tl.program_id(0)
    M = H * W
    P = T - 1
    offs = tl.arange(0, BLOCK)
    mask = offs < M
    i = offs // W
    j = offs % W
    theta = tl.load(coef_ptr)
    lt = tl.load(coef_ptr + 1)
    tot = tl.load(coef_ptr + 2)
    dv0 = tl.load(dv_ptr)
    dv1 = tl.load(dv_ptr + 1)
    dv2 = tl.load(dv_ptr + 2)
    dv3 = tl.load(dv_ptr + 3)
    s_ux = scratch_ptr + pid.to(tl.int64) * 6 * BLOCK
    s_uy = s_ux + BLOCK
    s_pxx = s_uy + BLOCK
    s_pyx = s_pxx + BLOCK
    s_pxy = s_pyx + BLOCK
    s_pyy = s_pxy + BLOCK
    zero = tl.zeros([BLOCK], tl.float32)
    for n in range(pid, N, NPROG):
        bc = n // P
        t = n % P
        b = bc // C
        c = bc % C
        f1_ptr = x_ptr + (bc.to(tl.int64) * T + t) * M
        gx, gy, thr, inv, rc = _prepare(f1_ptr, f1_ptr + M, ig_ptr, offs, i, j, H, W, mask, lt, eps)
        ux = zero
        uy = zero
        pxx = zero
        pyx = zero
        pxy = zero
        pyy = zero
        tl.debug_barrier()  # the previous image's last reads of the scratch are done
        tl.store(s_pxx + offs, zero)
        tl.store(s_pyx + offs, zero)
        tl.store(s_pxy + offs, zero)
        tl.store(s_pyy + offs, zero)
        tl.debug_barrier()
        for _k in range(K):
            ux, uy = _phase_a(ux, uy, pxx, pyx, pxy, pyy, s_pxx, s_pyx, s_pxy, s_pyy, gx, gy, thr, inv, rc, theta,
                              lt, dv0, dv1, dv2, dv3, i, j, H, W, mask)
            tl.store(s_ux + offs, ux)
            tl.store(s_uy + offs, uy)
            tl.debug_barrier()
            pxx, pyx = _phase_b(s_ux, ux, pxx, pyx, fg_ptr, tot, eps, i, j, H, W, mask, SOBEL)
            pxy, pyy = _phase_b(s_uy, uy, pxy, pyy, fg_ptr, tot, eps, i, j, H, W, mask, SOBEL)
            tl.store(s_pxx + offs, pxx)
            tl.store(s_pyx + offs, pyx)
            tl.store(s_pxy + offs, pxy)
            tl.store(s_pyy + offs, pyy)
            tl.debug_barrier()
        ox = out_ptr + ((b.to(tl.int64) * 2 * C + c) * P + t) * M
        oy = out_ptr + ((b.to(tl.int64) * 2 * C + C + c) * P + t) * M
        tl.store(ox + offs, ux, mask=mask)
        tl.store(oy + offs, uy, mask=mask)


@triton.jit
def _slot(slots, index, value):
    """slots += value at ``index`` (a float64 vector of parameter-gradient accumulators)."""
    return slots + tl.where(tl.arange(0, 64) == index, value.to(tl.float64), 0.0)


@triton.jit
def _kernel_grads3(slots, base, db_x, db_y, f_ptr, i, j, H, W, mask):
    """slots[base + a*3+b] += sum db_x * f[clamp(i+a-1), clamp(j+b-1)]; slots[base + 9 + ...] for db_y."""
    for a in tl.static_range(3):
        for b in tl.static_range(3):
            v = _rep(f_ptr, i + (a - 1), j + (b - 1), H, W, mask)
            slots = _slot(slots, base + a * 3 + b, tl.sum(tl.where(mask, db_x * v, 0.0), 0))
            slots = _slot(slots, base + 9 + a * 3 + b, tl.sum(tl.where(mask, db_y * v, 0.0), 0))
    return slots


@triton.jit
def _load_consts(s_gx, s_gy, s_rc, offs, lt, eps):
    """The :func:`_prepare` constants from the program's scratch: grad F2 and rho_c loaded, the Eq. 3 threshold
    and 1/|grad F2|^2 recomputed (the same expressions as :func:`_prepare`)."""
    gx = tl.load(s_gx + offs)
    gy = tl.load(s_gy + offs)
    gsq = gx * gx + gy * gy
    return gx, gy, lt * gsq, 1.0 / (gsq + eps), tl.load(s_rc + offs)


@triton.jit
def _acc(ptr, offs, value):
    """ptr[offs] += value on the program's own elements (an accumulator kept out of registers)."""
    tl.store(ptr + offs, tl.load(ptr + offs) + value)


@triton.jit
def _reverse_b(slots, u_ptr, px0, py0, pbx, pby, s_bx, s_by, ub, fg_ptr, tot, eps, i, j, H, W, mask, offs,
               SOBEL: tl.constexpr, NEED_FG: tl.constexpr):
    """Adjoint of Eq. 5 for one flow component: p1 = (p0 + tot * grad u) / den, den = 1 + tot * |grad u|.
    Returns the adjoint of p0 (pbx, pby), ub + the adjoint through grad u, and the updated slots."""
    u = tl.load(u_ptr + offs, mask=mask, other=0.0)
    dx, dy = _flow_grad(u_ptr, u, fg_ptr, i, j, H, W, mask, SOBEL)
    nrm = tl.sqrt(dx * dx + dy * dy + eps)
    den = 1.0 + tot * nrm
    p1x = (px0 + tot * dx) / den
    p1y = (py0 + tot * dy) / den
    qbx = pbx / den
    qby = pby / den
    denb = -(pbx * p1x + pby * p1y) / den
    slots = _slot(slots, 2, tl.sum(tl.where(mask, qbx * dx + qby * dy + denb * nrm, 0.0), 0))
    nb = denb * tot / nrm
    dbx = tl.where(mask, qbx * tot + nb * dx, 0.0)
    dby = tl.where(mask, qby * tot + nb * dy, 0.0)
    tl.store(s_bx + offs, dbx)
    tl.store(s_by + offs, dby)
    tl.debug_barrier()
    ub += _flow_grad_adjoint(s_bx, s_by, dbx, dby, fg_ptr, i, j, H, W, mask, SOBEL)
    if NEED_FG:
        if SOBEL:
            slots = _kernel_grads3(slots, 21, dbx, dby, u_ptr, i, j, H, W, mask)
        else:
            right = _zero(u_ptr, i, j + 1, H, W, mask)
            down = _zero(u_ptr, i + 1, j, H, W, mask)
            bx = tl.where(j < W - 1, dbx, 0.0)
            by = tl.where(i < H - 1, dby, 0.0)
            slots = _slot(slots, 21, tl.sum(bx * u, 0))
            slots = _slot(slots, 22, tl.sum(bx * right, 0))
            slots = _slot(slots, 30, tl.sum(by * u, 0))
            slots = _slot(slots, 31, tl.sum(by * down, 0))
    tl.debug_barrier()  # the scratch is free again
    return slots, qbx, qby, ub


@triton.jit
def _reverse_div(slots, ub, s_ub, px_ptr, py_ptr, pbx, pby, theta, dv0, dv1, dv2, dv3, i, j, H, W, mask, offs):
    """Adjoint of theta * div(p) (Eqs. 4, 9) for one flow component; ub is also stored at s_ub."""
    px = tl.load(px_ptr + offs, mask=mask, other=0.0)
    py = tl.load(py_ptr + offs, mask=mask, other=0.0)
    lx = _zero(px_ptr, i, j - 1, H, W, mask)
    up = _zero(py_ptr, i - 1, j, H, W, mask)
    div = (dv0 * lx + dv1 * px) + (dv2 * up + dv3 * py)
    slots = _slot(slots, 0, tl.sum(tl.where(mask, ub * div, 0.0), 0))
    z = theta * ub
    pbx += dv1 * z + dv0 * theta * _zero(s_ub, i, j + 1, H, W, mask)
    pby += dv3 * z + dv2 * theta * _zero(s_ub, i + 1, j, H, W, mask)
    z = tl.where(mask, z, 0.0)
    slots = _slot(slots, 39, tl.sum(z * lx, 0))
    slots = _slot(slots, 40, tl.sum(z * px, 0))
    slots = _slot(slots, 41, tl.sum(z * up, 0))
    slots = _slot(slots, 42, tl.sum(z * py, 0))
    return slots, pbx, pby


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def tvl1_backward_kernel(x_ptr, gout_ptr, gf1_ptr, gf2_ptr, gpar_ptr, state_ptr, scratch_ptr, coef_ptr, ig_ptr,
                         fg_ptr, dv_ptr, N, C, T, H, W, K, eps, NPROG, ZERO, SOBEL: tl.constexpr,
                         NEED_FG: tl.constexpr, NEED_IG: tl.constexpr, BLOCK: tl.constexpr):
    """Gradients of sum(out * gout): gf1/gf2 (N, H*W) w.r.t. each image's F1 and F2, gpar (NPROG, 64) rows.
    ZERO is a runtime 0 added to the pixel index at the top of each iteration: the stencils' neighbour indices
    and edge masks then depend on the iteration, so the compiler cannot hoist them out of the K loops and keep
    them live in registers across all iterations (tens of values per pixel, which spilled)."""
    pid = tl.program_id(0)
    M = H * W
    P = T - 1
    offs = tl.arange(0, BLOCK)
    mask = offs < M
    i = offs // W
    j = offs % W
    theta = tl.load(coef_ptr)
    lt = tl.load(coef_ptr + 1)
    tot = tl.load(coef_ptr + 2)
    dv0 = tl.load(dv_ptr)
    dv1 = tl.load(dv_ptr + 1)
    dv2 = tl.load(dv_ptr + 2)
    dv3 = tl.load(dv_ptr + 3)
    states = state_ptr + pid.to(tl.int64) * K * 6 * M  # per iteration k: u_x, u_y, p_xx, p_yx, p_xy, p_yy
    s_bx = scratch_ptr + pid.to(tl.int64) * 9 * BLOCK
    s_by = s_bx + BLOCK
    s_gx = s_by + BLOCK  # image constants: grad F2 (x, y), rho_c
    s_gy = s_gx + BLOCK
    s_rc = s_gy + BLOCK
    s_gbx = s_rc + BLOCK  # accumulated adjoints of grad F2 (x, y), rho_c, 1/|grad F2|^2
    s_gby = s_gbx + BLOCK
    s_rcb = s_gby + BLOCK
    s_invb = s_rcb + BLOCK
    zero = tl.zeros([BLOCK], tl.float32)
    slots = tl.zeros([64], tl.float64)
    for n in range(pid, N, NPROG):
        bc = n // P
        t = n % P
        b = bc // C
        c = bc % C
        f1_ptr = x_ptr + (bc.to(tl.int64) * T + t) * M
        f2_ptr = f1_ptr + M
        gx, gy, _thr, _inv, rc = _prepare(f1_ptr, f2_ptr, ig_ptr, offs, i, j, H, W, mask, lt, eps)
        # --- forward, keeping every iteration's input state (the constants reloaded per iteration, see above)
        ux = zero
        uy = zero
        pxx = zero
        pyx = zero
        pxy = zero
        pyy = zero
        tl.debug_barrier()  # the previous image's reverse sweep no longer reads the states
        tl.store(s_gx + offs, gx)
        tl.store(s_gy + offs, gy)
        tl.store(s_rc + offs, rc)
        tl.store(s_gbx + offs, zero)
        tl.store(s_gby + offs, zero)
        tl.store(s_rcb + offs, zero)
        tl.store(s_invb + offs, zero)
        tl.store(states + offs, zero, mask=mask)
        tl.store(states + M + offs, zero, mask=mask)
        for k in range(K):
            offs = offs + ZERO
            i = offs // W
            j = offs % W
            mask = offs < M
            sk = states + k * 6 * M
            tl.store(sk + 2 * M + offs, pxx, mask=mask)
            tl.store(sk + 3 * M + offs, pyx, mask=mask)
            tl.store(sk + 4 * M + offs, pxy, mask=mask)
            tl.store(sk + 5 * M + offs, pyy, mask=mask)
            tl.debug_barrier()
            gx, gy, thr, inv, rc = _load_consts(s_gx, s_gy, s_rc, offs, lt, eps)
            ux, uy = _phase_a(ux, uy, pxx, pyx, pxy, pyy, sk + 2 * M, sk + 3 * M, sk + 4 * M, sk + 5 * M, gx, gy, thr,
                              inv, rc, theta, lt, dv0, dv1, dv2, dv3, i, j, H, W, mask)
            if k + 1 < K:
                sk1 = sk + 6 * M
                tl.store(sk1 + offs, ux, mask=mask)
                tl.store(sk1 + M + offs, uy, mask=mask)
                tl.debug_barrier()
                pxx, pyx = _phase_b(sk1, ux, pxx, pyx, fg_ptr, tot, eps, i, j, H, W, mask, SOBEL)
                pxy, pyy = _phase_b(sk1 + M, uy, pxy, pyy, fg_ptr, tot, eps, i, j, H, W, mask, SOBEL)
        tl.debug_barrier()
        # --- reverse sweep
        go_x = gout_ptr + ((b.to(tl.int64) * 2 * C + c) * P + t) * M
        go_y = gout_ptr + ((b.to(tl.int64) * 2 * C + C + c) * P + t) * M
        ubx = tl.load(go_x + offs, mask=mask, other=0.0)
        uby = tl.load(go_y + offs, mask=mask, other=0.0)
        pbxx = zero
        pbyx = zero
        pbxy = zero
        pbyy = zero
        for kk in range(K):
            offs = offs + ZERO
            i = offs // W
            j = offs % W
            mask = offs < M
            k = K - 1 - kk
            sk = states + k * 6 * M
            if k + 1 < K:  # reverse phase B: p^{k+1} from u^{k+1} and p^k
                sk1 = sk + 6 * M
                px0 = tl.load(sk + 2 * M + offs, mask=mask, other=0.0)
                py0 = tl.load(sk + 3 * M + offs, mask=mask, other=0.0)
                slots, pbxx, pbyx, ubx = _reverse_b(slots, sk1, px0, py0, pbxx, pbyx, s_bx, s_by, ubx, fg_ptr, tot,
                                                    eps, i, j, H, W, mask, offs, SOBEL, NEED_FG)
                px0 = tl.load(sk + 4 * M + offs, mask=mask, other=0.0)
                py0 = tl.load(sk + 5 * M + offs, mask=mask, other=0.0)
                slots, pbxy, pbyy, uby = _reverse_b(slots, sk1 + M, px0, py0, pbxy, pbyy, s_bx, s_by, uby, fg_ptr,
                                                    tot, eps, i, j, H, W, mask, offs, SOBEL, NEED_FG)
            # reverse phase A: u^{k+1} = (u^k + step * grad F2) + theta * div(p^k)
            tl.store(s_bx + offs, ubx)
            tl.store(s_by + offs, uby)
            tl.debug_barrier()
            slots, pbxx, pbyx = _reverse_div(slots, ubx, s_bx, sk + 2 * M, sk + 3 * M, pbxx, pbyx, theta, dv0, dv1,
                                             dv2, dv3, i, j, H, W, mask, offs)
            slots, pbxy, pbyy = _reverse_div(slots, uby, s_by, sk + 4 * M, sk + 5 * M, pbxy, pbyy, theta, dv0, dv1,
                                             dv2, dv3, i, j, H, W, mask, offs)
            tl.debug_barrier()
            u0x = tl.load(sk + offs, mask=mask, other=0.0)
            u0y = tl.load(sk + M + offs, mask=mask, other=0.0)
            gx, gy, thr, inv, rc = _load_consts(s_gx, s_gy, s_rc, offs, lt, eps)
            rho = rc + gx * u0x + gy * u0y
            st = _tv_step(rho, thr, inv, lt)
            sb = ubx * gx + uby * gy
            lo = rho < -thr
            hi = rho > thr
            slots = _slot(slots, 1, tl.sum(tl.where(mask & lo, sb, tl.where(mask & hi, -sb, 0.0)), 0))
            mid = mask & (rho >= -thr) & (rho <= thr)
            rb = tl.where(mid, -sb * inv, 0.0)
            _acc(s_invb, offs, tl.where(mid, -sb * rho, 0.0))
            _acc(s_rcb, offs, rb)
            _acc(s_gbx, offs, ubx * st + rb * u0x)
            _acc(s_gby, offs, uby * st + rb * u0y)
            ubx += rb * gx
            uby += rb * gy
        # through the image constants: inv = 1 / (|g|^2 + eps), rho_c = f2 - f1, g = grad F2
        gx, gy, thr, inv, rc = _load_consts(s_gx, s_gy, s_rc, offs, lt, eps)
        rcb = tl.load(s_rcb + offs)
        gsqb = -tl.load(s_invb + offs) * inv * inv
        gbx = tl.load(s_gbx + offs)
        gby = tl.load(s_gby + offs)
        gbx = tl.where(mask, gbx + 2.0 * gx * gsqb, 0.0)
        gby = tl.where(mask, gby + 2.0 * gy * gsqb, 0.0)
        if NEED_IG:
            slots = _kernel_grads3(slots, 3, gbx, gby, f2_ptr, i, j, H, W, mask)
        tl.store(s_bx + offs, gbx)
        tl.store(s_by + offs, gby)
        tl.debug_barrier()
        g2 = rcb + _corr3_rep2_adjoint(s_bx, s_by, ig_ptr, ig_ptr + 9, i, j, H, W, mask)
        tl.store(gf1_ptr + (bc.to(tl.int64) * P + t) * M + offs, -rcb, mask=mask)
        tl.store(gf2_ptr + (bc.to(tl.int64) * P + t) * M + offs, g2, mask=mask)
    tl.store(gpar_ptr + pid * 64 + tl.arange(0, 64), slots)
