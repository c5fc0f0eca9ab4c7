// CLIP's byte-level BPE tokenizer (transformers' CLIPTokenizer, slow, with ftfy absent:
// whitespace collapsed, lower-cased), read from a folder holding vocab.json + merges.txt
// (or bpe_simple_vocab_16e6.txt.gz, OpenAI's layout), special_tokens_map.json for the
// bos/eos/pad tokens, and added_tokens.json when present.
//
// Encoding of a text, as CLIPTokenizer(text, padding="max_length", max_length=77,
// truncation=True) does it:
//   1. added tokens (e.g. "<new1>") and the special tokens are split out of the raw text
//      first, so each is exactly one id (added ids follow the vocabulary: 49408, 49409, ...);
//   2. every other chunk: whitespace collapsed to single spaces, trimmed, lower-cased, then
//      CLIP's pattern <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|
//      [^\s\p{L}\p{N}]+ splits it into words; each word's UTF-8 bytes are mapped to the
//      printable byte alphabet, "</w>" marks the word end, and BPE merges apply by rank;
//   3. [bos] + ids (truncated to max_len - 2) + [eos] + pad up to max_len.
#ifndef CD_TOKENIZER_H
#define CD_TOKENIZER_H
#include <stdint.h>

#define CD_CLIP_MAX_LEN 77

typedef struct cd_tokenizer cd_tokenizer;

// Load from a folder (vocab.json + merges.txt, or bpe_simple_vocab_16e6.txt.gz).
// Errors name the folder and the file.
int cd_tokenizer_load(cd_tokenizer **out, const char *dir);
void cd_tokenizer_free(cd_tokenizer *t);

// Vocabulary size including added tokens (49408 + number added for CLIP).
int cd_tokenizer_size(const cd_tokenizer *t);
// Size of the base vocabulary (vocab.json), without added tokens.
int cd_tokenizer_base_size(const cd_tokenizer *t);
int cd_tokenizer_bos(const cd_tokenizer *t);   // 49406 for CLIP
int cd_tokenizer_eos(const cd_tokenizer *t);   // 49407
int cd_tokenizer_pad(const cd_tokenizer *t);   // 49407 (SD1) or 0 ("!", SD2)

// Add a whole token (split out of text before BPE). *id gets its id: the next free id,
// or the existing id when `tok` was already added. Fails when `tok` is empty or is
// already a piece of the base vocabulary (as the Custom Diffusion trainers refuse it).
int cd_tokenizer_add_token(cd_tokenizer *t, const char *tok, int *id);
// Number of added tokens and the i-th one (its id is base_size + i).
int cd_tokenizer_num_added(const cd_tokenizer *t);
const char *cd_tokenizer_added(const cd_tokenizer *t, int i);

// Raw vocabulary piece -> id, no BPE and no "</w>" added ("ktn" -> 42170): what the
// diffusers trainers' initializer lookup does. Also finds added tokens. -1 when absent.
int cd_tokenizer_piece_id(const cd_tokenizer *t, const char *piece);
// id -> piece as stored in the vocabulary (byte-alphabet form, with "</w>"); NULL if out of range.
const char *cd_tokenizer_piece(const cd_tokenizer *t, int id);

// Text -> ids[max_len]: bos, BPE ids (truncated to max_len-2), eos, pad. *n_used (may be
// NULL) gets the count before padding (bos..eos inclusive). Never fails on any UTF-8 input
// (invalid bytes are passed through as bytes); fails only if max_len < 2.
int cd_tokenizer_encode(const cd_tokenizer *t, const char *text, int max_len, int32_t *ids,
                        int *n_used);
// Text -> BPE ids only (no bos/eos, no truncation) in a fresh heap array.
int cd_tokenizer_tokenize(const cd_tokenizer *t, const char *text, int32_t **ids, int *n);
// ids -> text (byte alphabet decoded, "</w>" -> space, specials and pad dropped; added
// tokens written as themselves). Heap string.
char *cd_tokenizer_decode(const cd_tokenizer *t, const int32_t *ids, int n);
#endif
