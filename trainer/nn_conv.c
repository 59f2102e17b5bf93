/* trainer/nn_conv.c — image-layer kernels on CNHW activations: conv2d, batch norm 2d, ReLU,
 * residual add, max pool and global average pool.
 * Conv has two back ends, picked per shape by measurement: oneDNN's JIT direct convolution for
 * 3x3/7x7 convs with >= 16 input channels (3x faster than im2col there), im2col + sgemm over the
 * whole batch for the rest (stem, 1x1). oneDNN plans are built by nn_conv_workspace() (setup),
 * kept in a small process-wide cache and run allocation-free on the caller's workspace; if a plan
 * cannot be built or fails, the im2col path runs instead, so nothing here fails.
 * Called from a job's trainer thread (any number of jobs: the cache is locked). All work runs on
 * OpenMP threads (static schedules: bit-identical results for a fixed thread count).
 */
#include "trainer/nn.h"

#include <cblas.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#include <stdatomic.h>
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

/* Row-major C = alpha op(A) op(B) + beta C. oneDNN's sgemm first: it runs on the same OpenMP
 * threads as everything else in this file (OpenBLAS's own pthreads fight spinning OpenMP workers
 * for the 2 cores: 2 threads ran slower than 1) and was 1.4x faster than OpenBLAS 0.3.21 on the
 * stem and 1x1 shapes. OpenBLAS only if oneDNN refuses the call (it checks arguments only). */
static void conv_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
                      int ldb, float beta, float *c, int ldc)
{
    if (dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == dnnl_success)
        return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a,
                lda, b, ldb, beta, c, ldc);
}

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
        conv_gemm(0, 0, c->cout, cols, kk, 1.0f, weight, kk,
                    in, cols, 0.0f, out, cols);
        return;
    }
    const int nb = conv_chunk(c, n, oh, ow);
    for (int n0 = 0; n0 < n; n0 += nb) {
        int b = n - n0 < nb ? n - n0 : nb, bcols = b * oh * ow;
        im2col(ws, in, c, n, h, w, n0, b, oh, ow);
        /* GEMM into the chunk's column block of every output row (ldc spans the whole batch). */
        conv_gemm(0, 0, c->cout, bcols, kk, 1.0f, weight, kk,
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
        conv_gemm(0, 1, c->cout, kk, cols, 1.0f, dout, cols,
                    in, cols, 1.0f, dweight, kk);
        if (din)
            conv_gemm(1, 0, kk, cols, c->cout, 1.0f, weight, kk,
                        dout, cols, 0.0f, din, cols);
        return;
    }
    const int nb = conv_chunk(c, n, oh, ow);
    for (int n0 = 0; n0 < n; n0 += nb) {
        int b = n - n0 < nb ? n - n0 : nb, bcols = b * oh * ow;
        const float *dchunk = dout + (size_t)n0 * oh * ow;
        im2col(ws, in, c, n, h, w, n0, b, oh, ow);
        /* dW += dout_chunk * col^T, accumulated chunk after chunk (beta = 1). */
        conv_gemm(0, 1, c->cout, kk, bcols, 1.0f, dchunk, cols,
                    ws, bcols, 1.0f, dweight, kk);
        if (!din) continue;
        /* The columns are spent: reuse the same buffer for dcol = W^T * dout_chunk. */
        conv_gemm(1, 0, kk, bcols, c->cout, 1.0f, weight, kk,
                    dchunk, cols, 0.0f, ws, bcols);
        col2im(din, ws, c, n, h, w, n0, b, oh, ow);
    }
}

/* ---- oneDNN back end ----
 * A plan holds, for one (conv, n, h, w), the three convolution primitives (forward, backward data,
 * backward weights) in oneDNN's preferred blocked formats, the reorders between those and our
 * CNHW / OIHW buffers, and memory objects that are rebound to the caller's pointers on every
 * call. Blocked copies and every scratchpad live in the caller's workspace (user scratchpad
 * mode), so running a plan allocates nothing. Plans are never freed: the cache is bounded. */

#define DNN_MAX_PLANS 128
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
    nn_conv c;
    int n, h, w;
    pthread_mutex_t lock; /* memory objects are rebound per call: one caller at a time */
    dnnl_stream_t stream;
    dnn_prim fwd, bwd_d, bwd_w;
    dnn_port f_src, f_w, f_dst;     /* forward */
    dnn_port d_ddst, d_w, d_dsrc;   /* backward data */
    dnn_port w_src, w_ddst, w_dw;   /* backward weights (w_dw.user: an OIHW temp in ws) */
    size_t dw_off;                  /* the OIHW temp, added into dweight (oneDNN overwrites) */
    int share_ddst;                 /* both backward convs take dout in one format: reorder once */
    size_t f_scratch, b_scratch;    /* scratch region of each pass */
    size_t floats;                  /* workspace this plan needs, alignment slack included */
    atomic_int broken;              /* set when an execution failed: use im2col from then on */
} dnn_plan;

static pthread_mutex_t dnn_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static dnn_plan *dnn_plans[DNN_MAX_PLANS];
static int dnn_nplans;
static dnnl_engine_t dnn_engine;
static int dnn_engine_state; /* 0 untried, 1 ready, -1 unavailable; under dnn_cache_lock */
static atomic_int dnn_disabled; /* test hook: force the im2col path */

/* Internal (tests and benchmarks): 1 = never use oneDNN, 0 = pick per shape. Flip it only between
 * whole uses of a shape (workspace, forward, backward): the workspace size depends on it. */
void nn__conv_force_gemm(int on);
void nn__conv_force_gemm(int on) { atomic_store(&dnn_disabled, on); }

static int dnn_wanted(const nn_conv *c)
{
    /* Measured (bench/bench_kernels.c): oneDNN wins 2-4x on 3x3 convs with 16+ input channels and
     * loses on the 1-channel stem and on 1x1 convs, where the reorders cost more than the GEMM. */
    return c->k > 1 && c->cin >= 16 && !atomic_load(&dnn_disabled);
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
    if (p->stream) dnnl_stream_destroy(p->stream);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* Primitive from a descriptor, with user scratchpad; takes ownership of pd. */
static int dnn_prim_make(dnn_prim *q, dnnl_primitive_desc_t pd)
{
    int rc = -1;
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    q->scratch_bytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
    if (dnnl_primitive_create(&q->p, pd) != dnnl_success) goto out;
    if (q->scratch_bytes && dnnl_memory_create(&q->scratch, smd, dnn_engine, DNNL_MEMORY_NONE) != dnnl_success)
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
static int dnn_port_make(dnn_port *t, const dnnl_memory_desc_t *user_md, const dnnl_memory_desc_t *conv_md,
                         int into_conv, size_t *top)
{
    if (dnnl_memory_create(&t->user, user_md, dnn_engine, DNNL_MEMORY_NONE) != dnnl_success) return -1;
    if (dnnl_memory_desc_equal(user_md, conv_md)) {
        t->conv = t->user;
        return 0;
    }
    if (dnnl_memory_create(&t->conv, conv_md, dnn_engine, DNNL_MEMORY_NONE) != dnnl_success) return -1;
    t->off = dnn_take(top, dnnl_memory_desc_get_size(conv_md));
    dnnl_primitive_attr_t a = dnn_attr();
    if (!a) return -1;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = into_conv ? dnnl_reorder_primitive_desc_create(&pd, user_md, dnn_engine, conv_md, dnn_engine, a)
                                 : dnnl_reorder_primitive_desc_create(&pd, conv_md, dnn_engine, user_md, dnn_engine, a);
    dnnl_primitive_attr_destroy(a);
    if (st != dnnl_success) return -1;
    return dnn_prim_make(&t->move, pd);
}

static size_t dnn_max(size_t a, size_t b) { return a > b ? a : b; }

static dnn_plan *dnn_plan_new(const nn_conv *c, int n, int h, int w)
{
    const int oh = nn_conv_out(h, c->k, c->stride, c->pad), ow = nn_conv_out(w, c->k, c->stride, c->pad);
    dnn_plan *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->c = *c;
    p->n = n;
    p->h = h;
    p->w = w;
    if (pthread_mutex_init(&p->lock, NULL)) {
        free(p);
        return NULL;
    }
    dnnl_primitive_desc_t fpd = NULL, dpd = NULL, wpd = NULL;
    dnnl_primitive_attr_t a = NULL;
    /* Our layouts: activations CNHW expressed as NCHW dims with strides, weights OIHW. */
    dnnl_dims_t sdim = {n, c->cin, h, w}, sstr = {(dnnl_dim_t)h * w, (dnnl_dim_t)n * h * w, w, 1};
    dnnl_dims_t ddim = {n, c->cout, oh, ow}, dstr = {(dnnl_dim_t)oh * ow, (dnnl_dim_t)n * oh * ow, ow, 1};
    dnnl_dims_t wdim = {c->cout, c->cin, c->k, c->k};
    dnnl_dims_t strides = {c->stride, c->stride}, pad_l = {c->pad, c->pad};
    /* Right padding so that oh, ow come out as nn_conv_out's floor division says. */
    dnnl_dims_t pad_r = {(oh - 1) * c->stride + c->k - h - c->pad, (ow - 1) * c->stride + c->k - w - c->pad};
    dnnl_memory_desc_t u_src, u_dst, u_w, a_src, a_dst, a_w;
    dnnl_convolution_desc_t fd, dd, wd;
    if (dnnl_memory_desc_init_by_strides(&u_src, 4, sdim, dnnl_f32, sstr) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&u_dst, 4, ddim, dnnl_f32, dstr) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&u_w, 4, wdim, dnnl_f32, dnnl_oihw) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&a_src, 4, sdim, dnnl_f32, dnnl_format_tag_any) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&a_dst, 4, ddim, dnnl_f32, dnnl_format_tag_any) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&a_w, 4, wdim, dnnl_f32, dnnl_format_tag_any) != dnnl_success)
        goto fail;
    if (dnnl_convolution_forward_desc_init(&fd, dnnl_forward_training, dnnl_convolution_direct, &a_src, &a_w, NULL,
                                           &a_dst, strides, pad_l, pad_r) != dnnl_success ||
        dnnl_convolution_backward_data_desc_init(&dd, dnnl_convolution_direct, &a_src, &a_w, &a_dst, strides, pad_l,
                                                 pad_r) != dnnl_success ||
        dnnl_convolution_backward_weights_desc_init(&wd, dnnl_convolution_direct, &a_src, &a_w, NULL, &a_dst, strides,
                                                    pad_l, pad_r) != dnnl_success)
        goto fail;
    if (!(a = dnn_attr())) goto fail;
    if (dnnl_primitive_desc_create(&fpd, &fd, a, dnn_engine, NULL) != dnnl_success ||
        dnnl_primitive_desc_create(&dpd, &dd, a, dnn_engine, fpd) != dnnl_success ||
        dnnl_primitive_desc_create(&wpd, &wd, a, dnn_engine, fpd) != dnnl_success)
        goto fail;
    /* Only the JIT kernels are worth the reorders; the reference kernels are 100x slower. */
    const char *impl[3] = {NULL, NULL, NULL};
    dnnl_primitive_desc_query(fpd, dnnl_query_impl_info_str, 0, &impl[0]);
    dnnl_primitive_desc_query(dpd, dnnl_query_impl_info_str, 0, &impl[1]);
    dnnl_primitive_desc_query(wpd, dnnl_query_impl_info_str, 0, &impl[2]);
    for (int i = 0; i < 3; i++)
        if (!impl[i] || strncmp(impl[i], "jit", 3)) goto fail;

    size_t ftop = 0, btop = 0;
#define MD(pd, arg) dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg)
    if (dnn_port_make(&p->f_src, &u_src, MD(fpd, DNNL_ARG_SRC), 1, &ftop) ||
        dnn_port_make(&p->f_w, &u_w, MD(fpd, DNNL_ARG_WEIGHTS), 1, &ftop) ||
        dnn_port_make(&p->f_dst, &u_dst, MD(fpd, DNNL_ARG_DST), 0, &ftop) ||
        dnn_port_make(&p->d_ddst, &u_dst, MD(dpd, DNNL_ARG_DIFF_DST), 1, &btop) ||
        dnn_port_make(&p->d_w, &u_w, MD(dpd, DNNL_ARG_WEIGHTS), 1, &btop) ||
        dnn_port_make(&p->d_dsrc, &u_src, MD(dpd, DNNL_ARG_DIFF_SRC), 0, &btop) ||
        dnn_port_make(&p->w_src, &u_src, MD(wpd, DNNL_ARG_SRC), 1, &btop) ||
        dnn_port_make(&p->w_ddst, &u_dst, MD(wpd, DNNL_ARG_DIFF_DST), 1, &btop) ||
        dnn_port_make(&p->w_dw, &u_w, MD(wpd, DNNL_ARG_DIFF_WEIGHTS), 0, &btop))
        goto fail;
    p->share_ddst = p->d_ddst.move.p && p->w_ddst.move.p &&
                    dnnl_memory_desc_equal(MD(dpd, DNNL_ARG_DIFF_DST), MD(wpd, DNNL_ARG_DIFF_DST));
#undef MD
    p->dw_off = dnn_take(&btop, sizeof(float) * c->cout * c->cin * c->k * c->k);
    if (dnn_prim_make(&p->fwd, fpd)) {
        fpd = NULL;
        goto fail;
    }
    fpd = NULL;
    if (dnn_prim_make(&p->bwd_d, dpd)) {
        dpd = NULL;
        goto fail;
    }
    dpd = NULL;
    if (dnn_prim_make(&p->bwd_w, wpd)) {
        wpd = NULL;
        goto fail;
    }
    wpd = NULL;
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
    if (dnnl_stream_create(&p->stream, dnn_engine, dnnl_stream_default_flags) != dnnl_success) goto fail;
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

static int dnn_same(const dnn_plan *p, const nn_conv *c, int n, int h, int w)
{
    return p->c.cin == c->cin && p->c.cout == c->cout && p->c.k == c->k && p->c.stride == c->stride &&
           p->c.pad == c->pad && p->n == n && p->h == h && p->w == w;
}

/* The plan for this shape: found, or (create = 1, at setup) built and cached. NULL: use im2col. */
static dnn_plan *dnn_plan_get(const nn_conv *c, int n, int h, int w, int create)
{
    if (!dnn_wanted(c)) return NULL;
    dnn_plan *found = NULL;
    pthread_mutex_lock(&dnn_cache_lock);
    for (int i = 0; i < dnn_nplans && !found; i++)
        if (dnn_same(dnn_plans[i], c, n, h, w)) found = dnn_plans[i];
    if (!found && create && dnn_nplans < DNN_MAX_PLANS) {
        if (!dnn_engine_state)
            dnn_engine_state = dnnl_engine_create(&dnn_engine, dnnl_cpu, 0) == dnnl_success ? 1 : -1;
        if (dnn_engine_state > 0 && (found = dnn_plan_new(c, n, h, w))) dnn_plans[dnn_nplans++] = found;
    }
    pthread_mutex_unlock(&dnn_cache_lock);
    return found && !atomic_load(&found->broken) ? found : NULL;
}

/* Internal (tests): whether this shape runs on oneDNN (a plan was built by nn_conv_workspace). */
int nn__conv_uses_dnnl(const nn_conv *c, int n, int h, int w);
int nn__conv_uses_dnnl(const nn_conv *c, int n, int h, int w) { return dnn_plan_get(c, n, h, w, 0) != NULL; }

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
    int rc = -1;
    pthread_mutex_lock(&p->lock);
    if (dnn_port_in(p, &p->f_src, in, base, scr) || dnn_port_in(p, &p->f_w, weight, base, scr) ||
        dnn_port_bind_out(&p->f_dst, out, base))
        goto out;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->f_src.conv}, {DNNL_ARG_WEIGHTS, p->f_w.conv},
                               {DNNL_ARG_DST, p->f_dst.conv}};
    if (dnn_exec(p, &p->fwd, scr, args, 3) || dnn_port_out(p, &p->f_dst, scr)) goto out;
    rc = dnnl_stream_wait(p->stream) == dnnl_success ? 0 : -1;
out:
    pthread_mutex_unlock(&p->lock);
    return rc;
}

static int dnn_backward(dnn_plan *p, float *din, float *dweight, float *ws, const float *dout, const float *in,
                        const float *weight)
{
    float *base = dnn_base(ws), *scr = base + p->b_scratch, *dw = base + p->dw_off;
    const size_t wlen = (size_t)p->c.cout * p->c.cin * p->c.k * p->c.k;
    int rc = -1;
    pthread_mutex_lock(&p->lock);
    if (din) {
        if (dnn_port_in(p, &p->d_ddst, dout, base, scr) || dnn_port_in(p, &p->d_w, weight, base, scr) ||
            dnn_port_bind_out(&p->d_dsrc, din, base))
            goto out;
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_DIFF_DST, p->d_ddst.conv}, {DNNL_ARG_WEIGHTS, p->d_w.conv},
                                   {DNNL_ARG_DIFF_SRC, p->d_dsrc.conv}};
        if (dnn_exec(p, &p->bwd_d, scr, args, 3) || dnn_port_out(p, &p->d_dsrc, scr)) goto out;
    }
    if (din && p->share_ddst) { /* dout is already in the blocked format, at d_ddst's region */
        if (dnnl_memory_set_data_handle(p->w_ddst.conv, base + p->d_ddst.off) != dnnl_success) goto out;
    } else if (dnn_port_in(p, &p->w_ddst, dout, base, scr)) {
        goto out;
    }
    if (dnn_port_in(p, &p->w_src, in, base, scr) || dnn_port_bind_out(&p->w_dw, dw, base)) goto out;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p->w_src.conv}, {DNNL_ARG_DIFF_DST, p->w_ddst.conv},
                               {DNNL_ARG_DIFF_WEIGHTS, p->w_dw.conv}};
    if (dnn_exec(p, &p->bwd_w, scr, args, 3) || dnn_port_out(p, &p->w_dw, scr)) goto out;
    if (dnnl_stream_wait(p->stream) != dnnl_success) goto out;
    /* oneDNN overwrites diff weights; our contract accumulates. */
    for (size_t i = 0; i < wlen; i++) dweight[i] += dw[i];
    rc = 0;
out:
    pthread_mutex_unlock(&p->lock);
    return rc;
}

/* ---- public conv entry points ---- */

size_t nn_conv_workspace(const nn_conv *c, int n, int h, int w)
{
    /* Enough for either path: a oneDNN plan may turn out unusable at run time. */
    size_t need = gemm_workspace(c, n, h, w);
    dnn_plan *p = dnn_plan_get(c, n, h, w, 1);
    return p ? dnn_max(need, p->floats) : need;
}

void nn_conv_forward(float *out, float *ws, const float *in, const float *weight,
                     const nn_conv *c, int n, int h, int w)
{
    dnn_plan *p = dnn_plan_get(c, n, h, w, 0);
    if (p && !dnn_forward(p, out, ws, in, weight)) return;
    if (p) atomic_store(&p->broken, 1); /* failed mid-way: nothing was accumulated, redo it */
    gemm_forward(out, ws, in, weight, c, n, h, w);
}

void nn_conv_backward(float *din, float *dweight, float *ws, const float *dout, const float *in,
                      const float *weight, const nn_conv *c, int n, int h, int w)
{
    dnn_plan *p = dnn_plan_get(c, n, h, w, 0);
    if (p && !dnn_backward(p, din, dweight, ws, dout, in, weight)) return;
    if (p) atomic_store(&p->broken, 1);
    gemm_backward(din, dweight, ws, dout, in, weight, c, n, h, w);
}

/* ---- batch norm ---- */

void nn_bn_forward_train(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                         const float *in, const float *gamma, const float *beta,
                         int c, int m, float momentum, float eps)
{
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const float *x = in + (size_t)ch * m;
        float *y = out + (size_t)ch * m;
        /* Two passes in double: the mean first, then squared deviations, so a large mean does not
         * cancel the variance away. */
        double s = 0.0;
        for (int i = 0; i < m; i++) s += x[i];
        double mu = s / m, ss = 0.0;
        for (int i = 0; i < m; i++) {
            double d = x[i] - mu;
            ss += d * d;
        }
        double var = ss / m; /* biased: what normalisation uses */
        float rs = (float)(1.0 / sqrt(var + eps));
        float a = gamma[ch] * rs, b = beta[ch] - (float)mu * a;
        for (int i = 0; i < m; i++) y[i] = x[i] * a + b;
        mean[ch] = (float)mu;
        rstd[ch] = rs;
        /* PyTorch: running = (1 - momentum) * running + momentum * batch, variance unbiased. */
        double uvar = m > 1 ? ss / (m - 1) : var;
        running_mean[ch] = (float)((1.0 - momentum) * running_mean[ch] + momentum * mu);
        running_var[ch] = (float)((1.0 - momentum) * running_var[ch] + momentum * uvar);
    }
}

void nn_bn_forward_eval(float *out, const float *in, const float *gamma, const float *beta,
                        const float *running_mean, const float *running_var, int c, int m, float eps)
{
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const float *x = in + (size_t)ch * m;
        float *y = out + (size_t)ch * m;
        float a = gamma[ch] / sqrtf(running_var[ch] + eps), b = beta[ch] - running_mean[ch] * a;
        for (int i = 0; i < m; i++) y[i] = x[i] * a + b;
    }
}

void nn_bn_backward(float *din, float *dgamma, float *dbeta, const float *dout, const float *in,
                    const float *mean, const float *rstd, const float *gamma, int c, int m)
{
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        const float *x = in + (size_t)ch * m, *dy = dout + (size_t)ch * m;
        const float mu = mean[ch], rs = rstd[ch];
        double sdy = 0.0, sdyx = 0.0; /* sum dy, sum dy * xhat */
        for (int i = 0; i < m; i++) {
            sdy += dy[i];
            sdyx += (double)dy[i] * ((x[i] - mu) * rs);
        }
        dgamma[ch] += (float)sdyx;
        dbeta[ch] += (float)sdy;
        if (!din) continue;
        /* din = gamma*rstd * (dy - mean(dy) - xhat * mean(dy*xhat)) */
        float *dx = din + (size_t)ch * m;
        const float g = gamma[ch] * rs, mdy = (float)(sdy / m), mdyx = (float)(sdyx / m);
        for (int i = 0; i < m; i++) dx[i] = g * (dy[i] - mdy - (x[i] - mu) * rs * mdyx);
    }
}

/* ---- elementwise ---- */

void nn_relu_forward(float *out, const float *in, size_t len)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < len; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

void nn_relu_backward(float *din, const float *dout, const float *out, size_t len)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < len; i++) din[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

void nn_add_forward(float *out, const float *a, const float *b, size_t len)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < len; i++) out[i] = a[i] + b[i];
}

/* ---- pooling ---- */

void nn_maxpool_forward(float *out, int32_t *argmax, const float *in, int c, int n, int h, int w,
                        int k, int stride, int pad)
{
    const int oh = nn_conv_out(h, k, stride, pad), ow = nn_conv_out(w, k, stride, pad);
    const int planes = c * n;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < planes; t++) {
        const float *x = in + (size_t)t * h * w;
        float *y = out + (size_t)t * oh * ow;
        int32_t *am = argmax + (size_t)t * oh * ow;
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
                        float v = x[iy * w + ix];
                        /* PyTorch's rule: first maximum wins ties, a NaN takes over. */
                        if (bi < 0 || v > best || isnan(v)) {
                            best = v;
                            bi = iy * w + ix;
                        }
                    }
                }
                y[oy * ow + ox] = best;
                am[oy * ow + ox] = bi; /* -1 only for a window entirely in padding */
            }
    }
}

void nn_maxpool_backward(float *din, const float *dout, const int32_t *argmax, int c, int n,
                         int h, int w, int k, int stride, int pad)
{
    const int oh = nn_conv_out(h, k, stride, pad), ow = nn_conv_out(w, k, stride, pad);
    const int planes = c * n;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < planes; t++) {
        float *dx = din + (size_t)t * h * w;
        const float *dy = dout + (size_t)t * oh * ow;
        const int32_t *am = argmax + (size_t)t * oh * ow;
        memset(dx, 0, sizeof(float) * h * w);
        for (int i = 0; i < oh * ow; i++)
            if (am[i] >= 0) dx[am[i]] += dy[i];
    }
}

void nn_avgpool_forward(float *out, const float *in, int c, int n, int hw)
{
    const int planes = c * n;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < planes; t++) {
        int ch = t / n, img = t % n;
        const float *x = in + (size_t)t * hw;
        double s = 0.0;
        for (int i = 0; i < hw; i++) s += x[i];
        out[(size_t)img * c + ch] = (float)(s / hw);
    }
}

void nn_avgpool_backward(float *din, const float *dout, int c, int n, int hw)
{
    const int planes = c * n;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < planes; t++) {
        int ch = t / n, img = t % n;
        float g = dout[(size_t)img * c + ch] / (float)hw;
        float *dx = din + (size_t)t * hw;
        for (int i = 0; i < hw; i++) dx[i] = g;
    }
}
