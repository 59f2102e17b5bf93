/* trainer/gpu/gpu_ctx.cu — the CUDA context (stream, cuDNN handle, the one arena),
 * copies, the elementwise kernels and SGD. See gpu.h. Called from the job's thread only; errors are
 * kept in the context (gpu__fail), never printed. */
#include "trainer/gpu/gpu_int.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gpu__fail(gpu_ctx *g, const char *what, const char *why)
{
    if (g && !g->err[0]) snprintf(g->err, sizeof g->err, "%s: %s", what, why);
    return -EIO;
}
int gpu__cuda(gpu_ctx *g, cudaError_t e, const char *what)
{
    return e == cudaSuccess ? 0 : gpu__fail(g, what, cudaGetErrorString(e));
}
int gpu__dnn(gpu_ctx *g, cudnnStatus_t s, const char *what)
{
    return s == CUDNN_STATUS_SUCCESS ? 0 : gpu__fail(g, what, cudnnGetErrorString(s));
}

cudnnStatus_t gpu__cnhw_desc_t(cudnnTensorDescriptor_t d, cudnnDataType_t t, int n, int c, int h, int w)
{
    int dims[4] = {n, c, h, w}, strides[4] = {h * w, n * h * w, w, 1};
    return cudnnSetTensorNdDescriptor(d, t, 4, dims, strides);
}

cudnnStatus_t gpu__cnhw_desc(cudnnTensorDescriptor_t d, int n, int c, int h, int w)
{
    return gpu__cnhw_desc_t(d, CUDNN_DATA_FLOAT, n, c, h, w);
}

static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

size_t gpu__bf16_bytes(const gpu_ctx *g)
{
    if (!g->bf16) return 0;
    size_t e = sizeof(__nv_bfloat16);
    return align256(g->bx_n * e) + 2 * align256(g->bw_n * e) + align256(g->by_n * e);
}

int gpu__blocks(size_t len)
{
    size_t b = (len + 255) / 256;
    return (int)(b < 1 ? 1 : b > 65535u * 16 ? 65535u * 16 : b); /* kernels loop with a grid stride */
}

int gpu_device_count(char *reason, size_t reasonlen)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= 0) {
        /* no libcuda.so (no driver) reads as cudaErrorInsufficientDriver: cudart loads it lazily */
        if (reason) snprintf(reason, reasonlen, "no CUDA device: %s", e != cudaSuccess ? cudaGetErrorString(e) : "none visible");
        return 0;
    }
    if (reason) snprintf(reason, reasonlen, "%d CUDA device%s", n, n > 1 ? "s" : "");
    return n;
}

int gpu_device_info(int dev, char *name, size_t namelen, size_t *total_bytes)
{
    cudaDeviceProp p;
    if (dev < 0 || dev >= gpu_device_count(NULL, 0) || cudaGetDeviceProperties(&p, dev) != cudaSuccess) return -ENODEV;
    if (name) snprintf(name, namelen, "%s", p.name);
    if (total_bytes) *total_bytes = p.totalGlobalMem;
    return 0;
}

int gpu_device_pci_bus_id(int dev, char *buf, size_t len)
{
    if (dev < 0 || dev >= gpu_device_count(NULL, 0) || len > 0x7fffffff ||
        cudaDeviceGetPCIBusId(buf, (int)len, dev) != cudaSuccess)
        return -ENODEV;
    return 0;
}

int gpu_ctx_new(gpu_ctx **out, int dev, int precision, char *err, size_t errlen)
{
    *out = NULL;
    char why[128];
    if (dev < 0 || dev >= gpu_device_count(why, sizeof why)) {
        snprintf(err, errlen, "device cuda:%d is not visible (%s)", dev, why);
        return -ENODEV;
    }
    gpu_ctx *g = (gpu_ctx *)calloc(1, sizeof *g);
    if (!g) { snprintf(err, errlen, "out of memory"); return -ENOMEM; }
    if (precision < GPU_FP32 || precision > GPU_BF16) {
        free(g);
        snprintf(err, errlen, "unknown precision %d", precision);
        return -EINVAL;
    }
    g->dev = dev;
    g->tf32 = precision == GPU_TF32;
    g->bf16 = precision == GPU_BF16;
    int rc = gpu__cuda(g, cudaSetDevice(dev), "cudaSetDevice");
    if (!rc) rc = gpu__cuda(g, cudaStreamCreateWithFlags(&g->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    if (!rc) rc = gpu__dnn(g, cudnnCreate(&g->dnn), "cudnnCreate");
    if (!rc) rc = gpu__dnn(g, cudnnSetStream(g->dnn, g->stream), "cudnnSetStream");
    if (!rc) rc = gpu__dnn(g, cudnnCreateTensorDescriptor(&g->t1), "cudnnCreateTensorDescriptor");
    if (!rc) rc = gpu__dnn(g, cudnnCreateTensorDescriptor(&g->t2), "cudnnCreateTensorDescriptor");
    if (rc) {
        snprintf(err, errlen, "%s", g->err);
        gpu_ctx_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

int gpu_ctx_reserve(gpu_ctx *g, size_t bytes, char *err, size_t errlen)
{
    if (g->arena) { snprintf(err, errlen, "device memory already reserved"); return -EBUSY; }
    size_t a = align256(bytes), ws = align256(g->ws_need), total = a + ws + gpu__bf16_bytes(g);
    cudaError_t e = cudaMalloc((void **)&g->arena, total ? total : 256);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* clear it: an allocation failure is not sticky */
        snprintf(err, errlen, "cannot allocate %zu MiB on cuda:%d: %s", total >> 20, g->dev, cudaGetErrorString(e));
        g->arena = NULL;
        return -ENOMEM;
    }
    g->arena_bytes = a;
    g->ws = (float *)(g->arena + a);
    g->ws_bytes = g->ws_need;
    if (g->bf16) {
        char *p = g->arena + a + ws;
        size_t e = sizeof(__nv_bfloat16);
        g->bx = (__nv_bfloat16 *)p;  p += align256(g->bx_n * e);
        g->bw = (__nv_bfloat16 *)p;  p += align256(g->bw_n * e);
        g->bdw = (__nv_bfloat16 *)p; p += align256(g->bw_n * e);
        g->by = (__nv_bfloat16 *)p;
    }
    return 0;
}

int gpu_ctx_device_used(gpu_ctx *g, size_t *bytes)
{
    size_t fr = 0, total = 0;
    int rc = gpu__cuda(g, cudaMemGetInfo(&fr, &total), "cudaMemGetInfo");
    if (!rc) *bytes = total - fr;
    return rc;
}

size_t gpu_ctx_workspace_bytes(const gpu_ctx *g) { return g->ws_need + gpu__bf16_bytes(g); }
size_t gpu_ctx_peak_bytes(const gpu_ctx *g)
{
    return g->arena ? g->arena_bytes + align256(g->ws_bytes) + gpu__bf16_bytes(g) : 0;
}

void gpu_ctx_free(gpu_ctx *g)
{
    if (!g) return;
    if (g->stream) cudaStreamSynchronize(g->stream);
    for (int i = 0; i < g->nconvs; i++) {
        gpu_conv *p = &g->convs[i];
        if (p->xd) cudnnDestroyTensorDescriptor(p->xd);
        if (p->yd) cudnnDestroyTensorDescriptor(p->yd);
        if (p->wd) cudnnDestroyFilterDescriptor(p->wd);
        if (p->cd) cudnnDestroyConvolutionDescriptor(p->cd);
    }
    if (g->t1) cudnnDestroyTensorDescriptor(g->t1);
    if (g->t2) cudnnDestroyTensorDescriptor(g->t2);
    if (g->dnn) cudnnDestroy(g->dnn);
    if (g->arena) cudaFree(g->arena);
    if (g->stream) cudaStreamDestroy(g->stream);
    free(g);
}

float *gpu_alloc(gpu_ctx *g, size_t nfloats)
{
    size_t bytes = (nfloats * sizeof(float) + 255) & ~(size_t)255;
    if (bytes > g->arena_bytes - g->used) {
        gpu__fail(g, "gpu_alloc", "arena exhausted");
        return NULL;
    }
    float *p = (float *)(g->arena + g->used);
    g->used += bytes;
    return p;
}

size_t gpu_arena_used(const gpu_ctx *g) { return g->used; }
const char *gpu_error(const gpu_ctx *g) { return g->err; }

int gpu_upload(gpu_ctx *g, float *dst, const float *src, size_t n)
{
    return gpu__cuda(g, cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, g->stream), "upload");
}

int gpu_download(gpu_ctx *g, float *dst, const float *src, size_t n)
{
    int rc = gpu__cuda(g, cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, g->stream), "download");
    return rc ? rc : gpu_sync(g);
}

int gpu_memset0(gpu_ctx *g, float *dev, size_t n)
{
    return gpu__cuda(g, cudaMemsetAsync(dev, 0, n * sizeof(float), g->stream), "memset");
}

int gpu_sync(gpu_ctx *g)
{
    return gpu__cuda(g, cudaStreamSynchronize(g->stream), "cudaStreamSynchronize");
}

/* ---- elementwise kernels: grid-stride loops, one value per thread per pass ---- */
#define GRID_LOOP(i, len) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (len); \
                               i += (size_t)gridDim.x * blockDim.x)

static __global__ void k_relu(float *out, const float *in, size_t len)
{
    GRID_LOOP(i, len) { float v = in[i]; out[i] = !(v <= 0.0f) ? v : 0.0f; } /* NaN passes, as torch */
}
static __global__ void k_relu_bwd(float *din, const float *dout, const float *out, size_t len)
{
    GRID_LOOP(i, len) din[i] = out[i] <= 0.0f ? 0.0f : dout[i];
}
static __global__ void k_add(float *out, const float *a, const float *b, size_t len)
{
    GRID_LOOP(i, len) out[i] = a[i] + b[i];
}
static __global__ void k_nchw_to_cnhw(float *out, const float *in, int n, int c, int hw)
{
    GRID_LOOP(t, (size_t)n * c * hw) {
        size_t i = t % hw, plane = t / hw; /* plane = img * c + ch in the input */
        int ch = (int)(plane % c), img = (int)(plane / c);
        out[((size_t)ch * n + img) * hw + i] = in[t];
    }
}
static __global__ void k_sgd(float *p, float *buf, const float *grad, size_t n, float lr, float mom, float wd,
                             int nesterov)
{
    GRID_LOOP(i, n) {
        /* __fmul_rn/__fadd_rn: no FMA contraction, so the arithmetic is sgd.c's */
        float g = __fadd_rn(grad[i], __fmul_rn(wd, p[i]));
        if (mom != 0.0f) {
            float b = __fadd_rn(__fmul_rn(mom, buf[i]), g);
            buf[i] = b;
            g = nesterov ? __fadd_rn(g, __fmul_rn(mom, b)) : b;
        }
        p[i] = __fsub_rn(p[i], __fmul_rn(lr, g));
    }
}

static int launched(gpu_ctx *g, const char *what) { return gpu__cuda(g, cudaGetLastError(), what); }

int gpu_relu_forward(gpu_ctx *g, float *out, const float *in, size_t len)
{
    k_relu<<<gpu__blocks(len), 256, 0, g->stream>>>(out, in, len);
    return launched(g, "relu_forward");
}
int gpu_relu_backward(gpu_ctx *g, float *din, const float *dout, const float *out, size_t len)
{
    k_relu_bwd<<<gpu__blocks(len), 256, 0, g->stream>>>(din, dout, out, len);
    return launched(g, "relu_backward");
}
int gpu_add_forward(gpu_ctx *g, float *out, const float *a, const float *b, size_t len)
{
    k_add<<<gpu__blocks(len), 256, 0, g->stream>>>(out, a, b, len);
    return launched(g, "add_forward");
}
int gpu_nchw_to_cnhw(gpu_ctx *g, float *out, const float *in, int n, int c, int hw)
{
    k_nchw_to_cnhw<<<gpu__blocks((size_t)n * c * hw), 256, 0, g->stream>>>(out, in, n, c, hw);
    return launched(g, "nchw_to_cnhw");
}
int gpu_sgd_step(gpu_ctx *g, float *params, float *momentum_buf, const float *grads, size_t n, float lr,
                 float momentum, float weight_decay, int nesterov)
{
    k_sgd<<<gpu__blocks(n), 256, 0, g->stream>>>(params, momentum_buf, grads, n, lr, momentum, weight_decay, nesterov);
    return launched(g, "sgd_step");
}
