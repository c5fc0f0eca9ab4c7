// Image sources for training: an LMDB store of customdiff-preprocess (a folder with
// data.mdb), a Custom Diffusion retrieval folder (images.txt + caption.txt), or a plain
// folder of image files (every regular file except text/metadata sidecars).
#ifndef CD_TRAIN_IMGSRC_H
#define CD_TRAIN_IMGSRC_H
#include "core/image.h"

typedef struct cd_imgsrc cd_imgsrc;
// want_captions: read per-image captions (store captions, caption.txt, NAME.txt sidecars).
// limit > 0 keeps only the first `limit` images. An empty source is an error.
int cd_imgsrc_open(cd_imgsrc **out, const char *path, int want_captions, int limit);
int cd_imgsrc_count(const cd_imgsrc *s);
const char *cd_imgsrc_path(const cd_imgsrc *s);
// Decode image i to RGB8; *caption (may be NULL) gets a heap string or NULL.
int cd_imgsrc_get(cd_imgsrc *s, int i, cd_image *im, char **caption);
void cd_imgsrc_free(cd_imgsrc *s);
#endif
