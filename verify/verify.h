// customdiff-verify: replays golden case files (golden/README.md) against a model.
// Each case file is handled by one cd_verify_case (a table in verify/cases.c); a handler
// compares tensors with cd_verify_check(), which prints one line per tensor:
//   <case> <tensor> max_rel_err <e> tol <t> PASS|FAIL
// and counts failures. A case whose file is absent is skipped (and said so).
#ifndef CD_VERIFY_H
#define CD_VERIFY_H
#include <stdint.h>
#include "core/safetensors.h"
#include "model/clip.h"
#include "model/tokenizer.h"

typedef struct {
    const char *model;        // --model: a diffusers pipeline folder
    const char *clip;         // --clip: a transformers CLIPModel folder
    const char *cases;        // the case folder (positional)
    const char *single_file;  // --single-file (may be NULL)
    const char *device;       // --device: "cpu" or "cuda"
    int gpu;                  // networks run on the GPU (verify/device.c)
    int prec;                 // CD_PREC_* (model/precision.h): tolerances widen below fp32
    int npass, nfail, nskip;
    // Lazily loaded, shared between handlers (NULL until asked for; freed at exit).
    cd_clip *text_encoder;    // MODEL/text_encoder
    cd_clip *clip_model;      // CLIP
} cd_verify_ctx;

typedef struct {
    const char *name;         // short name printed first on every line, e.g. "text_encoder"
    const char *file;         // the case file in the case folder; absent -> case skipped
    // Run the case: compare and report through cd_verify_check/cd_verify_result. Return -1
    // only when the case could not run (an error in cd_errmsg: counted as one FAIL).
    int (*run)(cd_verify_ctx *v, const char *path);
    int device;               // 1: runs networks through verify/device.h (--device applies);
                              // 0: host-only math (tokenizer, schedulers), always fp32 tolerances
} cd_verify_case;

// The registered handlers, NULL-terminated (verify/cases.c).
extern const cd_verify_case *const cd_verify_cases[];

// max|a-b| / max|b| (inf on NaN/Inf).
double cd_verify_relerr(const float *a, const float *b, int64_t n);
// Compare, print the line, count it. Returns 1 when it passed.
int cd_verify_check(cd_verify_ctx *v, const char *name, const char *tensor, const float *got,
                    const float *ref, int64_t n, double tol);
// Report a result computed by the handler (err against tol with its own measure, e.g.
// "cosine" or "mismatches"); pass = err <= tol.
int cd_verify_result(cd_verify_ctx *v, const char *name, const char *tensor, const char *measure,
                     double err, double tol);
// Report a failure that has no number (message printed).
void cd_verify_fail(cd_verify_ctx *v, const char *name, const char *what, const char *why);

// Shared loaders (cached in v): MODEL/text_encoder and the --clip folder.
int cd_verify_text_encoder(cd_verify_ctx *v, cd_clip **out);
int cd_verify_clip(cd_verify_ctx *v, cd_clip **out);
// Run a case once on --model and once on --single-file (each given), opening the case
// file once: one(v, f, "NAME" or "NAME(single_file)", model path, MODEL/tokenizer).
int cd_verify_each_model(cd_verify_ctx *v, const char *path, const char *name,
                         int (*one)(cd_verify_ctx *v, const cd_st_file *f, const char *name,
                                    const char *model, const char *tok));
// Golden tolerances (golden/README.md).
#define CD_TOL_LAYER 1e-5
#define CD_TOL_MODEL 1e-4
#define CD_TOL_GRAD 1e-3
#endif
