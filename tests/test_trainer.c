// Golden training steps (../shared/golden/SET/cases/train.safetensors): the verify stage's
// train case (verify/case_train.c) replayed for tiny-sd (epsilon) and tiny-sd2 (fp16 on
// disk, v_prediction): latents, losses, every gradient and every tensor after each of the
// three AdamW steps within the golden tolerances. Also the trainer's input errors.
#include "tests/testlib.h"
#include "verify/case_train.c"
#include "verify/device.c"
#include "tests/verify_shim.h"
#include <math.h>

static void golden_set(const char *set) {
    if (!tl_golden()) return;
    char *model = tl_golden_path(set), *m = cd_fmt("%s/model", model), *c = cd_fmt("%s/cases/train.safetensors", model);
    cd_verify_ctx v = {.model = m};
    int rc = cd_verify_case_train.run(&v, c);
    if (rc) tl_fail(__FILE__, __LINE__, "train case %s: %s", set, cd_errmsg());
    else if (v.nfail == 0 && v.npass < 3 * 6)
        tl_fail(__FILE__, __LINE__, "train case %s: only %d comparisons ran", set, v.npass);
    free(model); free(m); free(c);
}

TEST(golden_train_tiny_sd) { golden_set("tiny-sd"); }
TEST(golden_train_tiny_sd2_vpred) { golden_set("tiny-sd2"); }

// Modifier already in the vocabulary, an initializer that is not one piece, too few initializers.
TEST(token_setup_errors) {
    if (!tl_golden()) return;
    char *model = tl_golden_path("tiny-sd/model");
    cd_pipeline p;
    CHECK_OK(cd_pipeline_load(&p, model, NULL, NULL, CD_LOAD_UNET | CD_LOAD_TEXT | CD_LOAD_TOKENIZER));
    free(model);
    cd_trainer tr;
    CHECK_ERR(cd_trainer_init(&tr, &p, "cat</w>", "ktn", NULL), "already in the tokenizer's vocabulary");
    cd_trainer_free(&tr);
    CHECK_ERR(cd_trainer_init(&tr, &p, "<new7>", "ktnxyz", NULL), "not a single piece");
    cd_trainer_free(&tr);
    CHECK_ERR(cd_trainer_init(&tr, &p, "<new8>+<new9>", "ktn", NULL), "initializer");
    cd_trainer_free(&tr);
    cd_pipeline_free(&p);
}

int main(void) {
    RUN(golden_train_tiny_sd);
    RUN(golden_train_tiny_sd2_vpred);
    RUN(token_setup_errors);
    return tl_done();
}
