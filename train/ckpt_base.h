// The base model's fingerprint (sha256 of the base tensors the run trains, as in a delta's
// base_fingerprint): written into every checkpoint's state.json and checked on --resume, so
// a checkpoint is never continued on another base model.
#ifndef CD_TRAIN_CKPT_BASE_H
#define CD_TRAIN_CKPT_BASE_H
void cd_ckpt_set_base(const char *fingerprint);
#endif
