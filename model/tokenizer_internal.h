// Internals of the CLIP tokenizer shared by model/tokenizer*.c (not a public API).
#ifndef CD_TOKENIZER_INTERNAL_H
#define CD_TOKENIZER_INTERNAL_H
#include <stddef.h>
#include "model/tokenizer.h"

#define CD_CLIP_MAX_MERGES (49152 - 256 - 2)

// string -> int hash map; keys are owned copies.
typedef struct { int n, cap; char **keys; int *vals; } cd_smap;
void cd_smap_init(cd_smap *m, int expect);
void cd_smap_put(cd_smap *m, const char *key, int val);
int cd_smap_get(const cd_smap *m, const char *s);
int cd_smap_getn(const cd_smap *m, const char *s, size_t n);
void cd_smap_free(cd_smap *m);

struct cd_tokenizer {
    cd_smap vocab;        // piece -> id
    cd_smap merges;       // "a b" -> rank
    int nmerges;
    char **pieces;        // id -> piece [nbase]
    int nbase;
    char **added;         // added tokens, ids nbase + i
    int nadded;
    int bos, eos, pad;
    char benc[256][4];    // byte -> UTF-8 of its printable stand-in
};

// bytes_to_unicode: byte -> UTF-8 of its printable stand-in; and the bytes in that table's order.
void cd_byte_alphabet(char enc[256][4]);
void cd_byte_order(int order[256]);
// OpenAI layout: vocabulary built from the merges text (modified in place).
int cd_tokenizer_build_openai(cd_tokenizer *t, char *text, const char *what);
// Read bpe_simple_vocab_16e6.txt.gz (zlib) and build the vocabulary from it.
int cd_tokenizer_load_openai_gz(cd_tokenizer *t, const char *path);
#endif
