/* trainer/simclr.h — the SimCLR pre-training loss (Chen et al. 2020): a projection head on backbone
 * features of two augmented views of each image, then NT-Xent over the 2n views. One call computes
 * the loss, the contrastive top-1 accuracy and every gradient of one micro-batch.
 * A simclr is owned by the job's thread; all scratch is allocated by simclr_new from max_batch,
 * nothing is allocated per call. Errors: negative return (-EINVAL bad input, -ENOMEM, -EDOM when
 * the loss is not finite), with a one-line reason in err where the function takes one.
 *
 * Loss, with z the L2-normalised projections of the 2n rows and pos(i) = i + n for i < n, i - n else:
 *   L = -(1/2n) sum_i log( exp(z_i.z_pos(i)/tau) / sum_{k != i} exp(z_i.z_k/tau) )
 */
#ifndef CT_SIMCLR_H
#define CT_SIMCLR_H
#include <stddef.h>

/* Tensor names of the projection head in model files (PyTorch nn.Sequential(Linear, ReLU, Linear)
 * registered as "projector"):
 *   projector.0.weight [d x d]          projector.0.bias [d]
 *   projector.2.weight [proj_dim x d]   projector.2.bias [proj_dim]                                  */
#define SIMCLR_W0_NAME "projector.0.weight"
#define SIMCLR_B0_NAME "projector.0.bias"
#define SIMCLR_W2_NAME "projector.2.weight"
#define SIMCLR_B2_NAME "projector.2.bias"

typedef struct simclr_config {
    int feat_dim;      /* d >= 1, the backbone feature size */
    int proj_dim;      /* p >= 1, the projection size (SimCLR: 128) */
    int max_batch;     /* images per view: n <= max_batch in every call (2n rows) */
    float temperature; /* tau > 0, finite (SimCLR: 0.5 at small batch, 0.1-0.2 at large) */
} simclr_config;

/* Head parameters, PyTorch layouts (borrowed): w0 [d x d], b0 [d] -> ReLU -> w2 [p x d], b2 [p]
 * -> L2 normalise (torch.nn.functional.normalize). All four are required. */
typedef struct simclr_weights { const float *w0, *b0, *w2, *b2; } simclr_weights;
/* Gradients, same shapes, ACCUMULATED (+=). Any member (or the struct) may be NULL: skipped. */
typedef struct simclr_grads { float *w0, *b0, *w2, *b2; } simclr_grads;

typedef struct simclr simclr; /* opaque */

/* OUT: *out, a new loss context sized for cfg->max_batch (caller frees with simclr_free). */
int simclr_new(simclr **out, const simclr_config *cfg, char *err, size_t errlen);
void simclr_free(simclr *s); /* NULL-safe */
/* Bytes of scratch allocated by simclr_new (for the job's memory budget). */
size_t simclr_memory_bytes(const simclr *s);

/* One micro-batch. h [2n x d] row-major: rows 0..n-1 are view 1 of images 0..n-1, rows n..2n-1
 * view 2 of the same images in the same order (the backbone can run once on the 2n stacked images).
 * OUT: dh [2n x d] WRITTEN (may be NULL), g ACCUMULATED, both the gradients of grad_scale * L;
 *      *loss = L (unscaled, reduced in double; may be NULL);
 *      *acc = fraction of the 2n rows whose positive is STRICTLY more similar than every other row
 *             (ties count as misses, so a collapsed projection scores 0; with n = 1 there is no
 *             negative and every row scores, acc = 1); may be NULL.
 * n = 1 is allowed: the positive is the only other row, so L = 0 and every gradient is 0.
 * Returns 0, -EINVAL (n < 1 or > max_batch, h or a weight NULL, grad_scale not finite), or -EDOM
 * when h holds a non-finite value or the loss is not finite (then *loss is NaN or that value, *acc
 * is 0, and dh and g are not touched, so the trainer can stop the job cleanly). */
int simclr_forward_backward(simclr *s, float *dh, const simclr_grads *g, double *loss, double *acc,
                            const float *h, int n, const simclr_weights *w, float grad_scale);

#endif
