/* trainer/coreloss.c — Core-tuning and CE losses with explicit backward (see coreloss.h and
 * /work/shared/CORE_TUNING.md). Rows of the extended batch: n originals, then the semi-hard
 * negatives in anchor order, then the hard positives in anchor order (the authors' concatenation).
 * Called from the job's thread; big products use nn_gemm (oneDNN sgemm), reductions run in double.
 * Errors are negative codes (-EINVAL, -ENOMEM, -EDOM); nothing is allocated after coreloss_new.
 */
#include "trainer/coreloss.h"
#include "common/err.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trainer/nn.h"

/* A soft label has at most two non-zero classes (a mix of two one-hots). */
typedef struct soft_label { int k; int c[2]; float w[2]; } soft_label;

struct coreloss {
    coreloss_config cfg;
    int rows_max;          /* 3 * max_batch for Core-tuning, max_batch for CE */
    size_t bytes;
    coreloss_draws draws;
    float *lam_pos, *lam_neg;
    int *partner;
    /* extended batch [rows_max x d] and its gradient */
    float *x, *dx;
    /* contrastor activations: r1 = relu(x c0w^T + c0b) [rows x d], a2 [rows x cd], z = a2/|a2| */
    float *r1, *dr1, *a2, *z, *dz, *da2;
    float *logits, *dlogits;       /* [rows x C] */
    float *s;                      /* [rows x rows] similarities / tau, then their gradient */
    float *hn, *sim;               /* mining: normalised h [n x d], cosine [n x n] */
    int *hp, *hq, *scratch_i;      /* [max_batch] */
    int *src_a, *src_b;            /* [rows]: x_m = coef_a h[src_a] + coef_b h[src_b] (src_b -1: none) */
    float *coef_a, *coef_b;
    soft_label *lab;               /* [rows] */
    int *grp, *gcnt;               /* positive groups: [rows], counts [max(rows, C)] */
};


static void *take(coreloss *c, size_t count, size_t size, int *failed)
{
    if (*failed) return NULL;
    void *p = calloc(count ? count : 1, size);
    if (!p) *failed = 1;
    else c->bytes += count * size;
    return p;
}

int coreloss_new(coreloss **out, const coreloss_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg || cfg->num_classes < 1 || cfg->feat_dim < 1 || cfg->max_batch < 1 ||
        cfg->max_batch > (1 << 20) / 3) {
        err_set(err, errlen, 0, "coreloss: bad shape (classes, feat_dim, max_batch)");
        return -EINVAL;
    }
    if (cfg->method != CORELOSS_CE && cfg->method != CORELOSS_CORE) {
        err_set(err, errlen, 0, "coreloss: unknown method %d", (int)cfg->method);
        return -EINVAL;
    }
    if (cfg->method == CORELOSS_CORE) {
        if (cfg->variant != CORELOSS_PAPER && cfg->variant != CORELOSS_REFERENCE) {
            err_set(err, errlen, 0, "coreloss: unknown variant %d", (int)cfg->variant);
            return -EINVAL;
        }
        if (cfg->contrast_dim < 1 || !(cfg->temperature > 0.0f) || !(cfg->mixup_alpha > 0.0f) ||
            !(cfg->eta >= 0.0f) || !isfinite(cfg->eta) || !isfinite(cfg->temperature) ||
            !isfinite(cfg->mixup_alpha)) {
            err_set(err, errlen, 0, "coreloss: need contrast_dim >= 1, temperature > 0, mixup_alpha > 0, eta >= 0");
            return -EINVAL;
        }
    }
    coreloss *c = calloc(1, sizeof *c);
    if (!c) {
        err_set(err, errlen, 0, "coreloss: out of memory");
        return -ENOMEM;
    }
    c->cfg = *cfg;
    c->bytes = sizeof *c;
    int failed = 0;
    size_t mb = (size_t)cfg->max_batch, d = (size_t)cfg->feat_dim, C = (size_t)cfg->num_classes;
    if (cfg->method == CORELOSS_CE) {
        c->rows_max = cfg->max_batch;
        c->logits = take(c, mb * C, sizeof(float), &failed);
        c->dlogits = take(c, mb * C, sizeof(float), &failed);
    } else {
        size_t R = 3 * mb, cd = (size_t)cfg->contrast_dim;
        c->rows_max = (int)R;
        c->lam_pos = take(c, mb, sizeof(float), &failed);
        c->lam_neg = take(c, mb, sizeof(float), &failed);
        c->partner = take(c, mb, sizeof(int), &failed);
        c->x = take(c, R * d, sizeof(float), &failed);
        c->dx = take(c, R * d, sizeof(float), &failed);
        c->r1 = take(c, R * d, sizeof(float), &failed);
        c->dr1 = take(c, R * d, sizeof(float), &failed);
        c->a2 = take(c, R * cd, sizeof(float), &failed);
        c->z = take(c, R * cd, sizeof(float), &failed);
        c->dz = take(c, R * cd, sizeof(float), &failed);
        c->da2 = take(c, R * cd, sizeof(float), &failed);
        c->logits = take(c, R * C, sizeof(float), &failed);
        c->dlogits = take(c, R * C, sizeof(float), &failed);
        c->s = take(c, R * R, sizeof(float), &failed);
        c->hn = take(c, mb * d, sizeof(float), &failed);
        c->sim = take(c, mb * mb, sizeof(float), &failed);
        c->hp = take(c, mb, sizeof(int), &failed);
        c->hq = take(c, mb, sizeof(int), &failed);
        c->scratch_i = take(c, mb, sizeof(int), &failed);
        c->src_a = take(c, R, sizeof(int), &failed);
        c->src_b = take(c, R, sizeof(int), &failed);
        c->coef_a = take(c, R, sizeof(float), &failed);
        c->coef_b = take(c, R, sizeof(float), &failed);
        c->lab = take(c, R, sizeof(soft_label), &failed);
        c->grp = take(c, R, sizeof(int), &failed);
        c->gcnt = take(c, R > C ? R : C, sizeof(int), &failed);
        if (!failed) {
            for (size_t i = 0; i < mb; i++) {
                c->lam_pos[i] = 1.0f;
                c->lam_neg[i] = 1.0f;
                c->partner[i] = -1;
            }
        }
    }
    c->draws.lam_pos = c->lam_pos;
    c->draws.lam_neg = c->lam_neg;
    c->draws.partner = c->partner;
    if (failed) {
        coreloss_free(c);
        err_set(err, errlen, 0, "coreloss: out of memory for max_batch %d", cfg->max_batch);
        return -ENOMEM;
    }
    *out = c;
    return 0;
}

void coreloss_free(coreloss *c)
{
    if (!c) return;
    void *bufs[] = { c->lam_pos, c->lam_neg, c->partner, c->x, c->dx, c->r1, c->dr1, c->a2, c->z,
                     c->dz, c->da2, c->logits, c->dlogits, c->s, c->hn, c->sim, c->hp, c->hq,
                     c->scratch_i, c->src_a, c->src_b, c->coef_a, c->coef_b, c->lab, c->grp, c->gcnt };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(c);
}

size_t coreloss_memory_bytes(const coreloss *c) { return c ? c->bytes : 0; }

coreloss_draws *coreloss_draws_ref(coreloss *c) { return &c->draws; }

static int check_labels(const coreloss *c, const int *labels, int n)
{
    if (n < 0 || n > c->cfg.max_batch || (n > 0 && !labels)) return -EINVAL;
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= c->cfg.num_classes) return -EINVAL;
    return 0;
}

int coreloss_sample(coreloss *c, rng_t *rng, const int *labels, int n)
{
    if (check_labels(c, labels, n)) return -EINVAL;
    if (c->cfg.method != CORELOSS_CORE) return 0;
    int paper = c->cfg.variant == CORELOSS_PAPER;
    if (paper) {
        for (int i = 0; i < n; i++) {
            int k = 0;
            for (int j = 0; j < n; j++)
                if (labels[j] != labels[i]) c->scratch_i[k++] = j;
            c->partner[i] = k > 0 ? c->scratch_i[rng_below(rng, (uint32_t)k)] : -1;
        }
    } else {
        rng_permutation(rng, c->partner, n);
    }
    double a = c->cfg.mixup_alpha;
    for (int i = 0; i < n; i++) {
        float m = (float)rng_beta(rng, a, a);
        c->lam_neg[i] = m < 0.8f ? 0.8f : m;
    }
    for (int i = 0; i < n; i++) {
        float l = (float)rng_beta(rng, a, a);
        c->lam_pos[i] = (paper && l < 0.5f) ? 0.5f : l;
    }
    return 0;
}

int coreloss_mine(coreloss *c, int *hard_pos, int *hard_neg, const float *h, const int *labels, int n)
{
    if (c->cfg.method != CORELOSS_CORE || check_labels(c, labels, n) || (n > 0 && !h)) return -EINVAL;
    if (n == 0) return 0;
    int d = c->cfg.feat_dim;
    nn_l2norm_forward(c->hn, h, n, d);
    nn_gemm(0, 1, n, n, d, 1.0f, c->hn, d, c->hn, d, 0.0f,
                c->sim, n);
    if (c->cfg.variant == CORELOSS_PAPER) {
        /* Strict comparisons in increasing index order: ties go to the lowest index. */
        for (int i = 0; i < n; i++) {
            const float *srow = c->sim + (size_t)i * n;
            int p = -1, q = -1;
            for (int j = 0; j < n; j++) {
                if (j == i) continue;
                if (labels[j] == labels[i]) {
                    if (p < 0 || srow[j] < srow[p]) p = j;
                } else if (q < 0 || srow[j] > srow[q]) {
                    q = j;
                }
            }
            hard_pos[i] = p < 0 ? i : p;
            hard_neg[i] = q;
        }
    } else {
        /* The script: argmin / argmax over the WHOLE row of similarity x mask (masked entries are
         * 0, so with non-negative features argmin usually lands on a masked index), first index
         * on ties, then an argmin of 0 is replaced by i. */
        for (int i = 0; i < n; i++) {
            const float *srow = c->sim + (size_t)i * n;
            int p = 0, q = 0;
            float pv = 0.0f, qv = 0.0f;
            for (int j = 0; j < n; j++) {
                int same = labels[j] == labels[i];
                float vp = srow[j] * ((same && j != i) ? 1.0f : 0.0f);
                float vq = srow[j] * (same ? 0.0f : 1.0f);
                if (j == 0 || vp < pv) { p = j; pv = vp; }
                if (j == 0 || vq > qv) { q = j; qv = vq; }
            }
            hard_pos[i] = p == 0 ? i : p;
            hard_neg[i] = q;
        }
    }
    return 0;
}

/* y = wa e_ca + wb e_cb as torch computes it elementwise on one-hots (the same class sums), kept
 * canonical: zero weights dropped, classes increasing, so equal vectors have equal fields. */
static void mix_label(soft_label *y, int ca, float wa, int cb, float wb)
{
    memset(y, 0, sizeof *y);
    if (ca == cb) {
        wa = wa + wb;
        wb = 0.0f;
    } else if (ca > cb) {
        int t = ca; ca = cb; cb = t;
        float u = wa; wa = wb; wb = u;
    }
    if (wa != 0.0f) { y->c[y->k] = ca; y->w[y->k++] = wa; }
    if (wb != 0.0f) { y->c[y->k] = cb; y->w[y->k++] = wb; }
}

/* argmax over classes, lowest class index on ties (entries are in increasing class order) */
static int label_dominant(const soft_label *y)
{
    if (y->k < 2) return y->c[0];
    return y->w[1] > y->w[0] ? y->c[1] : y->c[0];
}

/* Exact equality of the dense vectors (canonical forms compare field by field). */
static int label_equal(const soft_label *a, const soft_label *b)
{
    if (a->k != b->k) return 0;
    for (int e = 0; e < a->k; e++)
        if (a->c[e] != b->c[e] || a->w[e] != b->w[e]) return 0;
    return 1;
}

/* Soft-label cross-entropy, mean over rows: loss and dlogits = scale/rows (softmax sum(y) - y),
 * which is the gradient of -sum_c y_c log_softmax_c even when sum(y) is not exactly 1.
 * y == NULL: one-hot labels[]. Returns the summed (not averaged) loss. */
static double softmax_ce(float *dlogits, const float *logits, const soft_label *y, const int *labels,
                         int rows, int C, float scale)
{
    double total = 0.0;
    for (int m = 0; m < rows; m++) {
        const float *lg = logits + (size_t)m * C;
        float *dl = dlogits ? dlogits + (size_t)m * C : NULL;
        float mx = lg[0];
        for (int k = 1; k < C; k++) mx = lg[k] > mx ? lg[k] : mx;
        double se = 0.0;
        for (int k = 0; k < C; k++) se += exp((double)lg[k] - mx);
        double lse = mx + log(se);
        soft_label one = { 1, { labels ? labels[m] : 0, 0 }, { 1.0f, 0.0f } };
        const soft_label *ym = y ? &y[m] : &one;
        double wsum = 0.0;
        for (int e = 0; e < ym->k; e++) {
            total += (double)ym->w[e] * (lse - lg[ym->c[e]]);
            wsum += ym->w[e];
        }
        if (dl) {
            double f = (double)scale / rows;
            for (int k = 0; k < C; k++) dl[k] = (float)(f * wsum * exp((double)lg[k] - lse));
            for (int e = 0; e < ym->k; e++) dl[ym->c[e]] -= (float)(f * ym->w[e]);
        }
    }
    return total;
}

static int ce_forward_backward(coreloss *c, float *dh, const coreloss_grads *g, coreloss_terms *out,
                               const float *h, const int *labels, int n, const float *fc, float scale)
{
    int d = c->cfg.feat_dim, C = c->cfg.num_classes;
    nn_linear_forward(c->logits, h, fc, NULL, n, d, C);
    double ce = softmax_ce(c->dlogits, c->logits, NULL, labels, n, C, scale) / n;
    if (!isfinite(ce)) return -EDOM;
    nn_linear_backward(dh, g ? g->fc : NULL, NULL, c->dlogits, h, fc, n, d, C);
    out->ce = out->total = ce;
    out->contrastive = 0.0;
    return 0;
}

/* Builds the extended batch rows (sources, coefficients, soft labels). Returns the row count. */
static int build_rows(coreloss *c, const int *labels, int n)
{
    int rows = 0;
    for (int i = 0; i < n; i++, rows++) {
        c->src_a[rows] = i;
        c->coef_a[rows] = 1.0f;
        c->src_b[rows] = -1;
        c->coef_b[rows] = 0.0f;
        mix_label(&c->lab[rows], labels[i], 1.0f, labels[i], 0.0f);
    }
    for (int i = 0; i < n; i++) { /* semi-hard negatives: (1 - m) h_i + m h_k */
        int k = c->partner[i];
        if (k < 0) continue;
        float m = c->lam_neg[i], a = 1.0f - m;
        c->src_a[rows] = i;
        c->coef_a[rows] = a;
        c->src_b[rows] = k;
        c->coef_b[rows] = m;
        mix_label(&c->lab[rows], labels[i], a, labels[k], m);
        rows++;
    }
    for (int i = 0; i < n; i++) { /* hard positives: l h_p + (1 - l) h_q */
        int p = c->hp[i], q = c->hq[i];
        if (q < 0) continue; /* paper: no other-class sample, row skipped */
        float l = c->lam_pos[i], a = 1.0f - l;
        c->src_a[rows] = p;
        c->coef_a[rows] = l;
        c->src_b[rows] = q;
        c->coef_b[rows] = a;
        mix_label(&c->lab[rows], labels[p], l, labels[q], a);
        rows++;
    }
    return rows;
}

/* Positive groups: grp[m] and gcnt[grp] so that P_m = { j != m : grp[j] == grp[m] }. */
static void build_groups(coreloss *c, int rows)
{
    if (c->cfg.variant == CORELOSS_PAPER) {
        for (int k = 0; k < c->cfg.num_classes; k++) c->gcnt[k] = 0;
        for (int m = 0; m < rows; m++) {
            c->grp[m] = label_dominant(&c->lab[m]);
            c->gcnt[c->grp[m]]++;
        }
        return;
    }
    /* reference: one group per distinct soft-label vector; id = first row holding it */
    for (int m = 0; m < rows; m++) c->gcnt[m] = 0;
    for (int m = 0; m < rows; m++) {
        int gid = m;
        for (int j = 0; j < m; j++)
            if (c->grp[j] == j && label_equal(&c->lab[j], &c->lab[m])) { gid = j; break; }
        c->grp[m] = gid;
        c->gcnt[gid]++;
    }
}

/* Focal supervised contrastive loss on s = z z^T / tau [rows x rows]. Returns L_con and replaces
 * s by dL/ds * gscale (gscale = eta * grad_scale) when the loss has anchors; *anchors = their count.
 * Rows are independent, so they are shared among the OpenMP threads. */
static double focal_supcon(coreloss *c, int rows, float gscale, int *anchors)
{
    int paper = c->cfg.variant == CORELOSS_PAPER, nanch = 0;
    for (int m = 0; m < rows; m++)
        if (c->gcnt[c->grp[m]] > 1) nanch++;
    *anchors = nanch;
    if (nanch == 0) return 0.0; /* the script's NaN guard: no positive pair, loss 0 */
    const int *grp = c->grp, *gcnt = c->gcnt;
    float *s = c->s;
    double total = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : total) if (rows >= 128)
    for (int m = 0; m < rows; m++) {
        float *srow = s + (size_t)m * rows;
        int gm = grp[m], npos = gcnt[gm] - 1;
        float mx = -INFINITY;
        for (int k = 0; k < rows; k++)
            if (k != m && srow[k] > mx) mx = srow[k];
        /* srow becomes t = s - max (so exp never overflows); log-sum-exp accumulated in double */
        double se = 0.0;
        for (int k = 0; k < rows; k++) {
            srow[k] -= mx;
            if (k != m) se += expf(srow[k]);
        }
        float logse = (float)log(se);
        /* per-anchor weight: paper 1/|P_m|, reference 1/rows (the script's mean over the row) */
        double cm = npos > 0 ? (paper ? 1.0 / npos : 1.0 / rows) : 0.0;
        float wfac = (float)(-cm / nanch * gscale);
        double wsum = 0.0, lsum = 0.0;
        /* loss and the sum of upstream weights w_mj = dL/dlogp_mj = wfac (1 - p - p logp) */
        if (npos > 0)
            for (int k = 0; k < rows; k++) {
                if (k == m || grp[k] != gm) continue;
                float lp = srow[k] - logse, p = expf(lp);
                lsum += (double)(1.0f - p) * lp;
                wsum += wfac * (1.0f - p - p * lp);
            }
        total += -cm * lsum;
        /* dL/ds_mk = w_mk - p_mk sum_j w_mj (k != m), 0 on the diagonal */
        float fw = (float)wsum;
        for (int k = 0; k < rows; k++) {
            float lp = srow[k] - logse, p = expf(lp);
            float gk = -p * fw;
            if (npos > 0 && grp[k] == gm) gk += wfac * (1.0f - p - p * lp);
            srow[k] = gk;
        }
        srow[m] = 0.0f;
    }
    return total / nanch;
}

int coreloss_forward_backward(coreloss *c, float *dh, const coreloss_grads *g, coreloss_terms *out,
                              const float *h, const int *labels, int n, const coreloss_weights *w,
                              float grad_scale)
{
    return coreloss__forward_backward_split(c, dh, g, out, h, h, labels, n, w, grad_scale);
}

int coreloss__forward_backward_split(coreloss *c, float *dh, const coreloss_grads *g, coreloss_terms *out,
                                     const float *h, const float *h_orig, const int *labels, int n,
                                     const coreloss_weights *w, float grad_scale)
{
    coreloss_terms dummy;
    if (!out) out = &dummy;
    out->total = out->ce = out->contrastive = 0.0;
    if (n < 1 || !h || !h_orig || !w || !w->fc || check_labels(c, labels, n)) return -EINVAL;
    if (c->cfg.method == CORELOSS_CE)
        return ce_forward_backward(c, dh, g, out, h, labels, n, w->fc, grad_scale);
    if (!w->c0w || !w->c0b || !w->c2w || !w->c2b) return -EINVAL;
    int paper = c->cfg.variant == CORELOSS_PAPER;
    for (int i = 0; i < n; i++) {
        int k = c->partner[i];
        if (k >= n || k < (paper ? -1 : 0)) return -EINVAL;
    }
    int d = c->cfg.feat_dim, C = c->cfg.num_classes, cd = c->cfg.contrast_dim;
    float tau = c->cfg.temperature, eta = c->cfg.eta;

    /* ---- forward ---- */
    coreloss_mine(c, c->hp, c->hq, h, labels, n);
    int rows = build_rows(c, labels, n);
    for (int m = 0; m < rows; m++) {
        float *xm = c->x + (size_t)m * d;
        /* original rows read h_orig: the same values, but a test can hold them fixed */
        const float *ha = (m < n ? h_orig : h) + (size_t)c->src_a[m] * d;
        float ca = c->coef_a[m];
        if (c->src_b[m] < 0) {
            memcpy(xm, ha, sizeof(float) * d);
        } else {
            const float *hb = h + (size_t)c->src_b[m] * d;
            float cb = c->coef_b[m];
            for (int j = 0; j < d; j++) xm[j] = ca * ha[j] + cb * hb[j];
        }
    }
    build_groups(c, rows);

    nn_linear_forward(c->logits, c->x, w->fc, NULL, rows, d, C);
    double ce = softmax_ce(c->dlogits, c->logits, c->lab, NULL, rows, C, grad_scale) / rows;

    nn_linear_forward(c->r1, c->x, w->c0w, w->c0b, rows, d, d);
    for (size_t j = 0; j < (size_t)rows * d; j++) c->r1[j] = c->r1[j] > 0.0f ? c->r1[j] : 0.0f;
    nn_linear_forward(c->a2, c->r1, w->c2w, w->c2b, rows, d, cd);
    nn_l2norm_forward(c->z, c->a2, rows, cd);
    nn_gemm(0, 1, rows, rows, cd, 1.0f / tau, c->z, cd, c->z, cd,
                0.0f, c->s, rows);
    int nanch = 0;
    double con = focal_supcon(c, rows, eta * grad_scale, &nanch);
    double total = ce + (double)eta * con;
    if (!isfinite(ce) || !isfinite(con) || !isfinite(total)) return -EDOM;
    out->ce = ce;
    out->contrastive = con;
    out->total = total;

    /* ---- backward ---- */
    if (nanch > 0 && eta > 0.0f) {
        /* s = z z^T / tau, so dz = (G + G^T) z / tau: symmetrise G in place, one GEMM */
        float *G = c->s;
        for (int m = 0; m < rows; m++)
            for (int k = m + 1; k < rows; k++) {
                float t = G[(size_t)m * rows + k] + G[(size_t)k * rows + m];
                G[(size_t)m * rows + k] = G[(size_t)k * rows + m] = t;
            }
        nn_gemm(0, 0, rows, cd, rows, 1.0f / tau, G, rows, c->z,
                    cd, 0.0f, c->dz, cd);
        nn_l2norm_backward(c->da2, c->dz, c->a2, rows, cd);
        nn_linear_backward(c->dr1, g ? g->c2w : NULL, g ? g->c2b : NULL, c->da2, c->r1, w->c2w, rows, d, cd);
        for (size_t j = 0; j < (size_t)rows * d; j++)
            if (!(c->r1[j] > 0.0f)) c->dr1[j] = 0.0f;
        nn_linear_backward(dh ? c->dx : NULL, g ? g->c0w : NULL, g ? g->c0b : NULL, c->dr1, c->x, w->c0w,
                           rows, d, d);
    } else if (dh) {
        memset(c->dx, 0, sizeof(float) * (size_t)rows * d);
    }
    /* classifier: dfc += dlogits^T x; dx += dlogits fc */
    if (g && g->fc)
        nn_gemm(1, 0, C, d, rows, 1.0f, c->dlogits, C, c->x, d, 1.0f,
                    g->fc, d);
    if (!dh) return 0;
    nn_gemm(0, 0, rows, d, C, 1.0f, c->dlogits, C, w->fc, d, 1.0f,
                c->dx, d);
    /* scatter the extended batch's gradient back onto h; the reference variant's originals are
     * detached (their rows still train the heads), so only generated rows reach dh there */
    memset(dh, 0, sizeof(float) * (size_t)n * d);
    for (int m = paper ? 0 : n; m < rows; m++) {
        const float *gx = c->dx + (size_t)m * d;
        float *da = dh + (size_t)c->src_a[m] * d, ca = c->coef_a[m];
        for (int j = 0; j < d; j++) da[j] += ca * gx[j];
        if (c->src_b[m] >= 0) {
            float *db = dh + (size_t)c->src_b[m] * d, cb = c->coef_b[m];
            for (int j = 0; j < d; j++) db[j] += cb * gx[j];
        }
    }
    return 0;
}

int coreloss_eval(coreloss *c, double *loss_sum, int *correct, const float *h, const int *labels, int n,
                  const float *fc)
{
    *loss_sum = 0.0;
    *correct = 0;
    if (n < 0 || (n > 0 && (!h || !labels || !fc))) return -EINVAL;
    int d = c->cfg.feat_dim, C = c->cfg.num_classes, mb = c->cfg.max_batch;
    double sum = 0.0;
    int hits = 0;
    for (int i0 = 0; i0 < n; i0 += mb) {
        int b = n - i0 < mb ? n - i0 : mb;
        if (check_labels(c, labels + i0, b)) return -EINVAL;
        nn_linear_forward(c->logits, h + (size_t)i0 * d, fc, NULL, b, d, C);
        sum += softmax_ce(NULL, c->logits, NULL, labels + i0, b, C, 1.0f);
        for (int i = 0; i < b; i++) {
            const float *lg = c->logits + (size_t)i * C;
            int best = 0;
            for (int k = 1; k < C; k++)
                if (lg[k] > lg[best]) best = k;
            hits += best == labels[i0 + i];
        }
    }
    if (!isfinite(sum)) return -EDOM;
    *loss_sum = sum;
    *correct = hits;
    return 0;
}
