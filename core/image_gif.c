// GIF decoding (giflib, the first frame only): DGifOpen over a memory buffer, records walked
// with the low-level API (never DGifSlurp, which would decode every frame of an animation).
// The canvas is the logical screen, grown to hold the first frame if that sticks out (as
// Pillow does); the screen size is checked against max_pixels before anything else is read,
// the grown canvas before any pixel is decoded. Canvas pixels outside the frame and pixels
// with the transparent index are transparent, i.e. white (composited over white like alpha
// in the other formats; browsers also leave them transparent). The frame's local colour map
// wins over the global one; with neither, indices are grey levels (Pillow's "L" mode);
// indices past the end of the map are black. Interlaced frames are de-interlaced.
#include "core/image_internal.h"
#include <gif_lib.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t n, pos;
} gif_src;

static int gif_read_mem(GifFileType *g, GifByteType *dst, int want) {
    gif_src *s = g->UserData;
    if (want <= 0) return 0;
    size_t k = s->n - s->pos < (size_t)want ? s->n - s->pos : (size_t)want;
    memcpy(dst, s->p + s->pos, k);
    s->pos += k;
    return (int)k;
}

static const char *gif_why(int code) {
    const char *m = GifErrorString(code);
    return m ? m : "giflib error";
}

// Opens the GIF and reads up to the first image descriptor (local colour map included).
// *gcb gets the last graphic control block before it (transparent index -1 when none).
// maxpx < 0: no size check (a probe).
// On success the caller owns *gp (DGifCloseFile); on error it is closed here.
static int gif_first_image(gif_src *src, const char *what, int64_t maxpx, GifFileType **gp,
                           GraphicsControlBlock *gcb) {
    int err = 0;
    GifFileType *g = DGifOpen(src, gif_read_mem, &err);
    if (!g) return cd_err("%s: bad GIF header: %s", what, gif_why(err));
    gcb->TransparentColor = NO_TRANSPARENT_COLOR;
    // A screen of 0x0 (some encoders write it) takes the frame's size below.
    if (maxpx >= 0 && (g->SWidth || g->SHeight) && cd_image_check_size(what, "GIF", g->SWidth, g->SHeight, maxpx)) goto fail;
    for (;;) {
        GifRecordType rt;
        if (DGifGetRecordType(g, &rt) == GIF_ERROR) {
            cd_err("%s: truncated or corrupt GIF: %s", what, gif_why(g->Error));
            goto fail;
        }
        if (rt == TERMINATE_RECORD_TYPE) { cd_err("%s: GIF has no image", what); goto fail; }
        if (rt == IMAGE_DESC_RECORD_TYPE) {
            if (DGifGetImageDesc(g) == GIF_ERROR) {
                cd_err("%s: bad GIF image descriptor: %s", what, gif_why(g->Error));
                goto fail;
            }
            *gp = g;
            return 0;
        }
        if (rt != EXTENSION_RECORD_TYPE) continue;   // UNDEFINED/SCREEN_DESC: giflib skips
        int code = 0;
        GifByteType *ext = NULL;
        if (DGifGetExtension(g, &code, &ext) == GIF_ERROR) goto bad_ext;
        if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] == 4) DGifExtensionToGCB(4, ext + 1, gcb);
        while (ext) {
            if (DGifGetExtensionNext(g, &ext) == GIF_ERROR) goto bad_ext;
        }
    }
bad_ext:
    cd_err("%s: truncated or corrupt GIF extension: %s", what, gif_why(g->Error));
fail:
    DGifCloseFile(g, &err);
    return -1;
}

// The canvas for the first frame: the screen grown to hold the frame. `check`: apply the
// size policy (decode); a probe only reports the size.
static int gif_canvas(GifFileType *g, const char *what, int check, int64_t maxpx, int *cw, int *ch) {
    const GifImageDesc *d = &g->Image;
    if (d->Width <= 0 || d->Height <= 0 || d->Left < 0 || d->Top < 0)
        return cd_err("%s: GIF frame has bad geometry %dx%d at (%d,%d)", what, d->Width, d->Height, d->Left, d->Top);
    int64_t w = g->SWidth, h = g->SHeight;
    if ((int64_t)d->Left + d->Width > w) w = (int64_t)d->Left + d->Width;
    if ((int64_t)d->Top + d->Height > h) h = (int64_t)d->Top + d->Height;
    if (check) CD_TRY(cd_image_check_size(what, "GIF", w, h, maxpx));
    *cw = (int)w;
    *ch = (int)h;
    return 0;
}

int cd_gif_probe(const uint8_t *p, size_t n, const char *what, int *w, int *h) {
    gif_src src = {p, n, 0};
    GifFileType *g;
    GraphicsControlBlock gcb;
    CD_TRY(gif_first_image(&src, what, -1, &g, &gcb));
    int err, rc = gif_canvas(g, what, 0, 0, w, h);
    DGifCloseFile(g, &err);
    return rc;
}

// Palette index -> RGB: transparent -> white, past the map -> black, no map -> grey.
static void gif_colour(const ColorMapObject *map, int trans, unsigned idx, uint8_t *rgb) {
    if ((int)idx == trans) {
        rgb[0] = rgb[1] = rgb[2] = 255;
    } else if (!map) {
        rgb[0] = rgb[1] = rgb[2] = (uint8_t)idx;
    } else if ((int)idx < map->ColorCount && map->Colors) {
        rgb[0] = map->Colors[idx].Red;
        rgb[1] = map->Colors[idx].Green;
        rgb[2] = map->Colors[idx].Blue;
    } else {
        rgb[0] = rgb[1] = rgb[2] = 0;
    }
}

// Decodes the frame's rows (de-interlacing) into the white canvas `out`.
static int gif_frame_pixels(GifFileType *g, const char *what, int trans, cd_image *out) {
    const GifImageDesc *d = &g->Image;
    const ColorMapObject *map = d->ColorMap ? d->ColorMap : g->SColorMap;
    GifPixelType *line = malloc((size_t)d->Width);
    if (!line) return cd_err("%s: out of memory for a GIF row", what);
    static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
    int passes = d->Interlace ? 4 : 1;
    for (int pass = 0; pass < passes; pass++) {
        int y0 = d->Interlace ? start[pass] : 0, dy = d->Interlace ? step[pass] : 1;
        for (int y = y0; y < d->Height; y += dy) {
            if (DGifGetLine(g, line, d->Width) == GIF_ERROR) {
                free(line);
                return cd_err("%s: truncated or corrupt GIF data: %s", what, gif_why(g->Error));
            }
            uint8_t *row = out->rgb + (((size_t)(d->Top + y) * out->w) + d->Left) * 3;
            for (int x = 0; x < d->Width; x++) gif_colour(map, trans, line[x], row + (size_t)x * 3);
        }
    }
    free(line);
    return 0;
}

int cd_gif_decode(const uint8_t *p, size_t n, const char *what, int64_t maxpx, cd_image *out) {
    gif_src src = {p, n, 0};
    GifFileType *g;
    GraphicsControlBlock gcb;
    out->w = out->h = 0;
    out->rgb = NULL;
    CD_TRY(gif_first_image(&src, what, maxpx, &g, &gcb));
    int cw = 0, ch = 0, err, rc = -1;
    if (gif_canvas(g, what, 1, maxpx, &cw, &ch) == 0) {
        if (cd_image_alloc(out, cw, ch) == 0) {
            memset(out->rgb, 255, (size_t)cw * ch * 3);
            rc = gif_frame_pixels(g, what, gcb.TransparentColor, out);
            if (rc) cd_image_free(out);
        } else {
            cd_errctx("%s", what);
        }
    }
    DGifCloseFile(g, &err);
    return rc;
}
