/* trainer/gpu/gpu_none.c — gpu.h when built without CUDA (make CUDA=0): no devices, every set-up call
 * fails with -ENODEV, so a "device": "cuda" job is refused at submission and nothing else changes.
 * The layer functions exist (they cannot be reached without a context) so callers build either way. */
#include "trainer/gpu/gpu.h"
#include <errno.h>
#include <stdio.h>

int gpu_device_count(char *reason, size_t reasonlen)
{
    if (reason) snprintf(reason, reasonlen, "built without CUDA (make CUDA=0, or no /usr/local/cuda/bin/nvcc)");
    return 0;
}
int gpu_device_info(int dev, char *name, size_t namelen, size_t *total_bytes)
{
    (void)dev; (void)name; (void)namelen; (void)total_bytes;
    return -ENODEV;
}
int gpu_device_pci_bus_id(int dev, char *buf, size_t len)
{
    (void)dev; (void)buf; (void)len;
    return -ENODEV;
}
int gpu_ctx_new(gpu_ctx **out, int dev, int tf32, char *err, size_t errlen)
{
    (void)tf32;
    *out = NULL;
    snprintf(err, errlen, "device cuda:%d is not visible (this build has no CUDA backend)", dev);
    return -ENODEV;
}
void gpu_ctx_free(gpu_ctx *g) { (void)g; }
int gpu_ctx_reserve(gpu_ctx *g, size_t bytes, char *err, size_t errlen)
{
    (void)g; (void)bytes;
    snprintf(err, errlen, "this build has no CUDA backend");
    return -ENODEV;
}
size_t gpu_ctx_workspace_bytes(const gpu_ctx *g) { (void)g; return 0; }
size_t gpu_ctx_peak_bytes(const gpu_ctx *g) { (void)g; return 0; }
int gpu_ctx_device_used(gpu_ctx *g, size_t *bytes) { (void)g; (void)bytes; return -ENODEV; }
float *gpu_alloc(gpu_ctx *g, size_t n) { (void)g; (void)n; return NULL; }
size_t gpu_arena_used(const gpu_ctx *g) { (void)g; return 0; }
const char *gpu_error(const gpu_ctx *g) { (void)g; return "this build has no CUDA backend"; }

/* Unreachable without a context: each says so by its return value. */
#define NOGPU return -ENODEV
int gpu_upload(gpu_ctx *g, float *d, const float *s, size_t n) { (void)g; (void)d; (void)s; (void)n; NOGPU; }
int gpu_download(gpu_ctx *g, float *d, const float *s, size_t n) { (void)g; (void)d; (void)s; (void)n; NOGPU; }
int gpu_memset0(gpu_ctx *g, float *d, size_t n) { (void)g; (void)d; (void)n; NOGPU; }
int gpu_sync(gpu_ctx *g) { (void)g; NOGPU; }
int gpu_conv_new(gpu_conv **out, gpu_ctx *g, const nn_conv *c, int h, int w, int max_n, char *err, size_t errlen)
{
    (void)g; (void)c; (void)h; (void)w; (void)max_n;
    *out = NULL;
    snprintf(err, errlen, "this build has no CUDA backend");
    NOGPU;
}
int gpu_conv_forward(gpu_conv *p, float *o, const float *i, const float *w, int n)
{ (void)p; (void)o; (void)i; (void)w; (void)n; NOGPU; }
int gpu_conv_backward(gpu_conv *p, float *di, float *dw, const float *d, const float *i, const float *w, int n)
{ (void)p; (void)di; (void)dw; (void)d; (void)i; (void)w; (void)n; NOGPU; }
int gpu_bn_forward_train(gpu_ctx *g, float *o, float *m, float *r, float *rm, float *rv, const float *i,
                         const float *ga, const float *b, int c, int n, int hw, float mo, float e, int re)
{ (void)g; (void)o; (void)m; (void)r; (void)rm; (void)rv; (void)i; (void)ga; (void)b; (void)c; (void)n; (void)hw;
  (void)mo; (void)e; (void)re; NOGPU; }
int gpu_bn_forward_eval(gpu_ctx *g, float *o, const float *i, const float *ga, const float *b, const float *rm,
                        const float *rv, int c, int n, int hw, float e, int re)
{ (void)g; (void)o; (void)i; (void)ga; (void)b; (void)rm; (void)rv; (void)c; (void)n; (void)hw; (void)e; (void)re;
  NOGPU; }
int gpu_bn_backward(gpu_ctx *g, float *di, float *dg, float *db, float *t, const float *d, const float *mk,
                    const float *i, const float *m, const float *r, const float *ga, int c, int n, int hw, float e)
{ (void)g; (void)di; (void)dg; (void)db; (void)t; (void)d; (void)mk; (void)i; (void)m; (void)r; (void)ga; (void)c;
  (void)n; (void)hw; (void)e; NOGPU; }
int gpu_relu_forward(gpu_ctx *g, float *o, const float *i, size_t l) { (void)g; (void)o; (void)i; (void)l; NOGPU; }
int gpu_relu_backward(gpu_ctx *g, float *di, const float *d, const float *o, size_t l)
{ (void)g; (void)di; (void)d; (void)o; (void)l; NOGPU; }
int gpu_add_forward(gpu_ctx *g, float *o, const float *a, const float *b, size_t l)
{ (void)g; (void)o; (void)a; (void)b; (void)l; NOGPU; }
int gpu_nchw_to_cnhw(gpu_ctx *g, float *o, const float *i, int n, int c, int hw)
{ (void)g; (void)o; (void)i; (void)n; (void)c; (void)hw; NOGPU; }
int gpu_maxpool_forward(gpu_ctx *g, float *o, int32_t *a, const float *i, int c, int n, int h, int w, int k, int s,
                        int p)
{ (void)g; (void)o; (void)a; (void)i; (void)c; (void)n; (void)h; (void)w; (void)k; (void)s; (void)p; NOGPU; }
int gpu_maxpool_backward(gpu_ctx *g, float *di, const float *d, const int32_t *a, int c, int n, int h, int w, int k,
                         int s, int p)
{ (void)g; (void)di; (void)d; (void)a; (void)c; (void)n; (void)h; (void)w; (void)k; (void)s; (void)p; NOGPU; }
int gpu_avgpool_forward(gpu_ctx *g, float *o, const float *i, int c, int n, int hw)
{ (void)g; (void)o; (void)i; (void)c; (void)n; (void)hw; NOGPU; }
int gpu_avgpool_backward(gpu_ctx *g, float *di, const float *d, int c, int n, int hw)
{ (void)g; (void)di; (void)d; (void)c; (void)n; (void)hw; NOGPU; }
int gpu_linear_forward(gpu_ctx *g, float *o, const float *i, const float *w, const float *b, int n, int id, int od)
{ (void)g; (void)o; (void)i; (void)w; (void)b; (void)n; (void)id; (void)od; NOGPU; }
int gpu_linear_backward(gpu_ctx *g, float *di, float *dw, float *db, const float *d, const float *i, const float *w,
                        int n, int id, int od)
{ (void)g; (void)di; (void)dw; (void)db; (void)d; (void)i; (void)w; (void)n; (void)id; (void)od; NOGPU; }
int gpu_sgd_step(gpu_ctx *g, float *p, float *m, const float *gr, size_t n, float lr, float mo, float wd, int ne)
{ (void)g; (void)p; (void)m; (void)gr; (void)n; (void)lr; (void)mo; (void)wd; (void)ne; NOGPU; }
