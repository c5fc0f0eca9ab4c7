// Inputs of customdiff-preprocess: an instance folder (images + sidecar captions) or a
// candidates list: the retrieve stage's JSONL, CSV/TSV with url and caption columns, or a
// folder in the Custom Diffusion retrieval layout (images.txt, caption.txt, urls.txt).
#ifndef CD_PP_INPUTS_H
#define CD_PP_INPUTS_H
#include <stddef.h>

typedef struct {
    char *url;            // to download (NULL for a local file)
    char *path;           // local file (NULL for a URL)
    char *caption;        // never NULL
    char *origin_url;     // folder layout: the urls.txt entry for a local file (or NULL)
    char *id;             // identity across reruns when not the url: a local file's path
                          // relative to its folder (instance file name, images.txt line)
    double similarity;    // JSONL "similarity" (has_similarity says if present)
    int has_similarity;
} pp_input;

typedef struct { pp_input *v; int n, cap; } pp_inputs;

void pp_inputs_free(pp_inputs *in);
// Image files of dir (jpg, jpeg, png, webp; sorted by name); NAME.txt overrides caption.
// caption may be NULL only if every image has a sidecar.
int pp_inputs_instance(const char *dir, const char *caption, pp_inputs *in);
// Any candidates source; the format is chosen by the path (folder, .jsonl/.json, .csv, .tsv)
// or, for other names, by the first non-blank byte ('{' = JSONL, else CSV/TSV).
int pp_inputs_candidates(const char *path, pp_inputs *in);
// Parsers on memory (fuzz targets). `what` names the source in errors.
int pp_parse_jsonl(const char *text, size_t len, const char *what, pp_inputs *in);
// delim: ',' or '\t', or 0 to pick from the header line. Requires a header with a url
// column (url/URL/image_url) and optionally a caption column (caption/TEXT/text).
int pp_parse_csv(const char *text, size_t len, char delim, const char *what, pp_inputs *in);
// The Custom Diffusion layout: parallel lines of images.txt, caption.txt and urls.txt
// (texts given; urls may be NULL). Image paths are resolved against base_dir.
int pp_parse_cd_lists(const char *images, const char *captions, const char *urls,
                      const char *base_dir, const char *what, pp_inputs *in);
#endif
