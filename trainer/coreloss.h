/* trainer/coreloss.h — the training losses on backbone features: Core-tuning (hard pair mixing,
 * focal supervised contrastive loss on a projection head, smoothed cross-entropy; variants "paper"
 * and "reference", see /work/shared/CORE_TUNING.md) and plain cross-entropy (CE-tuning), plus an
 * evaluation helper. One call computes every term and every gradient for one micro-batch.
 * A coreloss is owned by the job's thread; all scratch is allocated by coreloss_new from max_batch,
 * nothing is allocated per call. Errors: negative return (-EINVAL bad input, -ENOMEM, -EDOM when
 * the loss is not finite), with a one-line reason in err where the function takes one.
 */
#ifndef CT_CORELOSS_H
#define CT_CORELOSS_H
#include <stddef.h>

#include "trainer/rng.h"

enum coreloss_method { CORELOSS_CE, CORELOSS_CORE };
enum coreloss_variant { CORELOSS_PAPER, CORELOSS_REFERENCE };

typedef struct coreloss_config {
    enum coreloss_method method;
    enum coreloss_variant variant;  /* CORELOSS_CORE only */
    int num_classes;                /* C >= 1 */
    int feat_dim;                   /* d >= 1 */
    int contrast_dim;               /* cd >= 1 (CORELOSS_CORE only) */
    int max_batch;                  /* n <= max_batch in every call */
    float eta;                      /* weight of the contrastive term, >= 0 */
    float temperature;              /* tau > 0 */
    float mixup_alpha;              /* Beta(alpha, alpha), > 0 */
} coreloss_config;

/* Head parameters, PyTorch layouts (borrowed). fc [C x d] (no bias); contrastor
 * c0w [d x d], c0b [d] -> ReLU -> c2w [cd x d], c2b [cd] -> L2 normalise. CE needs only fc. */
typedef struct coreloss_weights { const float *fc, *c0w, *c0b, *c2w, *c2b; } coreloss_weights;
/* Gradients, same shapes, ACCUMULATED (+=). Any member may be NULL (that gradient is skipped). */
typedef struct coreloss_grads { float *fc, *c0w, *c0b, *c2w, *c2b; } coreloss_grads;
/* Loss values of the micro-batch (not scaled by grad_scale): total = ce + eta * contrastive.
 * double: they are reduced in double, and finite-difference tests need more than float's 7 digits. */
typedef struct coreloss_terms { double total, ce, contrastive; } coreloss_terms;

/* The random draws of one micro-batch, n entries each, used AS-IS by coreloss_forward_backward
 * (coreloss_sample already applies the variant's clipping). Tests may overwrite them.
 *   partner[i]: semi-hard negative partner k(i), in [0, n), or -1 = no semi-hard row for i
 *               (paper variant only; the reference variant requires a permutation-like index).
 *   lam_neg[i]: m_i, weight of the partner:  h-_i = (1 - m_i) h_i + m_i h_k(i).
 *   lam_pos[i]: l_i, weight of the hardest positive: h+_i = l_i h_p(i) + (1 - l_i) h_q(i). */
typedef struct coreloss_draws { float *lam_pos, *lam_neg; int *partner; } coreloss_draws;

typedef struct coreloss coreloss; /* opaque */

/* OUT: *out, a new loss context sized for cfg->max_batch (caller frees with coreloss_free). */
int coreloss_new(coreloss **out, const coreloss_config *cfg, char *err, size_t errlen);
void coreloss_free(coreloss *c); /* NULL-safe */
/* Bytes of scratch allocated by coreloss_new (for the job's memory budget). */
size_t coreloss_memory_bytes(const coreloss *c);

/* Draw the micro-batch's random numbers from rng into the draws (CORELOSS_CORE; no-op for CE).
 * Exact order of draws from rng:
 *   1. partners.  paper: for i = 0..n-1 in order, with K_i = number of samples whose label differs
 *                 from labels[i]: if K_i > 0, j = rng_below(K_i) and partner[i] = the j-th such
 *                 sample in increasing index order; else partner[i] = -1 and nothing is drawn.
 *                 reference: rng_permutation(partner, n) (a shuffle of the batch, as the script).
 *   2. lam_neg[i] = rng_beta(alpha, alpha) for i = 0..n-1, then max(., 0.8) (both variants).
 *   3. lam_pos[i] = rng_beta(alpha, alpha) for i = 0..n-1; paper: max(., 0.5); reference: as drawn.
 * n draws are made in steps 2 and 3 whatever the partners are, so the stream does not depend on
 * skipped rows. Returns 0, or -EINVAL (bad n or label). */
int coreloss_sample(coreloss *c, rng_t *rng, const int *labels, int n);
/* The context's draws (borrowed, arrays of max_batch), for tests to read or overwrite. */
coreloss_draws *coreloss_draws_ref(coreloss *c);

/* Hard pair mining on h [n x d] (cosine similarity), as the variant defines it:
 * OUT hard_pos[i] = p(i), hard_neg[i] = q(i) (paper: -1 when i has no other-class sample).
 * forward_backward calls this itself; it is public for tests and diagnostics. 0 or -EINVAL. */
int coreloss_mine(coreloss *c, int *hard_pos, int *hard_neg, const float *h, const int *labels, int n);

/* One micro-batch: h [n x d] features (row-major), labels [n] in [0, C).
 * OUT: dh [n x d] WRITTEN (may be NULL), g ACCUMULATED, both the gradients of grad_scale * total;
 * *out the unscaled loss terms. Uses the current draws (CORELOSS_CORE). Returns 0, -EINVAL (bad
 * shape, label, partner or missing weight), or -EDOM when a loss is not finite (then no gradient is
 * touched, so the trainer can stop the job cleanly). */
int coreloss_forward_backward(coreloss *c, float *dh, const coreloss_grads *g, coreloss_terms *out,
                              const float *h, const int *labels, int n, const coreloss_weights *w,
                              float grad_scale);

/* Internal, for tests: as coreloss_forward_backward, but the n original rows of the extended batch
 * are read from h_orig (same shape) while mining and the generated rows use h. With h_orig == h
 * this is the public function; holding h_orig fixed lets a finite-difference test see exactly the
 * reference variant's detached originals. */
int coreloss__forward_backward_split(coreloss *c, float *dh, const coreloss_grads *g, coreloss_terms *out,
                                     const float *h, const float *h_orig, const int *labels, int n,
                                     const coreloss_weights *w, float grad_scale);

/* Validation: logits = h fc^T; OUT *loss_sum = sum over the n samples of the softmax cross-entropy
 * (double), *correct = top-1 hits (ties: lowest class index). Any n >= 0 (processed in chunks of
 * max_batch). Returns 0, -EINVAL (bad label), or -EDOM (non-finite loss). */
int coreloss_eval(coreloss *c, double *loss_sum, int *correct, const float *h, const int *labels, int n,
                  const float *fc);

#endif
