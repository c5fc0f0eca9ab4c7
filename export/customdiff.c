// diffusers' Custom Diffusion layout (what train_custom_diffusion.py writes with safetensors).
#include "export/export.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/safetensors.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *cd_export_cd_name(const char *name) {
    static const char *const from[] = {"to_k.", "to_v.", "to_q.", "to_out.0."};
    static const char *const to[] = {"to_k_custom_diffusion.", "to_v_custom_diffusion.",
                                     "to_q_custom_diffusion.", "to_out_custom_diffusion.0."};
    const char *a = strstr(name, ".attn2.");
    if (!a) return NULL;
    const char *rest = a + strlen(".attn2.");
    for (int i = 0; i < 4; i++)
        if (strncmp(rest, from[i], strlen(from[i])) == 0)
            return cd_fmt("%.*s.attn2.processor.%s%s", (int)(a - name), name, to[i], rest + strlen(from[i]));
    return NULL;
}

int cd_export_custom_diffusion(const cd_delta *d, const char *out) {
    CD_TRY(cd_mkdirs(out));
    cd_st_writer *w = cd_st_writer_new();
    int rc = 0;
    for (int i = 0; i < d->n && rc == 0; i++) {
        const cd_delta_tensor *t = &d->t[i];
        char *nm = cd_export_cd_name(t->name);
        if (!nm) rc = cd_err("%s: tensor '%s' is not a cross-attention projection: the Custom Diffusion "
                             "layout cannot hold it", d->path ? d->path : "delta", t->name);
        else if (!t->data) rc = cd_err("%s: tensor '%s' is low-rank and was not reconstructed", d->path, t->name);
        else cd_st_writer_add(w, nm, CD_F32, t->ndim, t->shape, t->data);
        free(nm);
    }
    cd_st_writer_meta(w, "format", "pt");
    char *wp = cd_path_join(out, "pytorch_custom_diffusion_weights.safetensors");
    if (rc == 0) rc = cd_st_writer_save(w, wp);
    cd_st_writer_free(w);
    free(wp);
    for (int i = 0; i < d->ntok && rc == 0; i++) {
        cd_st_writer *tw = cd_st_writer_new();
        int64_t sh[1] = {d->tok_dim};
        cd_st_writer_add(tw, d->tokens[i].tok, CD_F32, 1, sh, d->tokens[i].row);
        cd_st_writer_meta(tw, "format", "pt");
        char *fn = cd_fmt("%s.safetensors", d->tokens[i].tok);
        char *tp = cd_path_join(out, fn);
        rc = cd_st_writer_save(tw, tp);
        cd_st_writer_free(tw);
        free(fn);
        free(tp);
    }
    return rc;
}
