/* spec/progline.h — the progress-line format: one compact JSON object per line, written by
 * `coretune train` (stdout and --progress FILE) and read back by whoever follows that file (the
 * daemon's Slurm executor). The one definition of the format, so writer and reader cannot drift.
 * Pure functions, any thread. Writers return a malloc'd line (caller frees); pl_parse returns 0 or
 * -EINVAL and treats its input as hostile (bounded, never crashes).
 *
 * Lines ("type" first; numbers that are not finite are null and read back as NAN):
 *   {"type":"start","resumed":false,"step":0}          once, before training (step: the checkpoint's)
 *   {"type":"step","step","total_steps","epoch","epochs","train_loss","ce_loss","contrastive_loss","lr",
 *    "images_per_second","eta_seconds"}
 *   {"type":"epoch","step","total_steps","epoch","epochs","valid_loss","valid_accuracy"}
 *   {"type":"checkpoint","step","total_steps","epoch","epochs","path"}
 *   {"type":"summary","status":"succeeded"|"stopped","steps","epochs","best_valid_accuracy",
 *    "final_valid_accuracy","final_valid_loss","best_epoch","peak_bytes","early_stopped"}  last line of a
 *    clean run (early_stopped optional when read: older writers lack it)
 *   {"type":"error","code":-22,"message":"..."}        last line of a failed run
 * Doubles are written with 17 significant digits, so they read back bit for bit. A reader ignores
 * keys it does not know (a newer writer may add some); every key above is required. */
#ifndef CT_PROGLINE_H
#define CT_PROGLINE_H
#include "trainer/trainer.h"
#include <stddef.h>

/* No valid line is longer (path and message escaped at worst 6 bytes a byte fit well inside), so a
 * reader may refuse a longer one unread. */
#define PL_LINE_MAX 8192
#define PL_MESSAGE_MAX 512

enum pl_kind { PL_PROGRESS, PL_START, PL_SUMMARY, PL_ERROR };

typedef struct pl_record {
    enum pl_kind kind;
    tr_progress p;            /* PL_PROGRESS: kind, step, total_steps, epoch, epochs and the fields of its
                               * kind (the others 0); p.checkpoint_path points at path for a checkpoint,
                               * else NULL (a copy of the record still points at the original's).
                               * PL_START: p.step = the step training continues after. */
    char path[TR_PATH_MAX];
    int resumed;              /* PL_START: 1 = continued from a checkpoint */
    tr_result res;            /* PL_SUMMARY (res.stopped = 1 for "stopped") */
    int rc;                   /* PL_ERROR: tr_run's negative code */
    char message[PL_MESSAGE_MAX]; /* PL_ERROR */
} pl_record;

/* Each returns a malloc'd line without '\n', NULL when out of memory (or for an unknown p->kind).
 * Strings that are not valid UTF-8 are written with \xNN for each bad byte; a checkpoint path is cut
 * to TR_PATH_MAX - 1 bytes and a message to PL_MESSAGE_MAX - 1, so pl_parse always takes them back. */
char *pl_progress_line(const tr_progress *p);
char *pl_start_line(int resumed, int step);         /* step >= 0 */
char *pl_summary_line(const tr_result *r);          /* "stopped" when r->stopped != 0 */
char *pl_error_line(int rc, const char *message);   /* rc < 0 */

/* Parse one line (len bytes, no NUL needed; surrounding whitespace such as the '\n' is fine) into
 * OUT out, which is written only on success. 0, or -EINVAL for anything not a valid line: not one
 * JSON object, longer than PL_LINE_MAX, an unknown type, a missing key, a wrong type, an integer
 * out of range (negative counts, a non-negative code), a string too long for its buffer. */
int pl_parse(const char *line, size_t len, pl_record *out);

#endif
