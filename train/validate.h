// Sampling inside the trainer, with the weights being trained:
// - validation samples: the prompt (DDIM, 25 steps, guidance 7.5, fixed seed) into
//   RUN/validation/step-NNNNNN.png;
// - class images for prior preservation without a real class set (upstream: the base
//   pipeline's own scheduler, 50 steps, guidance 7.5), written before training starts.
#ifndef CD_TRAIN_VALIDATE_H
#define CD_TRAIN_VALIDATE_H
#include "train/train.h"
#include "model/scheduler.h"
int cd_validate(cd_run *r, const char *prompt, const char *run_dir);
// One image [N x N] for prompt with the given scheduler/steps/guidance from noise keyed by seed.
int cd_sample_one(cd_run *r, const char *prompt, cd_sched_kind kind, int steps, float guidance,
                  uint64_t seed, uint64_t stream, int N, cd_image *out);
// For every concept whose class folder holds fewer than --num-class-images images (and no
// --real-prior): generate the missing ones into the folder as JPEG.
int cd_generate_class_images(cd_run *r);
#endif
