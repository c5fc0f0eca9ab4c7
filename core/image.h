// Images: decode (JPEG via TurboJPEG, PNG, WebP, GIF via giflib, BMP) to 8-bit RGB, EXIF orientation, resize
// (antialiased, PIL-compatible filters) with img2dataset's modes, encode JPEG/PNG.
// Owner of the implementation: core/image*.c (decode, resize, encode). All functions are
// reentrant (errors go to the thread-local cd_err buffer); call them from any thread.
#ifndef CD_IMAGE_H
#define CD_IMAGE_H
#include <stddef.h>
#include <stdint.h>

typedef struct { int w, h; uint8_t *rgb; } cd_image;   // RGB8 interleaved, row-major, owned

typedef enum { CD_FMT_UNKNOWN = 0, CD_FMT_JPEG, CD_FMT_PNG, CD_FMT_WEBP, CD_FMT_GIF, CD_FMT_BMP, CD_FMT_HTML } cd_imgfmt;
// Format from magic bytes only (Content-Type and file names are never trusted).
cd_imgfmt cd_image_sniff(const void *buf, size_t len);
const char *cd_imgfmt_name(cd_imgfmt f);
// Read width/height from the header without decoding pixels (decompression-bomb check).
int cd_image_probe(const void *buf, size_t len, const char *what, cd_imgfmt *fmt, int *w, int *h);
// Decode to RGB: gray/CMYK/palette/16-bit become RGB8, alpha is composited over white,
// the JPEG EXIF orientation is applied. Refuses images over max_pixels (0 = no cap) before
// decoding. min_side > 0 lets JPEG use DCT-domain scaling (1/2, 1/4, 1/8) while keeping
// the shorter side >= min_side (pass the target size for every resize mode; 0 for an exact
// full-size decode, e.g. when CLIP preprocessing must match PIL). The decoded size is then
// smaller than the original: get the original size from cd_image_probe (which reports it
// after EXIF orientation, as decode does). `what` (path or URL) names the image in errors.
// Policy: a JPEG with any libjpeg warning (corrupt or truncated data, missing end marker)
// is an error, except stray bytes between markers when the end marker is present. CMYK
// JPEGs with an Adobe APP14 marker are read as inverted (Photoshop) CMYK, others as plain.
// 16-bit PNG samples are scaled (rounded) to 8 bits. Animated WebP: the first frame.
// GIF: the first frame on the logical screen (grown to hold the frame); the transparent index
// and the screen outside the frame are white. BMP: 1/4/8/16/24/32 bit, BI_RGB and bit fields
// (an alpha mask is honoured unless all alpha is 0), RLE8/RLE4; embedded JPEG/PNG are refused.
// Details in core/image_gif.c and core/image_bmp.c.
int cd_image_decode(const void *buf, size_t len, const char *what, int64_t max_pixels,
                    int min_side, cd_image *out);
int cd_image_load(const char *path, int64_t max_pixels, cd_image *out);
// Is this file name one of the image kinds folders are scanned for (.jpg .jpeg .png .webp
// .gif .bmp, any case)? The one list every stage that walks a folder uses.
int cd_image_name_supported(const char *name);
#define CD_IMAGE_EXTS ".jpg, .jpeg, .png, .webp, .gif, .bmp"

typedef enum { CD_FILTER_BILINEAR, CD_FILTER_BICUBIC, CD_FILTER_LANCZOS, CD_FILTER_BOX } cd_filter;
// Resize to exactly w x h with PIL's convolution resampling (antialiased on downscale,
// separable, rounding to uint8 like PIL's Image.resize).
int cd_image_resize_to(const cd_image *in, int w, int h, cd_filter filter, cd_image *out);

// img2dataset resize modes, target `size`:
//   no: unchanged; keep_ratio: shorter side -> size; center_crop: shorter side -> size then
//   centre crop size x size at ((h-size)/2, (w-size)/2); border: longer side -> size, pad to
//   size x size with WHITE (img2dataset pads with [255,255,255]), top = (size-h)/2.
// Sides are round-half-even(dim * size / side) as albumentations' py3round; the image is
// resized even when smaller (img2dataset's default resize_only_if_bigger=False).
// Filters (img2dataset uses cv2 INTER_AREA to downscale, LANCZOS4 to upscale): BOX on
// downscale (PIL's box = area averaging) and LANCZOS (a=3) on upscale; see
// cd_image_resize_filters to choose others.
typedef enum { CD_RESIZE_NO, CD_RESIZE_KEEP_RATIO, CD_RESIZE_CENTER_CROP, CD_RESIZE_BORDER } cd_resize_mode;
int cd_resize_mode_parse(const char *s, cd_resize_mode *out);
const char *cd_resize_mode_name(cd_resize_mode m);
int cd_image_resize(const cd_image *in, int size, cd_resize_mode mode, cd_image *out);
int cd_image_resize_filters(const cd_image *in, int size, cd_resize_mode mode, cd_filter down,
                            cd_filter up, cd_image *out);
int cd_filter_parse(const char *s, cd_filter *out);   // bilinear|bicubic|lanczos|box
const char *cd_filter_name(cd_filter f);
// Crop a rectangle (x, y, w, h inside the image).
int cd_image_crop(const cd_image *in, int x, int y, int w, int h, cd_image *out);

// Encoders: heap buffers (free()). JPEG subsampling is 4:4:4 at quality >= 90 and 4:2:0
// below (img2dataset's cv2 writes 4:2:0 always; stored training images keep full chroma).
int cd_image_encode_jpeg(const cd_image *im, int quality, uint8_t **buf, size_t *len);
// PNG with optional tEXt chunks (keys[i] -> vals[i]), e.g. the generation parameters.
int cd_image_encode_png(const cd_image *im, int ntext, const char *const *keys,
                        const char *const *vals, uint8_t **buf, size_t *len);
// Save by extension (.jpg/.jpeg quality 95, .png), atomically.
int cd_image_save(const char *path, const cd_image *im);
// A grid of n images, `cols` per row, each scaled (bicubic) to fit thumb x thumb and centred
// in its cell, on a dark grey background (24,24,24) with 4 px gaps and margins; an image
// with rgb == NULL leaves its cell empty. Output: cols*(thumb+4)+4 wide.
int cd_image_grid(const cd_image *ims, int n, int cols, int thumb, cd_image *out);
void cd_image_free(cd_image *im);
// Allocate an uninitialised w x h image (fails on w,h <= 0 or over CD_IMAGE_HARD_MAX_PIXELS).
int cd_image_alloc(cd_image *im, int w, int h);
// Absolute cap on decoded pixels whatever max_pixels says (bounds memory at ~1 GiB RGBA).
#define CD_IMAGE_HARD_MAX_PIXELS ((int64_t)1 << 28)
// JPEG EXIF orientation (1..8) from an APP1 Exif segment; 1 when absent or unreadable.
int cd_jpeg_exif_orientation(const void *buf, size_t len);
// Apply an EXIF orientation (1..8) to an image in place (5..8 swap w and h).
int cd_image_orient(cd_image *im, int orientation);
#endif
