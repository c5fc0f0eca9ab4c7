// customdiff-merge internals (merge/*.c only).
#ifndef CD_MERGE_STAGE_H
#define CD_MERGE_STAGE_H
extern const char *const merge_default_captions[];
extern const int merge_default_ncaptions;
#endif
