/* api/render.h — the core's typed results (core/core.h) as the JSON objects clients see: the OpenAI
 * fine-tuning shapes (jobs, events, checkpoints, list envelopes) and coretuned's own (metrics, models,
 * datasets, files, users, audit), and the service counters as Prometheus text. Pure: loop thread or any;
 * each function returns a new reference (NULL when out of memory) and borrows its input. The one piece of
 * state is a render_memo, which belongs to its creator's thread (the api context's: the loop). */
#ifndef CT_RENDER_H
#define CT_RENDER_H
#include "api/prom.h"
#include "core/core.h"
#include <jansson.h>

json_t *render_job(const svc_job *j);
json_t *render_job_page(const svc_job_page *p);

/* Jobs as compact JSON text, remembered: RENDER_MEMO_SLOTS slots (sets of 8 by job id, the least
 * recently used refilled), each holding the text and a copy of every input render_job read for it (the
 * row's shown fields, progress, queue place, estimates, executor record, device). A job whose inputs all
 * compare equal gets the same text again without being rendered (parsing its method and extensions JSON
 * and printing ~1.7 KB was most of a page's time); any change to what a job shows is a different input,
 * so it is rendered anew. */
#define RENDER_MEMO_SLOTS 512
typedef struct render_memo render_memo;
int  render_memo_new(render_memo **out);  /* -ENOMEM */
void render_memo_free(render_memo *m);    /* NULL-safe */
/* render_job / render_job_page as json_dumps(..., JSON_COMPACT) would print them: new text (the caller
 * frees it), NULL when out of memory. m may be NULL (rendered every time). */
char *render_job_text(render_memo *m, const svc_job *j);
char *render_job_page_text(render_memo *m, const svc_job_page *p);
json_t *render_event(const svc_event *ev);
json_t *render_event_page(const svc_event_page *p, const char *object);
json_t *render_sweep(const svc_sweep *w);
json_t *render_sweep_page(const svc_sweep_page *p);
json_t *render_checkpoints(const svc_ckpt_page *p);
json_t *render_metrics(const svc_metrics *m);
json_t *render_model(const svc_model *m);
json_t *render_models(const svc_model_list *l);
json_t *render_datasets(const svc_dataset_list *l);
json_t *render_file(const svc_file *f);
json_t *render_files(const svc_file_list *l);
json_t *render_me(const svc_me_info *me);
json_t *render_users(const svc_user_list *l);
json_t *render_audit(const svc_audit_page *p);
json_t *render_ready(const svc_readiness *r);
json_t *render_deleted(const char *id, const char *object);  /* {"id", "object", "deleted": true} */
json_t *render_storage(const svc_storage *st);
/* The service's part of GET /metrics, appended to b. */
void render_stats(prom_buf *b, const svc_stats *st);

#endif
