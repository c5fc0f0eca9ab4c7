// The table of golden case handlers that customdiff-verify runs, in this order.
#include <stddef.h>
#include "verify/verify.h"

extern const cd_verify_case cd_verify_case_tokenizer;
extern const cd_verify_case cd_verify_case_text;
extern const cd_verify_case cd_verify_case_vision;
extern const cd_verify_case cd_verify_case_train;
extern const cd_verify_case cd_verify_case_schedulers;
extern const cd_verify_case cd_verify_case_pipeline;
extern const cd_verify_case cd_verify_case_unet;
extern const cd_verify_case cd_verify_case_vae;
extern const cd_verify_case cd_verify_case_blocks;
// ADD NEW CASE HANDLERS HERE: declare `extern const cd_verify_case cd_verify_case_<x>;`
// (defined in verify/case_<x>.c) and list it in the table below (unet, vae, schedulers,
// pipeline, train, ...).

const cd_verify_case *const cd_verify_cases[] = {
    &cd_verify_case_tokenizer,
    &cd_verify_case_text,
    &cd_verify_case_vision,
    &cd_verify_case_train,
    &cd_verify_case_schedulers,
    &cd_verify_case_pipeline,
    &cd_verify_case_unet,
    &cd_verify_case_vae,
    &cd_verify_case_blocks,
    // ADD NEW CASE HANDLERS HERE (before the NULL).
    NULL,
};
