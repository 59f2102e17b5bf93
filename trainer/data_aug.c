/* trainer/data_aug.c — seeded augmentation of one image into floats: random crop with zero
 * padding or torchvision's RandomResizedCrop (bilinear), horizontal flip, then normalisation.
 * Every draw comes from the rng passed in, so the result depends only on (image, aug, rng state).
 * Called from the loader's prefetch thread (or the consumer when synchronous); no allocation,
 * no failure: arguments are checked when the loader is built.
 */
#include "trainer/data.h"
#include <math.h>
#include <string.h>

void data_aug_default(data_aug *aug, const data_set *ds, bool train)
{
    memset(aug, 0, sizeof *aug);
    aug->crop = train ? DATA_CROP_PAD : DATA_CROP_NONE;
    aug->pad = ds->h / 8 > 0 ? ds->h / 8 : 1; /* 4 for 32 px, 3 for 28 px */
    aug->scale_min = 0.08f;
    aug->scale_max = 1.0f;
    aug->ratio_min = 3.0f / 4.0f;
    aug->ratio_max = 4.0f / 3.0f;
    aug->flip_p = train ? 0.5f : 0.0f;
    for (int c = 0; c < 3; c++) {
        aug->mean[c] = ds->mean[c < ds->c ? c : 0];
        aug->std[c] = ds->std[c < ds->c ? c : 0];
    }
}

/* torchvision.transforms.RandomResizedCrop.get_params, draw for draw (Python's round() is
 * round-half-even, as nearbyint in the default rounding mode). OUT: top, left, height, width. */
static void rrc_params(int *ti, int *tj, int *th, int *tw, int H, int W, const data_aug *a, rng_t *r)
{
    double area = (double)H * W, lr0 = log(a->ratio_min), lr1 = log(a->ratio_max);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = area * (a->scale_min + (a->scale_max - a->scale_min) * rng_uniform(r));
        double ar = exp(lr0 + (lr1 - lr0) * rng_uniform(r));
        int w = (int)nearbyint(sqrt(target * ar)), h = (int)nearbyint(sqrt(target / ar));
        if (w > 0 && w <= W && h > 0 && h <= H) {
            *ti = (int)rng_below(r, (uint32_t)(H - h + 1));
            *tj = (int)rng_below(r, (uint32_t)(W - w + 1));
            *th = h;
            *tw = w;
            return;
        }
    }
    double in_ratio = (double)W / H;
    int w = W, h = H;
    if (in_ratio < a->ratio_min) h = (int)nearbyint(w / a->ratio_min);
    else if (in_ratio > a->ratio_max) w = (int)nearbyint(h * a->ratio_max);
    if (h < 1) h = 1;
    if (w < 1) w = 1;
    *ti = (H - h) / 2;
    *tj = (W - w) / 2;
    *th = h;
    *tw = w;
}

void data_augment_strided(float *dst, size_t cstride, const data_set *ds, int index,
                          const data_aug *aug, rng_t *rng)
{
    const int C = ds->c, H = ds->h, W = ds->w;
    const uint8_t *img = ds->pixels + (size_t)index * C * H * W;
    float scale[3], bias[3];
    for (int c = 0; c < C; c++) { /* (p/255 - mean) / std as one multiply-add */
        scale[c] = 1.0f / (255.0f * aug->std[c]);
        bias[c] = -aug->mean[c] / aug->std[c];
    }
    int dy = 0, dx = 0, ci = 0, cj = 0, ch = H, cw = W;
    if (aug->crop == DATA_CROP_PAD && aug->pad > 0) {
        dy = (int)rng_below(rng, (uint32_t)(2 * aug->pad + 1)) - aug->pad;
        dx = (int)rng_below(rng, (uint32_t)(2 * aug->pad + 1)) - aug->pad;
    } else if (aug->crop == DATA_CROP_RESIZED) {
        rrc_params(&ci, &cj, &ch, &cw, H, W, aug, rng);
    }
    bool flip = aug->flip_p > 0 && rng_uniform(rng) < aug->flip_p;

    for (int c = 0; c < C; c++) {
        const uint8_t *p = img + (size_t)c * H * W;
        float *o = dst + (size_t)c * cstride;
        if (aug->crop == DATA_CROP_RESIZED) {
            /* Bilinear, half-pixel centres, from the ch x cw crop at (ci, cj) to H x W. */
            for (int y = 0; y < H; y++) {
                double sy = (y + 0.5) * ch / H - 0.5;
                if (sy < 0) sy = 0;
                int y0 = (int)sy, y1 = y0 + 1 < ch ? y0 + 1 : ch - 1;
                float fy = (float)(sy - y0);
                const uint8_t *r0 = p + (size_t)(ci + y0) * W + cj, *r1 = p + (size_t)(ci + y1) * W + cj;
                for (int x = 0; x < W; x++) {
                    double sx = (x + 0.5) * cw / W - 0.5;
                    if (sx < 0) sx = 0;
                    int x0 = (int)sx, x1 = x0 + 1 < cw ? x0 + 1 : cw - 1;
                    float fx = (float)(sx - x0);
                    float v = (1 - fy) * ((1 - fx) * r0[x0] + fx * r0[x1]) + fy * ((1 - fx) * r1[x0] + fx * r1[x1]);
                    o[(size_t)y * W + (flip ? W - 1 - x : x)] = v * scale[c] + bias[c];
                }
            }
        } else {
            /* Shifted copy; outside the image is the zero padding (a black pixel, then normalised). */
            for (int y = 0; y < H; y++) {
                int sy = y + dy;
                float *orow = o + (size_t)y * W;
                for (int x = 0; x < W; x++) {
                    int sx = x + dx;
                    float v = sy >= 0 && sy < H && sx >= 0 && sx < W ? p[(size_t)sy * W + sx] : 0;
                    orow[flip ? W - 1 - x : x] = v * scale[c] + bias[c];
                }
            }
        }
    }
}

void data_augment(float *dst, const data_set *ds, int index, const data_aug *aug, rng_t *rng)
{
    data_augment_strided(dst, (size_t)ds->h * ds->w, ds, index, aug, rng);
}
