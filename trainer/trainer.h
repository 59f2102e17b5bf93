/* trainer/trainer.h — run one training job: the plain-C job spec, progress callbacks, and tr_run;
 * and evaluate a trained model once: tr_evaluate.
 * The daemon and the CLI fill a tr_spec (from JSON, see spec/jobspec.h), then call tr_run on a thread
 * they own; tr_run calls back with progress from that same thread and polls should_stop at every
 * step boundary. Errors: negative return, the reason in err (and the offending field in param for
 * validation). The trainer never prints and never exits. */
#ifndef CT_TRAINER_H
#define CT_TRAINER_H
#include <stddef.h>
#include <stdint.h>

#define TR_PATH_MAX 1024

/* TR_SIMCLR: contrastive pre-training (two augmented views, NT-Xent on a projection head, labels
 * unused); its result is a backbone that fine-tuning jobs start from. */
enum tr_method { TR_CE_TUNING, TR_CORE_TUNING, TR_SIMCLR };
enum tr_variant { TR_VARIANT_PAPER, TR_VARIANT_REFERENCE };

typedef struct tr_hparams {
    int epochs;              /* 1..10000 */
    int batch_size;          /* micro-batch, 2..4096 */
    int grad_accum;          /* micro-batches per optimiser step, 1..256 */
    double lr;               /* (0, 10] */
    double momentum;         /* [0, 1) */
    int nesterov;            /* needs momentum > 0 */
    double weight_decay;     /* [0, 1) */
    int cosine;              /* cosine decay over all steps after warm-up (else constant) */
    int warmup_steps;        /* linear warm-up, optimiser steps, >= 0 */
    double eta;              /* weight of the contrastive term, [0, 100] */
    double mixup_alpha;      /* Beta(alpha, alpha), (0, 100] */
    double temperature;      /* (0, 10]; Core-tuning's contrastive term or SimCLR's NT-Xent */
    int contrast_dim;        /* 1..4096: the contrastor's (or SimCLR projector's) output */
    /* Early stopping on the validation accuracy (SimCLR: positive-pair accuracy): training ends after
     * es_patience validations in a row none of which beat the best so far by more than es_min_delta.
     * With it on, final.safetensors is the best validated model (a copy of best.safetensors). */
    int es_patience;         /* 0 = off, else 1..10000 */
    double es_min_delta;     /* [0, 1]; 0 when off */
} tr_hparams;

#define TR_DEVICE_CPU (-1)
#define TR_DEVICE_ANY (-2)
/* "precision": the values of trainer/gpu/gpu.h's GPU_FP32, GPU_TF32, GPU_BF16 */
enum { TR_FP32 = 0, TR_TF32 = 1, TR_BF16 = 2 };

typedef struct tr_spec {
    /* model */
    char arch[16];           /* resnet18|resnet34|resnet50|resnet20|resnet32|resnet56 */
    int in_channels;         /* 1 or 3 (the data is converted to it) */
    int image_size;          /* model input, 8..512 */
    int small_stem;          /* torchvision nets: 3x3 stride-1 stem, no max pool */
    char init_weights[TR_PATH_MAX]; /* safetensors to start from ("" = random init) */
    /* data: a built-in dataset name ("fashion-mnist-train") or a path the caller has vetted */
    char train_data[TR_PATH_MAX];
    char valid_data[TR_PATH_MAX];   /* "" = split valid_fraction off the training data */
    int train_per_class;     /* > 0: labelled subset of N per class (seeded) */
    int train_limit;         /* > 0: at most this many training images (after the subset) */
    int valid_limit;         /* > 0: at most this many validation images */
    double valid_fraction;   /* used when valid_data is "" */
    int valid_every;         /* validate every this many epochs (and always after the last), >= 1 */
    int augment;             /* random crop (padding image_size/8) + horizontal flip */
    /* method */
    enum tr_method method;
    enum tr_variant variant;
    tr_hparams hp;
    uint64_t seed;
    int threads;             /* 0 = all cores */
    int device;              /* TR_DEVICE_CPU; N >= 0 = CUDA device N among the visible ones ("cuda:N");
                              * TR_DEVICE_ANY ("cuda"): the daemon's scheduler replaces it with the GPU it
                              * assigns; tr_run itself (the coretune CLI, a Slurm run) takes device 0 */
    int precision;           /* TR_FP32 (default), TR_TF32 (cuDNN may use TF32) or TR_BF16 (convs on bf16
                              * tensor cores, fp32 master weights); the last two need a CUDA device */
    int checkpoint_seconds;  /* also checkpoint every this many seconds (0 = only per epoch) */
} tr_spec;

/* Authors' defaults (CORE_TUNING.md), resnet20 on 1x28x28, no data set. */
void tr_spec_defaults(tr_spec *s);
/* Range checks. On error: param names the field (e.g. "hyperparameters.learning_rate_multiplier"-style
 * spec names are the caller's business: param here is the tr_spec field name). */
int tr_spec_validate(const tr_spec *s, char *param, size_t paramlen, char *err, size_t errlen);

enum tr_event { TR_EV_STEP, TR_EV_EPOCH, TR_EV_CHECKPOINT };
typedef struct tr_progress {
    enum tr_event kind;
    int step, total_steps;   /* optimiser steps, 1-based after the step */
    int epoch, epochs;       /* 1-based */
    double train_loss, ce_loss, contrastive_loss, lr, images_per_second, eta_seconds;
    double valid_loss, valid_accuracy;   /* TR_EV_EPOCH (SimCLR: NT-Xent loss and positive-pair top-1) */
    const char *checkpoint_path;         /* TR_EV_CHECKPOINT, borrowed */
} tr_progress;

enum tr_stop { TR_RUN = 0, TR_STOP_CHECKPOINT = 1, TR_STOP_CANCEL = 2 };
typedef struct tr_callbacks {
    void (*progress)(void *ud, const tr_progress *p);  /* may be NULL */
    int (*should_stop)(void *ud);                      /* returns enum tr_stop; may be NULL */
    void *ud;
} tr_callbacks;

typedef struct tr_result {
    int steps_done, epochs_done;     /* epochs_done < epochs when early stopping ended the run */
    int stopped;                     /* 1 if should_stop ended it (resumable checkpoint written) */
    int early_stopped;               /* early stopping ended it: a success, final.safetensors written */
    /* final_*: the validation of the model in final.safetensors, i.e. the last one, or with early
     * stopping on the best one (then equal to best_valid_accuracy at best_epoch) */
    double best_valid_accuracy, final_valid_accuracy, final_valid_loss;
    int best_epoch;
    size_t peak_bytes;               /* everything the job allocated, known at start */
} tr_result;

/* Runs the job, writing under out_dir: state.safetensors (resumable state), best.safetensors and
 * final.safetensors (backbone + classifier, torchvision names; metadata coretuned.arch, in_channels,
 * small_stem, image_size, input_mean, input_std: what tr_evaluate needs to feed it as training did).
 * resume = continue from out_dir's state. */
int tr_run(const tr_spec *spec, const char *out_dir, int resume, const tr_callbacks *cb, tr_result *res,
           char *err, size_t errlen);

/* Which architecture a safetensors file of backbone weights (torchvision names) holds, from its
 * tensor names and shapes: OUT arch (16 bytes), *in_channels, *small_stem. 0, or negative + err. */
/* The architectures a job may name (the one list: validation, the daemon's base models, the CLI). */
#define TR_N_ARCHS 6
extern const char *const tr_arch_names[TR_N_ARCHS];
int tr_arch_known(const char *name);

int tr_weights_arch(const char *path, char *arch, int *in_channels, int *small_stem, char *err, size_t errlen);

/* ---- evaluating a trained model once (a held-out test set) ---- */

typedef struct tr_eval_opts {
    int image_size;          /* model input side; 0 = the file's coretuned.image_size (tr_run writes it) */
    int in_channels;         /* 0 = the model's (its conv1); anything else must equal it */
    int limit;               /* > 0: only the first N images of the data */
    int batch_size;          /* images per forward pass, 0 = 64; the job's batch_size (and threads) give
                              * results bit-identical to the trainer's validation */
    int threads;             /* 0 = all cores */
} tr_eval_opts;

typedef struct tr_eval_result {
    double accuracy;         /* top-1 */
    double loss;             /* mean softmax cross-entropy */
    int images;
    int num_classes;         /* the classifier's */
    char arch[16];           /* what was evaluated, and how it was fed */
    int in_channels, image_size, small_stem;
} tr_eval_result;

/* Evaluate the classifier in model_path (backbone + fc.weight, as tr_run's final.safetensors) on data
 * (a built-in name or a path, read as tr_run reads validation data) exactly as tr_run validates: eval
 * mode, no augmentation, images converted to the model's channels and size, normalised with the
 * training data's statistics recorded in the file (else the data's own). o may be NULL (defaults).
 * Any thread; no shared state (it sets the calling thread's OpenMP thread count, as tr_run does).
 * OUT: *out. 0, or negative + err (-EINVAL: not a classifier, too many classes in the data, ...). */
int tr_evaluate(const char *model_path, const char *data, const tr_eval_opts *o, tr_eval_result *out,
                char *err, size_t errlen);

#endif
