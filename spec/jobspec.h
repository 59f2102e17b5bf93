/* spec/jobspec.h — the job body (OpenAI fine-tuning jobs shape, JSON) <-> tr_spec.
 * Shared by the daemon (POST /v1/fine_tuning/jobs) and the CLI (`coretune train SPEC.json`), so both
 * accept exactly the same body. Pure functions, any thread; names of models and files are turned into
 * paths by a caller-supplied resolver (the daemon knows its data dir, the CLI also accepts paths).
 * Errors: negative return, the JSON path of the offending field in param
 * (e.g. "method.core_tuning.hyperparameters.learning_rate") and a one-line reason in err. */
#ifndef CT_JOBSPEC_H
#define CT_JOBSPEC_H
#include "trainer/trainer.h"
#include <jansson.h>
#include <stddef.h>

#define JOBSPEC_SUFFIX_MAX 64      /* characters of "suffix" */
#define JOBSPEC_METADATA_MAX 16    /* pairs in "metadata" */

enum jobspec_ref { JOBSPEC_MODEL, JOBSPEC_TRAINING_FILE, JOBSPEC_VALIDATION_FILE };

/* Turns a name from the body into what tr_spec needs.
 * JOBSPEC_MODEL: OUT path = weights to start from ("" = random init), OUT arch = the architecture.
 * *_FILE: OUT path = a built-in dataset name or a vetted path (arch untouched).
 * path has TR_PATH_MAX bytes, arch 16. Returns 0, or a negative code (passed through by
 * jobspec_parse, e.g. -ENOENT for an unknown name) with the reason in err. */
typedef int (*jobspec_resolve_fn)(void *ud, enum jobspec_ref kind, const char *name, char *path,
                                  char *arch, char *err, size_t errlen);

/* The resolver of a process without a daemon (`coretune train`; ud unused): a model is an architecture
 * name or a readable safetensors file (its architecture read off its tensors); data names and paths
 * pass through (the trainer resolves built-in names and paths itself). */
int jobspec_resolve_local(void *ud, enum jobspec_ref kind, const char *name, char *path, char *arch,
                          char *err, size_t errlen);

/* Parse and validate the whole body (strict: unknown fields, wrong types and out-of-range values are
 * errors) into OUT spec, starting from tr_spec_defaults. Returns 0, -EINVAL for a bad body, or the
 * resolver's code. Fields that do not reach tr_spec (suffix, metadata, resources) are validated too;
 * resources.cpus, when given, sets spec->threads (over hyperparameters.threads). */
int jobspec_parse(const json_t *body, jobspec_resolve_fn resolve, void *ud, tr_spec *out, char *param,
                  size_t paramlen, char *err, size_t errlen);

/* What a job asks of a batch scheduler: the body's optional "resources" object. 0 / "" = not asked. */
typedef struct jobspec_resources {
    int cpus;                /* 1..1024 */
    int memory_mb;           /* 1..16777216 */
    int gpus;                /* 0..64 */
    int time_limit_minutes;  /* 1..5256000 (ten years) */
    char partition[65];      /* 1-64 of [A-Za-z0-9._-], not starting with '.' */
} jobspec_resources;

/* Read body's "resources" (absent, null, or a key null: not asked) into OUT out (zeroed first).
 * Strict like the rest of the body: unknown keys, wrong types and out-of-range values are -EINVAL
 * with param "resources.<key>" (or "resources" when it is not an object) and the reason in err. */
int jobspec_resources_parse(const json_t *body, jobspec_resources *out, char *param, size_t paramlen, char *err,
                            size_t errlen);

/* A job body that describes the already-resolved spec s: "model" is s->init_weights when set, else the
 * architecture; training_file / validation_file the resolved paths or built-in names; seed; method with
 * every effective hyper-parameter; architecture and data. jobspec_parse with jobspec_resolve_local
 * gives s back, field for field, except checkpoint_seconds (not part of a body) — for any spec
 * jobspec_parse can produce (a field that does not apply to s->method holds its default). New
 * reference; NULL when out of memory, a string is not UTF-8 or the seed is above INT64_MAX. */
json_t *jobspec_body_json(const tr_spec *s);

/* The job object's "method": {"type": ..., "<type>": {"hyperparameters": {every effective value}}}.
 * Returns a new reference (NULL only when out of memory). */
json_t *jobspec_effective_json(const tr_spec *s);

/* The effective coretuned extensions: {"architecture": {...}, "data": {...}, "device": "cpu" | "cuda:N"}
 * (new reference). */
json_t *jobspec_extensions_json(const tr_spec *s);

/* The body's "device": "cpu" -> TR_DEVICE_CPU, "cuda" -> TR_DEVICE_ANY (any GPU the daemon assigns), "cuda:N" -> N (0 <= N < 64, an index among the visible
 * CUDA devices). -EINVAL for anything else (NULL included). jobspec_device_name writes it back. */
int  jobspec_device_parse(const char *name, int *out);
void jobspec_device_name(int device, char *buf, size_t len); /* "cpu", "cuda" or "cuda:N"; len >= 8 */

/* "ce_tuning", "core_tuning" or "simclr": the method's name in bodies and job objects. */
const char *jobspec_method_name(enum tr_method m);

/* Nesting depth of a JSON text (brackets outside strings), to refuse deep bodies before parsing. */
int jobspec_json_depth(const char *text, size_t len);

#endif
