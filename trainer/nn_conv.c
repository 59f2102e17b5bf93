/* trainer/nn_conv.c — image-layer kernels: conv2d, batch norm 2d, ReLU, residual add, max pool and
 * global average pool, on CNHW activations or on oneDNN's blocked nChw{b}c (nn.h).
 * Conv has two back ends, picked per shape by measurement: oneDNN's JIT convolution (direct, or
 * Winograd for 3x3 stride 1 where oneDNN has it) for 3x3/7x7 convs with >= 16 input channels (3x
 * faster than im2col there), im2col + sgemm over the whole batch for the rest (stem, 1x1); a model
 * whose convs all run on oneDNN plans them blocked, every conv on oneDNN and no reorder of its
 * activations. An nn_conv_plan, made at setup by its owner, holds the oneDNN primitives for each
 * batch size declared for it and runs allocation-free on the caller's workspace; if a CNHW plan cannot
 * be built or fails, or a batch size was not declared, the im2col path runs instead, so nothing here
 * fails after setup (a blocked plan that fails writes NaN, see nn.h). No global mutable state and no locks: each plan
 * belongs to one job's trainer thread at a time. All work runs on OpenMP threads (static schedules:
 * bit-identical results for a fixed thread count).
 */
#include "trainer/nn.h"
#include "trainer/nn_int.h"

#include <errno.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Upper bound on the im2col buffer, in floats (8 MiB). Chunks of whole images are cut to fit, so
 * the workspace stays bounded for any batch (a chunk always holds at least one image). On the
 * resnet20 shapes, bounds from 1 MiB to 64 MiB timed the same within the machine's noise. */
#ifndef CONV_COL_TARGET
#define CONV_COL_TARGET ((size_t)2 << 20)
#endif

static int conv_is_pointwise(const nn_conv *c) { return c->k == 1 && c->stride == 1 && c->pad == 0; }

/* Images per im2col chunk. */
static int conv_chunk(const nn_conv *c, int n, int oh, int ow)
{
    size_t per_img = (size_t)c->cin * c->k * c->k * oh * ow;
    size_t nb = per_img ? CONV_COL_TARGET / per_img : (size_t)n;
    if (nb < 1) nb = 1;
    if (nb > (size_t)n) nb = (size_t)n;
    return (int)nb;
}

static size_t gemm_workspace(const nn_conv *c, int n, int h, int w)
{
    if (conv_is_pointwise(c)) return 0; /* the input already is the column matrix */
    int oh = nn_conv_out(h, c->k, c->stride, c->pad), ow = nn_conv_out(w, c->k, c->stride, c->pad);
    return (size_t)c->cin * c->k * c->k * oh * ow * conv_chunk(c, n, oh, ow);
}

/* Output columns [lo, hi) whose input column ox*stride - pad + kx lies inside [0, w). */
static void conv_valid_range(int *lo, int *hi, int kx, int stride, int pad, int w, int ow)
{
    int a = pad - kx, b = w + pad - kx; /* need a <= ox*stride < b */
    int l = a <= 0 ? 0 : (a + stride - 1) / stride;
    int r = b <= 0 ? 0 : (b + stride - 1) / stride;
    if (r > ow) r = ow;
    if (l > r) l = r;
    *lo = l;
    *hi = r;
}

/* col[(ci*k+ky)*k+kx][j*oh*ow + oy*ow + ox] = in[ci][n0+j][oy*s-p+ky][ox*s-p+kx] (0 outside),
 * for the nb images of the chunk starting at n0. */
static void im2col(float *col, const float *in, const nn_conv *c, int n, int h, int w, int n0, int nb,
                   int oh, int ow)
{
    const int k = c->k, s = c->stride, p = c->pad, rows = c->cin * k * k;
    const size_t ohw = (size_t)oh * ow, ld = ohw * nb, plane = (size_t)h * w;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        int ci = r / (k * k), ky = (r / k) % k, kx = r % k, lo, hi;
        conv_valid_range(&lo, &hi, kx, s, p, w, ow);
        for (int j = 0; j < nb; j++) {
            const float *src = in + ((size_t)ci * n + n0 + j) * plane;
            float *dst = col + (size_t)r * ld + j * ohw;
            for (int oy = 0; oy < oh; oy++, dst += ow) {
                int iy = oy * s - p + ky;
                if (iy < 0 || iy >= h) {
                    memset(dst, 0, sizeof(float) * ow);
                    continue;
                }
                const long base = (long)iy * w - p + kx; /* input index of ox = 0 (may be < 0) */
                for (int ox = 0; ox < lo; ox++) dst[ox] = 0.0f;
                if (s == 1)
                    memcpy(dst + lo, src + base + lo, sizeof(float) * (hi - lo));
                else
                    for (int ox = lo; ox < hi; ox++) dst[ox] = src[base + (long)ox * s];
                for (int ox = hi; ox < ow; ox++) dst[ox] = 0.0f;
            }
        }
    }
}

/* din[ci][n0+j] = sum over the chunk's columns that read each input pixel (the adjoint of im2col).
 * One task per (channel, image) plane, so each thread owns what it writes: no atomics, and the sum
 * order is fixed. */
static void col2im(float *din, const float *col, const nn_conv *c, int n, int h, int w, int n0, int nb,
                   int oh, int ow)
{
    const int k = c->k, s = c->stride, p = c->pad, planes = c->cin * nb;
    const size_t ohw = (size_t)oh * ow, ld = ohw * nb, plane = (size_t)h * w;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < planes; t++) {
        int ci = t / nb, j = t % nb;
        float *dst = din + ((size_t)ci * n + n0 + j) * plane;
        memset(dst, 0, sizeof(float) * plane);
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                int lo, hi;
                conv_valid_range(&lo, &hi, kx, s, p, w, ow);
                const float *src = col + ((size_t)(ci * k + ky) * k + kx) * ld + j * ohw;
                for (int oy = 0; oy < oh; oy++, src += ow) {
                    int iy = oy * s - p + ky;
                    if (iy < 0 || iy >= h) continue;
                    const long base = (long)iy * w - p + kx;
                    if (s == 1)
                        for (int ox = lo; ox < hi; ox++) dst[base + ox] += src[ox];
                    else
                        for (int ox = lo; ox < hi; ox++) dst[base + (long)ox * s] += src[ox];
                }
            }
    }
}

static void gemm_forward(float *out, float *ws, const float *in, const float *weight,
                         const nn_conv *c, int n, int h, int w)
{
    const int oh = nn_conv_out(h, c->k, c->stride, c->pad), ow = nn_conv_out(w, c->k, c->stride, c->pad);
    const int kk = c->cin * c->k * c->k;
    const int cols = n * oh * ow;
    if (conv_is_pointwise(c)) {
        nn_gemm(0, 0, c->cout, cols, kk, 1.0f, weight, kk,
                    in, cols, 0.0f, out, cols);
        return;
    }
    const int nb = conv_chunk(c, n, oh, ow);
    for (int n0 = 0; n0 < n; n0 += nb) {
        int b = n - n0 < nb ? n - n0 : nb, bcols = b * oh * ow;
        im2col(ws, in, c, n, h, w, n0, b, oh, ow);
        /* GEMM into the chunk's column block of every output row (ldc spans the whole batch). */
        nn_gemm(0, 0, c->cout, bcols, kk, 1.0f, weight, kk,
                    ws, bcols, 0.0f, out + (size_t)n0 * oh * ow, cols);
    }
}

static void gemm_backward(float *din, float *dweight, float *ws, const float *dout, const float *in,
                          const float *weight, const nn_conv *c, int n, int h, int w)
{
    const int oh = nn_conv_out(h, c->k, c->stride, c->pad), ow = nn_conv_out(w, c->k, c->stride, c->pad);
    const int kk = c->cin * c->k * c->k;
    const int cols = n * oh * ow;
    if (conv_is_pointwise(c)) {
        nn_gemm(0, 1, c->cout, kk, cols, 1.0f, dout, cols,
                    in, cols, 1.0f, dweight, kk);
        if (din)
            nn_gemm(1, 0, kk, cols, c->cout, 1.0f, weight, kk,
                        dout, cols, 0.0f, din, cols);
        return;
    }
    const int nb = conv_chunk(c, n, oh, ow);
    for (int n0 = 0; n0 < n; n0 += nb) {
        int b = n - n0 < nb ? n - n0 : nb, bcols = b * oh * ow;
        const float *dchunk = dout + (size_t)n0 * oh * ow;
        im2col(ws, in, c, n, h, w, n0, b, oh, ow);
        /* dW += dout_chunk * col^T, accumulated chunk after chunk (beta = 1). */
        nn_gemm(0, 1, c->cout, kk, bcols, 1.0f, dchunk, cols,
                    ws, bcols, 1.0f, dweight, kk);
        if (!din) continue;
        /* The columns are spent: reuse the same buffer for dcol = W^T * dout_chunk. */
        nn_gemm(1, 0, kk, bcols, c->cout, 1.0f, weight, kk,
                    dchunk, cols, 0.0f, ws, bcols);
        col2im(din, ws, c, n, h, w, n0, b, oh, ow);
    }
}

/* ---- oneDNN back end ----
 * A dnn_plan holds, for one (conv, n, h, w), the three convolution primitives (forward, backward
 * data, backward weights) in oneDNN's preferred blocked formats, the reorders between those and our
 * CNHW / OIHW buffers, and memory objects that are rebound to the caller's pointers on every call
 * (which is why a plan has one user at a time). Blocked copies and every scratchpad live in the
 * caller's workspace (user scratchpad mode), so running a plan allocates nothing. The engine and
 * stream belong to the nn_conv_plan that owns the dnn_plans (borrowed here). The JIT code itself is
 * shared between plans of the same shape by oneDNN's own (thread-safe) primitive cache. */

#define DNN_ALIGN 16 /* floats: workspace regions start on 64-byte lines */

/* One primitive and its scratchpad (memory object bound to the pass's scratch region). */
typedef struct dnn_prim { dnnl_primitive_t p; dnnl_memory_t scratch; size_t scratch_bytes; } dnn_prim;

/* A tensor the conv reads or writes: `user` views our buffer, `conv` the primitive's format; when
 * the formats differ, `move` reorders between them through a workspace region at float offset off. */
typedef struct dnn_port {
    dnnl_memory_t user, conv;
    dnn_prim move; /* .p == NULL: the formats match, the conv uses our buffer directly */
    size_t off;
} dnn_port;

typedef struct dnn_plan {
    dnnl_engine_t eng;              /* borrowed from the nn_conv_plan */
    dnnl_stream_t stream;           /* borrowed from the nn_conv_plan */
    nn_conv c;
    dnn_prim fwd, bwd_d, bwd_w;
    dnn_port f_src, f_w, f_dst;     /* forward */
    dnn_port d_ddst, d_w, d_dsrc;   /* backward data */
    dnn_port w_src, w_ddst, w_dw;   /* backward weights (w_dw.user: an OIHW temp in ws) */
    size_t dw_off;                  /* the OIHW temp, added into dweight (oneDNN overwrites) */
    int share_ddst;                 /* both backward convs take dout in one format: reorder once */
    size_t f_scratch, b_scratch;    /* scratch region of each pass */
    size_t floats;                  /* workspace this plan needs, alignment slack included */
    int broken;                     /* set when an execution failed: use im2col from then on */
    int winograd;                   /* the three convs run oneDNN's Winograd F(4x4, 3x3) kernels */
} dnn_plan;

static int dnn_wanted(const nn_conv *c)
{
    /* Measured (bench/bench_kernels.c): oneDNN wins 2-4x on 3x3 convs with 16+ input channels and
     * loses on the 1-channel stem and on 1x1 convs, where the reorders cost more than the GEMM. */
    return c->k > 1 && c->cin >= 16;
}

static void dnn_prim_fini(dnn_prim *q)
{
    if (q->p) dnnl_primitive_destroy(q->p);
    if (q->scratch) dnnl_memory_destroy(q->scratch);
    memset(q, 0, sizeof *q);
}

static void dnn_port_fini(dnn_port *t)
{
    if (t->conv && t->conv != t->user) dnnl_memory_destroy(t->conv);
    if (t->user) dnnl_memory_destroy(t->user);
    dnn_prim_fini(&t->move);
    memset(t, 0, sizeof *t);
}

static void dnn_plan_free(dnn_plan *p)
{
    if (!p) return;
    dnn_prim_fini(&p->fwd);
    dnn_prim_fini(&p->bwd_d);
    dnn_prim_fini(&p->bwd_w);
    dnn_port *ports[] = {&p->f_src, &p->f_w, &p->f_dst, &p->d_ddst, &p->d_w, &p->d_dsrc,
                         &p->w_src, &p->w_ddst, &p->w_dw};
    for (size_t i = 0; i < sizeof ports / sizeof ports[0]; i++) dnn_port_fini(ports[i]);
    free(p);
}

/* Primitive from a descriptor, with user scratchpad; takes ownership of pd. */
static int dnn_prim_make(dnn_prim *q, dnnl_primitive_desc_t pd, dnnl_engine_t eng)
{
    int rc = -1;
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    q->scratch_bytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (dnnl_primitive_create(&q->p, pd) != dnnl_success) goto out;
    if (q->scratch_bytes && dnnl_memory_create(&q->scratch, smd, eng, DNNL_MEMORY_NONE) != dnnl_success)
        goto out;
    rc = 0;
out:
    dnnl_primitive_desc_destroy(pd);
    return rc;
}

static dnnl_primitive_attr_t dnn_attr(void)
{
    dnnl_primitive_attr_t a = NULL;
    if (dnnl_primitive_attr_create(&a) != dnnl_success) return NULL;
    if (dnnl_primitive_attr_set_scratchpad_mode(a, dnnl_scratchpad_mode_user) != dnnl_success) {
        dnnl_primitive_attr_destroy(a);
        return NULL;
    }
    return a;
}

/* Bump allocator over the workspace, in floats, 64-byte aligned regions. */
static size_t dnn_take(size_t *top, size_t bytes)
{
    size_t at = *top, f = (bytes + sizeof(float) - 1) / sizeof(float);
    *top += (f + DNN_ALIGN - 1) / DNN_ALIGN * DNN_ALIGN;
    return at;
}

/* Port between our buffer (user_md) and the primitive's format (conv_md); into_conv says which way
 * the data moves. */
static int dnn_port_make(dnn_port *t, dnnl_engine_t eng, const dnnl_memory_desc_t *user_md,
                         const dnnl_memory_desc_t *conv_md, int into_conv, size_t *top)
{
    if (dnnl_memory_create(&t->user, user_md, eng, DNNL_MEMORY_NONE) != dnnl_success) return -1;
    if (dnnl_memory_desc_equal(user_md, conv_md)) {
        t->conv = t->user;
        return 0;
    }
    if (dnnl_memory_create(&t->conv, conv_md, eng, DNNL_MEMORY_NONE) != dnnl_success) return -1;
    t->off = dnn_take(top, dnnl_memory_desc_get_size(conv_md));
    dnnl_primitive_attr_t a = dnn_attr();
    if (!a) return -1;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = into_conv ? dnnl_reorder_primitive_desc_create(&pd, user_md, eng, conv_md, eng, a)
                                 : dnnl_reorder_primitive_desc_create(&pd, conv_md, eng, user_md, eng, a);
    dnnl_primitive_attr_destroy(a);
    if (st != dnnl_success) return -1;
    return dnn_prim_make(&t->move, pd, eng);
}

static size_t dnn_max(size_t a, size_t b) { return a > b ? a : b; }

/* oneDNN's tag for layout blk >= 1 (nn.h), or dnnl_format_tag_undef. */
static dnnl_format_tag_t blk_tag(int blk)
{
    return blk == 1 ? dnnl_nchw : blk == 8 ? dnnl_nChw8c : blk == 16 ? dnnl_nChw16c : dnnl_format_tag_undef;
}

/* Our view of an activation tensor of dims d in layout blk: CNHW by strides, blocked by its tag. */
static int act_md(dnnl_memory_desc_t *md, const dnnl_dims_t d, int blk)
{
    if (blk == NN_CNHW) {
        dnnl_dims_t str = {d[2] * d[3], d[0] * d[2] * d[3], d[3], 1};
        return dnnl_memory_desc_init_by_strides(md, 4, d, dnnl_f32, str) == dnnl_success ? 0 : -1;
    }
    dnnl_format_tag_t tag = blk_tag(blk);
    if (tag == dnnl_format_tag_undef) return -1;
    return dnnl_memory_desc_init_by_tag(md, 4, d, dnnl_f32, tag) == dnnl_success ? 0 : -1;
}

/* The plan for one batch size with algorithm alg (direct or Winograd), or NULL when oneDNN has no JIT
 * kernel for it (or fails). Activations in layouts src_blk / dst_blk: CNHW ones are reordered to and
 * from the format the primitive picks; blocked ones are handed to it as they are. need_din = 0: no
 * backward-data primitive (nn_conv_backward is then never asked for din). */
static dnn_plan *dnn_plan_new(dnnl_engine_t eng, dnnl_stream_t stream, const nn_conv *c, int n, int h, int w,
                              dnnl_alg_kind_t alg, int src_blk, int dst_blk, int need_din)
{
    const int oh = nn_conv_out(h, c->k, c->stride, c->pad), ow = nn_conv_out(w, c->k, c->stride, c->pad);
    dnn_plan *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->eng = eng;
    p->stream = stream;
    p->c = *c;
    p->winograd = alg == dnnl_convolution_winograd;
    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    dnnl_primitive_attr_t a = NULL;
    /* Our layouts: activations as act_md says, weights OIHW. */
    dnnl_dims_t sdim = {n, c->cin, h, w}, ddim = {n, c->cout, oh, ow};
    dnnl_dims_t wdim = {c->cout, c->cin, c->k, c->k};
    dnnl_dims_t strides = {c->stride, c->stride}, pad_l = {c->pad, c->pad};
    /* Right padding so that oh, ow come out as nn_conv_out's floor division says. */
    dnnl_dims_t pad_r = {(oh - 1) * c->stride + c->k - h - c->pad, (ow - 1) * c->stride + c->k - w - c->pad};
    dnnl_memory_desc_t u_src, u_dst, u_w, a_src, a_dst, a_w;
    dnnl_convolution_desc_t fd, dd, wd;
    if (act_md(&u_src, sdim, src_blk) || act_md(&u_dst, ddim, dst_blk) ||
        dnnl_memory_desc_init_by_tag(&u_w, 4, wdim, dnnl_f32, dnnl_oihw) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&a_src, 4, sdim, dnnl_f32, dnnl_format_tag_any) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&a_dst, 4, ddim, dnnl_f32, dnnl_format_tag_any) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&a_w, 4, wdim, dnnl_f32, dnnl_format_tag_any) != dnnl_success)
        goto fail;
    /* Blocked activations are handed over as they are. A stem's input (no din) has 1-3 channels: it
     * may be reordered into whatever the primitive takes (AVX2's backward-weights kernel has no NCHW
     * input, only a channel-padded blocked one). */
    if (src_blk != NN_CNHW && need_din) a_src = u_src;
    if (dst_blk != NN_CNHW) a_dst = u_dst;
    if (dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, alg, &a_src, &a_w, NULL,
                                           &a_dst, strides, pad_l, pad_r) != dnnl_success ||
        dnnl_convolution_backward_data_desc_init(&dd, alg, &a_src, &a_w, &a_dst, strides, pad_l,
                                                 pad_r) != dnnl_success ||
        dnnl_convolution_backward_weights_desc_init(&wd, alg, &a_src, &a_w, NULL, &a_dst, strides,
                                                    pad_l, pad_r) != dnnl_success)
        goto fail;
    if (!(a = dnn_attr())) goto fail;
    if (dnnl_primitive_desc_create(&fpd, &fd, a, eng, NULL) != dnnl_success ||
        (need_din && dnnl_primitive_desc_create(&dpd, &dd, a, eng, fpd) != dnnl_success) ||
        dnnl_primitive_desc_create(&wpd, &wd, a, eng, fpd) != dnnl_success)
        goto fail;
    /* Only the JIT kernels are worth the reorders; the reference kernels are 100x slower. */
    const char *impl[3] = {NULL, need_din ? NULL : "jit", NULL};
    dnnl_primitive_desc_query(fpd, dnnl_query_impl_info_str, 0, &impl[0]);
    if (dpd) dnnl_primitive_desc_query(dpd, dnnl_query_impl_info_str, 0, &impl[1]);
    dnnl_primitive_desc_query(wpd, dnnl_query_impl_info_str, 0, &impl[2]);
    for (int i = 0; i < 3; i++)
        if (!impl[i] || strncmp(impl[i], "jit", 3)) goto fail;

    size_t ftop = 0, btop = 0;
#define MD(pd, arg) dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg)
    if (dnn_port_make(&p->f_src, eng, &u_src, MD(fpd, DNNL_ARG_SRC), 1, &ftop) ||
        dnn_port_make(&p->f_w, eng, &u_w, MD(fpd, DNNL_ARG_WEIGHTS), 1, &ftop) ||
        dnn_port_make(&p->f_dst, eng, &u_dst, MD(fpd, DNNL_ARG_DST), 0, &ftop) ||
        (dpd && (dnn_port_make(&p->d_ddst, eng, &u_dst, MD(dpd, DNNL_ARG_DIFF_DST), 1, &btop) ||
                 dnn_port_make(&p->d_w, eng, &u_w, MD(dpd, DNNL_ARG_WEIGHTS), 1, &btop) ||
                 dnn_port_make(&p->d_dsrc, eng, &u_src, MD(dpd, DNNL_ARG_DIFF_SRC), 0, &btop))) ||
        dnn_port_make(&p->w_src, eng, &u_src, MD(wpd, DNNL_ARG_SRC), 1, &btop) ||
        dnn_port_make(&p->w_ddst, eng, &u_dst, MD(wpd, DNNL_ARG_DIFF_DST), 1, &btop) ||
        dnn_port_make(&p->w_dw, eng, &u_w, MD(wpd, DNNL_ARG_DIFF_WEIGHTS), 0, &btop))
        goto fail;
    p->share_ddst = dpd && p->d_ddst.move.p && p->w_ddst.move.p &&
                    dnnl_memory_desc_equal(MD(dpd, DNNL_ARG_DIFF_DST), MD(wpd, DNNL_ARG_DIFF_DST));
#undef MD
    p->dw_off = dnn_take(&btop, sizeof(float) * c->cout * c->cin * c->k * c->k);
    dnnl_primitive_desc_t owned[3] = {fpd, dpd, wpd};
    fpd = dpd = wpd = NULL; /* dnn_prim_make takes each one, even when it fails */
    if (dnn_prim_make(&p->fwd, owned[0], eng)) {
        dnnl_primitive_desc_destroy(owned[1]);
        dnnl_primitive_desc_destroy(owned[2]);
        goto fail;
    }
    if (owned[1] && dnn_prim_make(&p->bwd_d, owned[1], eng)) {
        dnnl_primitive_desc_destroy(owned[2]);
        goto fail;
    }
    if (dnn_prim_make(&p->bwd_w, owned[2], eng)) goto fail;
    /* One scratch region per pass, as large as the largest scratchpad used in it. */
    size_t fs = dnn_max(p->fwd.scratch_bytes, dnn_max(p->f_src.move.scratch_bytes,
                        dnn_max(p->f_w.move.scratch_bytes, p->f_dst.move.scratch_bytes)));
    size_t bs = dnn_max(dnn_max(p->bwd_d.scratch_bytes, p->bwd_w.scratch_bytes),
                        dnn_max(dnn_max(p->d_ddst.move.scratch_bytes, p->d_w.move.scratch_bytes),
                                dnn_max(p->d_dsrc.move.scratch_bytes, p->w_src.move.scratch_bytes)));
    bs = dnn_max(bs, dnn_max(p->w_ddst.move.scratch_bytes, p->w_dw.move.scratch_bytes));
    p->f_scratch = dnn_take(&ftop, fs);
    p->b_scratch = dnn_take(&btop, bs);
    p->floats = dnn_max(ftop, btop) + DNN_ALIGN; /* slack to align the caller's pointer */
    dnnl_primitive_attr_destroy(a);
    return p;
fail:
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (dpd) dnnl_primitive_desc_destroy(dpd);
    if (wpd) dnnl_primitive_desc_destroy(wpd);
    if (a) dnnl_primitive_attr_destroy(a);
    dnn_plan_free(p);
    return NULL;
}

static float *dnn_base(float *ws)
{
    uintptr_t a = ((uintptr_t)ws + DNN_ALIGN * sizeof(float) - 1) & ~(uintptr_t)(DNN_ALIGN * sizeof(float) - 1);
    return (float *)a;
}

static int dnn_exec(dnn_plan *p, dnn_prim *q, float *scratch, dnnl_exec_arg_t *args, int nargs)
{
    if (q->scratch) {
        if (dnnl_memory_set_data_handle(q->scratch, scratch) != dnnl_success) return -1;
        args[nargs].arg = DNNL_ARG_SCRATCHPAD;
        args[nargs++].memory = q->scratch;
    }
    return dnnl_primitive_execute(q->p, p->stream, nargs, args) == dnnl_success ? 0 : -1;
}

/* Bind a port to our buffer and, for an input, bring the data into the conv's format. */
static int dnn_port_in(dnn_plan *p, dnn_port *t, const float *buf, float *base, float *scratch)
{
    if (dnnl_memory_set_data_handle(t->user, (void *)buf) != dnnl_success) return -1;
    if (!t->move.p) return 0;
    if (dnnl_memory_set_data_handle(t->conv, base + t->off) != dnnl_success) return -1;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, t->user}, {DNNL_ARG_TO, t->conv}};
    return dnn_exec(p, &t->move, scratch, args, 2);
}

static int dnn_port_bind_out(dnn_port *t, float *buf, float *base)
{
    if (dnnl_memory_set_data_handle(t->user, buf) != dnnl_success) return -1;
    if (!t->move.p) return 0;
    return dnnl_memory_set_data_handle(t->conv, base + t->off) == dnnl_success ? 0 : -1;
}

static int dnn_port_out(dnn_plan *p, dnn_port *t, float *scratch)
{
    if (!t->move.p) return 0;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, t->conv}, {DNNL_ARG_TO, t->user}};
    return dnn_exec(p, &t->move, scratch, args, 2);
}

static int dnn_forward(dnn_plan *p, float *out, float *ws, const float *in, const float *weight)
{
    float *base = dnn_base(ws), *scr = base + p->f_scratch;
    if (dnn_port_in(p, &p->f_src, in, base, scr) || dnn_port_in(p, &p->f_w, weight, base, scr) ||
        dnn_port_bind_out(&p->f_dst, out, base))
        return -1;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->f_src.conv}, {DNNL_ARG_WEIGHTS, p->f_w.conv},
                               {DNNL_ARG_DST, p->f_dst.conv}};
    if (dnn_exec(p, &p->fwd, scr, args, 3) || dnn_port_out(p, &p->f_dst, scr)) return -1;
    return dnnl_stream_wait(p->stream) == dnnl_success ? 0 : -1;
}

static int dnn_backward(dnn_plan *p, float *din, float *dweight, float *ws, const float *dout, const float *in,
                        const float *weight)
{
    float *base = dnn_base(ws), *scr = base + p->b_scratch, *dw = base + p->dw_off;
    const size_t wlen = (size_t)p->c.cout * p->c.cin * p->c.k * p->c.k;
    if (din) {
        if (!p->bwd_d.p) return -1; /* planned without din */
        if (dnn_port_in(p, &p->d_ddst, dout, base, scr) || dnn_port_in(p, &p->d_w, weight, base, scr) ||
            dnn_port_bind_out(&p->d_dsrc, din, base))
            return -1;
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, p->d_ddst.conv}, {DNNL_ARG_WEIGHTS, p->d_w.conv},
                                   {DNNL_ARG_DIFF_SRC, p->d_dsrc.conv}};
        if (dnn_exec(p, &p->bwd_d, scr, args, 3) || dnn_port_out(p, &p->d_dsrc, scr)) return -1;
    }
    if (din && p->share_ddst) { /* dout is already in the blocked format, at d_ddst's region */
        if (dnnl_memory_set_data_handle(p->w_ddst.conv, base + p->d_ddst.off) != dnnl_success) return -1;
    } else if (dnn_port_in(p, &p->w_ddst, dout, base, scr)) {
        return -1;
    }
    if (dnn_port_in(p, &p->w_src, in, base, scr) || dnn_port_bind_out(&p->w_dw, dw, base)) return -1;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->w_src.conv}, {DNNL_ARG_DIFF_DST, p->w_ddst.conv},
                               {DNNL_ARG_DIFF_WEIGHTS, p->w_dw.conv}};
    if (dnn_exec(p, &p->bwd_w, scr, args, 3) || dnn_port_out(p, &p->w_dw, scr)) return -1;
    if (dnnl_stream_wait(p->stream) != dnnl_success) return -1;
    /* oneDNN overwrites diff weights; our contract accumulates. */
    for (size_t i = 0; i < wlen; i++) dweight[i] += dw[i];
    return 0;
}

/* ---- conv plans: the public entry points ---- */

struct nn_conv_plan {
    nn_conv c;
    int h, w, max_n;
    int force_gemm;          /* test hook (nn_int.h): run im2col even where a dnn_plan exists */
    int no_winograd;         /* CT_CONV_WINOGRAD=0 in the environment: direct kernels only */
    int src_blk, dst_blk;    /* layouts of declared batches: NN_CNHW (reordered), or blocked (as they are) */
    int need_din;
    size_t ws_floats;        /* enough for every n in [1, max_n], either path */
    dnnl_engine_t eng;       /* NULL: no oneDNN for this conv (not wanted, or unavailable) */
    dnnl_stream_t stream;
    int count;
    struct { int n; dnn_plan *dnn; } by_n[]; /* the declared batch sizes; dnn NULL: im2col */
};

/* Winograd F(4x4, 3x3) where oneDNN has a JIT kernel for it (3x3 stride 1, AVX-512 in oneDNN 2.x):
 * 2.2-2.6x faster than the direct kernels on resnet18's stages, 1.0-1.8x on resnet20's (Zen 4, one
 * conv at a time in the blocked layout), at the rounding cost nn.h gives. Elsewhere, or if it cannot
 * be built, the direct kernels. */
static dnn_plan *dnn_plan_for_n(const nn_conv_plan *p, int n)
{
    const nn_conv *c = &p->c;
    dnn_plan *d = NULL;
    if (c->k == 3 && c->stride == 1 && !p->no_winograd)
        d = dnn_plan_new(p->eng, p->stream, c, n, p->h, p->w, dnnl_convolution_winograd, p->src_blk, p->dst_blk,
                         p->need_din);
    return d ? d : dnn_plan_new(p->eng, p->stream, c, n, p->h, p->w, dnnl_convolution_direct, p->src_blk,
                                p->dst_blk, p->need_din);
}

/* Both constructors: src_blk == NN_CNHW plans CNHW (oneDNN where wanted and available, else im2col);
 * blocked plans need oneDNN for every declared batch (-ENOTSUP otherwise). */
static int conv_plan_make(nn_conv_plan **out, const nn_conv *c, int h, int w, const int *ns, int count,
                          int src_blk, int dst_blk, int need_din)
{
    *out = NULL;
    if (count < 1 || h < 1 || w < 1 || c->cin < 1 || c->cout < 1 || c->k < 1 || c->stride < 1 || c->pad < 0 ||
        nn_conv_out(h, c->k, c->stride, c->pad) < 1 || nn_conv_out(w, c->k, c->stride, c->pad) < 1)
        return -EINVAL;
    for (int i = 0; i < count; i++)
        if (ns[i] < 1) return -EINVAL;
    nn_conv_plan *p = calloc(1, sizeof *p + (size_t)count * sizeof p->by_n[0]);
    if (!p) return -ENOMEM;
    p->c = *c;
    p->h = h;
    p->w = w;
    const char *wino = getenv("CT_CONV_WINOGRAD");
    p->no_winograd = wino && !strcmp(wino, "0");
    p->src_blk = src_blk;
    p->dst_blk = dst_blk;
    p->need_din = need_din;
    for (int i = 0; i < count; i++) {
        int dup = 0;
        for (int j = 0; j < p->count; j++) dup |= p->by_n[j].n == ns[i];
        if (!dup) p->by_n[p->count++].n = ns[i];
        if (ns[i] > p->max_n) p->max_n = ns[i];
    }
    /* CNHW without oneDNN (no engine, no JIT kernel for this CPU): every batch runs on im2col, not an
     * error. Blocked: every declared batch on oneDNN, or not at all. */
    if ((src_blk != NN_CNHW || dnn_wanted(c)) && dnnl_engine_create(&p->eng, dnnl_cpu, 0) == dnnl_success &&
        dnnl_stream_create(&p->stream, p->eng, dnnl_stream_default_flags) == dnnl_success)
        for (int i = 0; i < p->count; i++) p->by_n[i].dnn = dnn_plan_for_n(p, p->by_n[i].n);
    for (int i = 0; src_blk != NN_CNHW && i < p->count; i++)
        if (!p->by_n[i].dnn) {
            nn_conv_plan_free(p);
            return -ENOTSUP;
        }
    /* im2col's workspace grows with n up to one chunk, so max_n's covers every smaller batch too. */
    p->ws_floats = gemm_workspace(c, p->max_n, h, w);
    for (int i = 0; i < p->count; i++)
        if (p->by_n[i].dnn) p->ws_floats = dnn_max(p->ws_floats, p->by_n[i].dnn->floats);
    *out = p;
    return 0;
}

int nn_conv_plan_new(nn_conv_plan **out, const nn_conv *c, int h, int w, const int *ns, int count)
{
    return conv_plan_make(out, c, h, w, ns, count, NN_CNHW, NN_CNHW, 1);
}

int nn_conv_plan_new_blocked(nn_conv_plan **out, const nn_conv *c, int h, int w, const int *ns, int count,
                             int src_blk, int dst_blk, int need_din)
{
    *out = NULL;
    if (blk_tag(src_blk) == dnnl_format_tag_undef || blk_tag(dst_blk) == dnnl_format_tag_undef ||
        c->cin % src_blk || c->cout % dst_blk)
        return -EINVAL;
    return conv_plan_make(out, c, h, w, ns, count, src_blk, dst_blk, need_din != 0);
}

int nn_conv_preferred_block(void)
{
    /* Ask for a typical conv (16 -> 16, 3x3) in any layout and read the block oneDNN picks for it. */
    dnnl_engine_t eng = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int blk = 0;
    dnnl_dims_t sd = {2, 16, 8, 8}, wd = {16, 16, 3, 3}, one = {1, 1};
    dnnl_memory_desc_t a_s, a_d, a_w;
    dnnl_convolution_desc_t cd;
    if (dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success) return 0;
    if (dnnl_memory_desc_init_by_tag(&a_s, 4, sd, dnnl_f32, dnnl_format_tag_any) == dnnl_success &&
        dnnl_memory_desc_init_by_tag(&a_d, 4, sd, dnnl_f32, dnnl_format_tag_any) == dnnl_success &&
        dnnl_memory_desc_init_by_tag(&a_w, 4, wd, dnnl_f32, dnnl_format_tag_any) == dnnl_success &&
        dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct, &a_s, &a_w, NULL,
                                           &a_d, one, one, one) == dnnl_success &&
        dnnl_primitive_desc_create(&pd, &cd, NULL, eng, NULL) == dnnl_success) {
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
        const char *impl = NULL;
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        if (md && impl && !strncmp(impl, "jit", 3) && md->format_kind == dnnl_blocked &&
            md->format_desc.blocking.inner_nblks == 1 && md->format_desc.blocking.inner_idxs[0] == 1)
            blk = (int)md->format_desc.blocking.inner_blks[0];
        dnnl_primitive_desc_destroy(pd);
    }
    dnnl_engine_destroy(eng);
    return blk_tag(blk) == dnnl_format_tag_undef ? 0 : blk;
}

void nn_conv_plan_free(nn_conv_plan *p)
{
    if (!p) return;
    for (int i = 0; i < p->count; i++) dnn_plan_free(p->by_n[i].dnn);
    if (p->stream) dnnl_stream_destroy(p->stream);
    if (p->eng) dnnl_engine_destroy(p->eng);
    free(p);
}

size_t nn_conv_plan_workspace(const nn_conv_plan *p) { return p->ws_floats; }

/* The oneDNN plan for batch n, or NULL: im2col. */
static dnn_plan *plan_for(const nn_conv_plan *p, int n)
{
    if (p->force_gemm && p->src_blk == NN_CNHW) return NULL;
    for (int i = 0; i < p->count; i++)
        if (p->by_n[i].n == n) return p->by_n[i].dnn && !p->by_n[i].dnn->broken ? p->by_n[i].dnn : NULL;
    return NULL;
}

int nn__conv_plan_uses_dnnl(const nn_conv_plan *p, int n) { return plan_for(p, n) != NULL; }
int nn__conv_plan_winograd(const nn_conv_plan *p, int n)
{
    const dnn_plan *d = plan_for(p, n);
    return d && d->winograd;
}
void nn__conv_plan_force_gemm(nn_conv_plan *p, int on) { p->force_gemm = on != 0; }

/* 1 when batch n's data is in the plan's blocked layouts (a declared n of a blocked plan). */
static int runs_blocked(const nn_conv_plan *p, int n)
{
    for (int i = 0; p->src_blk != NN_CNHW && i < p->count; i++)
        if (p->by_n[i].n == n) return 1;
    return 0;
}

static void fill_nan(float *x, size_t len)
{
    for (size_t i = 0; x && i < len; i++) x[i] = NAN;
}

void nn_conv_forward(float *out, float *ws, const float *in, const float *weight, nn_conv_plan *p, int n)
{
    dnn_plan *d = plan_for(p, n);
    if (d && !dnn_forward(d, out, ws, in, weight)) return;
    if (d) d->broken = 1; /* failed mid-way: nothing was accumulated, redo it */
    if (runs_blocked(p, n)) /* im2col cannot read blocked data: fail visibly (the loss turns NaN) */
        fill_nan(out, (size_t)p->c.cout * n * nn_conv_out(p->h, p->c.k, p->c.stride, p->c.pad) *
                          nn_conv_out(p->w, p->c.k, p->c.stride, p->c.pad));
    else
        gemm_forward(out, ws, in, weight, &p->c, n, p->h, p->w);
}

void nn_conv_backward(float *din, float *dweight, float *ws, const float *dout, const float *in,
                      const float *weight, nn_conv_plan *p, int n)
{
    dnn_plan *d = plan_for(p, n);
    if (d && !dnn_backward(d, din, dweight, ws, dout, in, weight)) return;
    if (d) d->broken = 1;
    if (runs_blocked(p, n)) {
        fill_nan(din, (size_t)p->c.cin * n * p->h * p->w);
        fill_nan(dweight, (size_t)p->c.cout * p->c.cin * p->c.k * p->c.k);
    } else {
        gemm_backward(din, dweight, ws, dout, in, weight, &p->c, n, p->h, p->w);
    }
}

/* ---- batch norm ----
 * These passes are memory bound on the small-channel nets, so each one is a single straight loop the
 * compiler vectorises (omp simd; the reductions stay in double, only their order is the vector one,
 * fixed for a build, so results do not depend on the thread count), and the ReLU around a BN rides in
 * the BN's own passes instead of a pass of its own. */

/* g where the ReLU output o passes it (not o <= 0: NaN passes, as torch's threshold_backward), else
 * +0. A bit mask rather than a ?: so GCC if-converts it inside the double reductions (with a ?:,
 * -ftrapping-math keeps the float->double conversion under a branch there). */
static inline float relu_pass(float g, float o)
{
    uint32_t b, keep = o <= 0.0f ? 0u : ~0u;
    memcpy(&b, &g, sizeof b);
    b &= keep;
    memcpy(&g, &b, sizeof g);
    return g;
}

/* From one channel's sums of d = x - k over its m values (k: its first value): its mean and rstd,
 * the affine a x + b that normalises it, and PyTorch's running-stat update. The shifted sums are of
 * the spread's size (|mean - k| is a few standard deviations), so a large mean does not cancel the
 * variance away (Chan et al.'s shifted data); each d * d is exact in double, only the sums round. */
static void bn_stats(float *mean, float *rstd, float *running_mean, float *running_var, float *a, float *b,
                     double k, double s, double ss, int m, float gamma, float beta, float momentum, float eps)
{
    double ms = s / m, mu = k + ms, css = ss - s * ms; /* css: sum of squared deviations */
    if (css < 0.0) css = 0.0;
    double var = css / m; /* biased: what normalisation uses */
    float rs = (float)(1.0 / sqrt(var + eps));
    *a = gamma * rs;
    *b = beta - (float)mu * *a;
    *mean = (float)mu;
    *rstd = rs;
    /* PyTorch: running = (1 - momentum) * running + momentum * batch, variance unbiased. */
    double uvar = m > 1 ? css / (m - 1) : var;
    *running_mean = (float)((1.0 - momentum) * *running_mean + momentum * mu);
    *running_var = (float)((1.0 - momentum) * *running_var + momentum * uvar);
}

/* y = relu?(x a + b) over len values (nn_relu_forward's rule: NaN passes). */
static inline void bn_affine(float *y, const float *x, size_t len, float a, float b, int relu)
{
    if (relu) {
#pragma omp simd
        for (size_t i = 0; i < len; i++) {
            float v = x[i] * a + b;
            y[i] = !(v <= 0.0f) ? v : 0.0f;
        }
    } else {
#pragma omp simd
        for (size_t i = 0; i < len; i++) y[i] = x[i] * a + b;
    }
}

/* ---- blocked layouts (nChw{b}c): the b channels of a block are the vector lanes ----
 * A channel's values are spread over n images, so its sums are split into BN_SPLIT fixed image ranges
 * (parallel work even for a single channel block; the split does not depend on the thread count, so
 * neither do the results) whose partial sums, in double, are added in order. Channel blocks are done
 * BN_GROUP at a time to bound the partials on the stack. */
#define BN_SPLIT 4
#define BN_GROUP 16
#define BN_LANES 16 /* the widest block (nn_conv_preferred_block) */

typedef struct bn_part { double s[BN_LANES], ss[BN_LANES]; } bn_part;

/* The per-lane loops below are written once, as always-inline bodies taking the block size b as
 * an argument, and instantiated for b = 16 and 8 (and any other b): with b a constant the lanes are
 * whole vector registers and the sums stay in registers. */
#define BN_BLOCKS(call) (b == 16 ? call(16) : b == 8 ? call(8) : call(b))
#define INLINE static inline __attribute__((always_inline))
/* The build targets x86-64-v2 (SSE4.2) so its binaries run on any node of a cluster; these per-task
 * bodies, 16 lanes wide, also come as AVX2 and AVX-512 clones picked at load time (16 double sums
 * fill all 16 SSE registers and spill; a 4x wider register file holds them). */
#define NN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

/* Per lane of block cb over images [i0, i1): s += v, ss += v * v with v = x - k, or, with dy, the
 * two BN backward sums: s += g, ss += g * (x - mu) * rs with g = dy masked by mk (mk NULL: dy). */
INLINE void bn_blk_sums_b(bn_part *p, const float *in, const float *dy, const float *mk, const float *k,
                          const float *mu, const float *rs, int cb, int cbs, int i0, int i1, int hw, const int b)
{
    double s[BN_LANES] = {0}, ss[BN_LANES] = {0};
    const size_t seg = (size_t)hw * b;
    for (int i = i0; i < i1; i++) {
        const size_t at = ((size_t)i * cbs + cb) * seg;
        const float *x = in + at;
        if (!dy) {
            for (size_t j = 0; j < seg; j += (size_t)b)
#pragma omp simd
                for (int l = 0; l < b; l++) {
                    double d = (double)x[j + l] - k[l];
                    s[l] += d;
                    ss[l] += d * d;
                }
        } else if (mk) {
            for (size_t j = 0; j < seg; j += (size_t)b)
#pragma omp simd
                for (int l = 0; l < b; l++) {
                    float g = relu_pass(dy[at + j + l], mk[at + j + l]);
                    s[l] += g;
                    ss[l] += (double)g * ((x[j + l] - mu[l]) * rs[l]);
                }
        } else {
            for (size_t j = 0; j < seg; j += (size_t)b)
#pragma omp simd
                for (int l = 0; l < b; l++) {
                    float g = dy[at + j + l];
                    s[l] += g;
                    ss[l] += (double)g * ((x[j + l] - mu[l]) * rs[l]);
                }
        }
    }
    memcpy(p->s, s, sizeof s);
    memcpy(p->ss, ss, sizeof ss);
}

NN_CLONES static void bn_blk_sums(bn_part *p, const float *in, const float *dy, const float *mk, const float *k,
                        const float *mu, const float *rs, int cb, int cbs, int i0, int i1, int hw, int b)
{
#define CALL(B) bn_blk_sums_b(p, in, dy, mk, k, mu, rs, cb, cbs, i0, i1, hw, B)
    BN_BLOCKS(CALL);
#undef CALL
}

/* Sums of every channel of blocks [g0, g0 + gn) into s[], ss[] (indexed by channel - g0 * b). */
static void bn_blk_reduce(double *s, double *ss, const float *in, const float *dy, const float *mk,
                          const float *k, const float *mu, const float *rs, int g0, int gn, int cbs, int n,
                          int hw, int b)
{
    bn_part part[BN_GROUP * BN_SPLIT];
#pragma omp parallel for schedule(static)
    for (int t = 0; t < gn * BN_SPLIT; t++) {
        int cb = g0 + t / BN_SPLIT, q = t % BN_SPLIT, o = (cb - g0) * b;
        bn_blk_sums(&part[t], in, dy, mk, k ? k + o : NULL, mu ? mu + o : NULL, rs ? rs + o : NULL, cb, cbs,
                    (int)((long)n * q / BN_SPLIT), (int)((long)n * (q + 1) / BN_SPLIT), hw, b);
    }
    for (int j = 0; j < gn * b; j++) {
        s[j] = ss[j] = 0.0;
        for (int q = 0; q < BN_SPLIT; q++) {
            s[j] += part[(j / b) * BN_SPLIT + q].s[j % b];
            ss[j] += part[(j / b) * BN_SPLIT + q].ss[j % b];
        }
    }
}

/* One (block, image) segment of hw x b values: y = relu?(x a + c) per lane. */
INLINE void bn_blk_affine_b(float *y, const float *x, const float *a, const float *c, int relu, int hw, const int b)
{
    float al[BN_LANES], cl[BN_LANES];
    memcpy(al, a, sizeof(float) * b);
    memcpy(cl, c, sizeof(float) * b);
    const size_t seg = (size_t)hw * b;
    if (relu) {
        for (size_t j = 0; j < seg; j += (size_t)b)
#pragma omp simd
            for (int l = 0; l < b; l++) {
                float v = x[j + l] * al[l] + cl[l];
                y[j + l] = !(v <= 0.0f) ? v : 0.0f;
            }
    } else {
        for (size_t j = 0; j < seg; j += (size_t)b)
#pragma omp simd
            for (int l = 0; l < b; l++) y[j + l] = x[j + l] * al[l] + cl[l];
    }
}

NN_CLONES static void bn_blk_affine_seg(float *y, const float *x, const float *a, const float *c, int relu, int hw,
                                        int b)
{
#define CALL(B) bn_blk_affine_b(y, x, a, c, relu, hw, B)
    BN_BLOCKS(CALL);
#undef CALL
}

/* out = relu?(in * a + c) per channel, over blocks [g0, g0 + gn) (a, c indexed as in bn_blk_reduce). */
static void bn_blk_affine(float *out, const float *in, const float *a, const float *c, int relu, int g0, int gn,
                          int cbs, int n, int hw, int b)
{
    const size_t seg = (size_t)hw * b;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < gn * n; t++) {
        int cb = g0 + t / n, i = t % n, o = (cb - g0) * b;
        const size_t at = ((size_t)i * cbs + cb) * seg;
        bn_blk_affine_seg(out + at, in + at, a + o, c + o, relu, hw, b);
    }
}

/* One segment of BN's input gradient: dx = g (dy' - mdy - (x - mu) rs mdyx), dy' = dy masked by mk. */
INLINE void bn_blk_din_b(float *dx, const float *dy, const float *mk, const float *x, const float *g,
                         const float *mdy, const float *mdyx, const float *mu, const float *rs, int hw, const int b)
{
    float gl[BN_LANES], mdyl[BN_LANES], mdyxl[BN_LANES], mul[BN_LANES], rl[BN_LANES];
    memcpy(gl, g, sizeof(float) * b);
    memcpy(mdyl, mdy, sizeof(float) * b);
    memcpy(mdyxl, mdyx, sizeof(float) * b);
    memcpy(mul, mu, sizeof(float) * b);
    memcpy(rl, rs, sizeof(float) * b);
    const size_t seg = (size_t)hw * b;
    if (mk) {
        for (size_t j = 0; j < seg; j += (size_t)b)
#pragma omp simd
            for (int l = 0; l < b; l++)
                dx[j + l] = gl[l] * (relu_pass(dy[j + l], mk[j + l]) - mdyl[l] - (x[j + l] - mul[l]) * rl[l] * mdyxl[l]);
    } else {
        for (size_t j = 0; j < seg; j += (size_t)b)
#pragma omp simd
            for (int l = 0; l < b; l++) dx[j + l] = gl[l] * (dy[j + l] - mdyl[l] - (x[j + l] - mul[l]) * rl[l] * mdyxl[l]);
    }
}

NN_CLONES static void bn_blk_din_seg(float *dx, const float *dy, const float *mk, const float *x, const float *g,
                                     const float *mdy, const float *mdyx, const float *mu, const float *rs, int hw,
                                     int b)
{
#define CALL(B) bn_blk_din_b(dx, dy, mk, x, g, mdy, mdyx, mu, rs, hw, B)
    BN_BLOCKS(CALL);
#undef CALL
}

void nn_bn_forward_train(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                         const float *in, const float *gamma, const float *beta,
                         int c, int n, int hw, int blk, float momentum, float eps, int relu)
{
    const int m = n * hw;
    if (blk == NN_CNHW) {
#pragma omp parallel for schedule(static)
        for (int ch = 0; ch < c; ch++) {
            const float *x = in + (size_t)ch * m;
            const double k = x[0];
            double s = 0.0, ss = 0.0;
#pragma omp simd reduction(+ : s, ss)
            for (int i = 0; i < m; i++) {
                double d = (double)x[i] - k;
                s += d;
                ss += d * d;
            }
            float a, b;
            bn_stats(&mean[ch], &rstd[ch], &running_mean[ch], &running_var[ch], &a, &b, k, s, ss, m, gamma[ch],
                     beta[ch], momentum, eps);
            bn_affine(out + (size_t)ch * m, x, (size_t)m, a, b, relu);
        }
        return;
    }
    const int cbs = c / blk;
    for (int g0 = 0; g0 < cbs; g0 += BN_GROUP) {
        const int gn = cbs - g0 < BN_GROUP ? cbs - g0 : BN_GROUP, c0 = g0 * blk;
        double s[BN_GROUP * BN_LANES], ss[BN_GROUP * BN_LANES];
        float k[BN_GROUP * BN_LANES], a[BN_GROUP * BN_LANES], b[BN_GROUP * BN_LANES];
        for (int j = 0; j < gn * blk; j++) /* each channel's first value: image 0, pixel 0 */
            k[j] = in[(size_t)(g0 + j / blk) * hw * blk + j % blk];
        bn_blk_reduce(s, ss, in, NULL, NULL, k, NULL, NULL, g0, gn, cbs, n, hw, blk);
        for (int j = 0; j < gn * blk; j++) {
            int ch = c0 + j;
            bn_stats(&mean[ch], &rstd[ch], &running_mean[ch], &running_var[ch], &a[j], &b[j], k[j], s[j], ss[j], m,
                     gamma[ch], beta[ch], momentum, eps);
        }
        bn_blk_affine(out, in, a, b, relu, g0, gn, cbs, n, hw, blk);
    }
}

void nn_bn_forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                        const float *running_mean, const float *running_var, int c, int n, int hw, int blk,
                        float eps, int relu)
{
    const size_t m = (size_t)n * hw;
    if (blk == NN_CNHW) {
#pragma omp parallel for schedule(static)
        for (int ch = 0; ch < c; ch++) {
            float a = gamma[ch] / sqrtf(running_var[ch] + eps), b = beta[ch] - running_mean[ch] * a;
            bn_affine(out + (size_t)ch * m, in + (size_t)ch * m, m, a, b, relu);
        }
        return;
    }
    const int cbs = c / blk;
    for (int g0 = 0; g0 < cbs; g0 += BN_GROUP) {
        const int gn = cbs - g0 < BN_GROUP ? cbs - g0 : BN_GROUP, c0 = g0 * blk;
        float a[BN_GROUP * BN_LANES], b[BN_GROUP * BN_LANES];
        for (int j = 0; j < gn * blk; j++) {
            a[j] = gamma[c0 + j] / sqrtf(running_var[c0 + j] + eps);
            b[j] = beta[c0 + j] - running_mean[c0 + j] * a[j];
        }
        bn_blk_affine(out, in, a, b, relu, g0, gn, cbs, n, hw, blk);
    }
}

void nn_bn_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *mask,
                    const float *in, const float *mean, const float *rstd, const float *gamma, int c, int n,
                    int hw, int blk)
{
    const int m = n * hw;
    if (blk == NN_CNHW) {
#pragma omp parallel for schedule(static)
        for (int ch = 0; ch < c; ch++) {
            const float *x = in + (size_t)ch * m, *dy = dout + (size_t)ch * m;
            const float *mk = mask ? mask + (size_t)ch * m : NULL;
            const float mu = mean[ch], rs = rstd[ch];
            double sdy = 0.0, sdyx = 0.0; /* sum dy, sum dy * xhat (dy masked by the ReLU output) */
            if (mk) {
#pragma omp simd reduction(+ : sdy, sdyx)
                for (int i = 0; i < m; i++) {
                    float g = relu_pass(dy[i], mk[i]);
                    sdy += g;
                    sdyx += (double)g * ((x[i] - mu) * rs);
                }
            } else {
#pragma omp simd reduction(+ : sdy, sdyx)
                for (int i = 0; i < m; i++) {
                    sdy += dy[i];
                    sdyx += (double)dy[i] * ((x[i] - mu) * rs);
                }
            }
            dgamma[ch] += (float)sdyx;
            dbeta[ch] += (float)sdy;
            if (!din) continue;
            /* din = gamma*rstd * (dy - mean(dy) - xhat * mean(dy*xhat)) */
            float *dx = din + (size_t)ch * m;
            const float g = gamma[ch] * rs, mdy = (float)(sdy / m), mdyx = (float)(sdyx / m);
            if (mk) {
#pragma omp simd
                for (int i = 0; i < m; i++) dx[i] = g * (relu_pass(dy[i], mk[i]) - mdy - (x[i] - mu) * rs * mdyx);
            } else {
#pragma omp simd
                for (int i = 0; i < m; i++) dx[i] = g * (dy[i] - mdy - (x[i] - mu) * rs * mdyx);
            }
        }
        return;
    }
    const int cbs = c / blk;
    const size_t seg = (size_t)hw * blk;
    for (int g0 = 0; g0 < cbs; g0 += BN_GROUP) {
        const int gn = cbs - g0 < BN_GROUP ? cbs - g0 : BN_GROUP, c0 = g0 * blk;
        double s[BN_GROUP * BN_LANES], ss[BN_GROUP * BN_LANES];
        float g[BN_GROUP * BN_LANES], mdy[BN_GROUP * BN_LANES], mdyx[BN_GROUP * BN_LANES];
        bn_blk_reduce(s, ss, in, dout, mask, NULL, mean + c0, rstd + c0, g0, gn, cbs, n, hw, blk);
        for (int j = 0; j < gn * blk; j++) {
            dgamma[c0 + j] += (float)ss[j];
            dbeta[c0 + j] += (float)s[j];
            g[j] = gamma[c0 + j] * rstd[c0 + j];
            mdy[j] = (float)(s[j] / m);
            mdyx[j] = (float)(ss[j] / m);
        }
        if (!din) continue;
#pragma omp parallel for schedule(static)
        for (int t = 0; t < gn * n; t++) {
            int cb = g0 + t / n, i = t % n, o = (cb - g0) * blk;
            const size_t at = ((size_t)i * cbs + cb) * seg;
            const float *mk = mask ? mask + at : NULL;
            bn_blk_din_seg(din + at, dout + at, mk, in + at, g + o, mdy + o, mdyx + o, mean + c0 + o, rstd + c0 + o,
                           hw, blk);
        }
    }
}

/* ---- elementwise ---- */

void nn_relu_forward(float *out, const float *in, size_t len)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < len; i++) {
        float v = in[i];
        out[i] = !(v <= 0.0f) ? v : 0.0f; /* NaN passes, as in torch */
    }
}

void nn_relu_backward(float *din, const float *dout, const float *out, size_t len)
{
    /* dout is loaded unconditionally so this is a compare-and-mask, not a branch per element that
     * mispredicts half the time on real activations. torch: NaN passes too. */
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < len; i++) {
        float g = dout[i];
        din[i] = !(out[i] <= 0.0f) ? g : 0.0f;
    }
}

void nn_add_forward(float *out, const float *a, const float *b, size_t len)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < len; i++) out[i] = a[i] + b[i];
}

/* ---- pooling ----
 * One task per (channel, image) plane of hw values: in CNHW a contiguous row, in a blocked layout
 * every blk-th value from the plane's start (plane_at). Each task owns what it writes. */

static size_t plane_at(int ch, int i, int c, int n, int hw, int blk)
{
    if (blk == NN_CNHW) return ((size_t)ch * n + i) * hw;
    return (((size_t)i * (c / blk) + ch / blk) * hw) * blk + ch % blk;
}

static size_t plane_step(int blk) { return blk == NN_CNHW ? 1 : (size_t)blk; }

void nn_maxpool_forward(float *out, int32_t *argmax, const float *in, int c, int n, int h, int w,
                        int k, int stride, int pad, int blk)
{
    const int oh = nn_conv_out(h, k, stride, pad), ow = nn_conv_out(w, k, stride, pad);
    const int planes = c * n;
    const size_t st = plane_step(blk);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < planes; t++) {
        const float *x = in + plane_at(t / n, t % n, c, n, h * w, blk);
        const size_t o = plane_at(t / n, t % n, c, n, oh * ow, blk);
        float *y = out + o;
        int32_t *am = argmax + o;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                float best = -INFINITY;
                int32_t bi = -1;
                for (int ky = 0; ky < k; ky++) {
                    int iy = oy * stride - pad + ky;
                    if (iy < 0 || iy >= h) continue;
                    for (int kx = 0; kx < k; kx++) {
                        int ix = ox * stride - pad + kx;
                        if (ix < 0 || ix >= w) continue;
                        float v = x[(size_t)(iy * w + ix) * st];
                        /* PyTorch's rule: first maximum wins ties, a NaN takes over. */
                        if (bi < 0 || v > best || isnan(v)) {
                            best = v;
                            bi = iy * w + ix;
                        }
                    }
                }
                y[(size_t)(oy * ow + ox) * st] = best;
                am[(size_t)(oy * ow + ox) * st] = bi; /* -1 only for a window entirely in padding */
            }
    }
}

void nn_maxpool_backward(float *din, const float *dout, const int32_t *argmax, int c, int n,
                         int h, int w, int k, int stride, int pad, int blk)
{
    const int oh = nn_conv_out(h, k, stride, pad), ow = nn_conv_out(w, k, stride, pad);
    const int planes = c * n;
    const size_t st = plane_step(blk);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < planes; t++) {
        float *dx = din + plane_at(t / n, t % n, c, n, h * w, blk);
        const size_t o = plane_at(t / n, t % n, c, n, oh * ow, blk);
        const float *dy = dout + o;
        const int32_t *am = argmax + o;
        for (int i = 0; i < h * w; i++) dx[i * st] = 0.0f;
        for (int i = 0; i < oh * ow; i++)
            if (am[i * st] >= 0) dx[am[i * st] * st] += dy[i * st];
    }
}

void nn_avgpool_forward(float *out, const float *in, int c, int n, int hw, int blk)
{
    const int planes = c * n;
    const size_t st = plane_step(blk);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < planes; t++) {
        int ch = t / n, img = t % n;
        const float *x = in + plane_at(ch, img, c, n, hw, blk);
        double s = 0.0;
        for (int i = 0; i < hw; i++) s += x[i * st];
        out[(size_t)img * c + ch] = (float)(s / hw);
    }
}

void nn_avgpool_backward(float *din, const float *dout, int c, int n, int hw, int blk)
{
    const int planes = c * n;
    const size_t st = plane_step(blk);
#pragma omp parallel for schedule(static)
    for (int t = 0; t < planes; t++) {
        int ch = t / n, img = t % n;
        float g = dout[(size_t)img * c + ch] / (float)hw;
        float *dx = din + plane_at(ch, img, c, n, hw, blk);
        for (int i = 0; i < hw; i++) dx[i * st] = g;
    }
}
