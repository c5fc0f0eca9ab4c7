#include "core/cli.h"
#include "core/err.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define CD_MAX_OPTS 128
static unsigned char given_mask[CD_MAX_OPTS];

static const char *kind_meta(cd_opt_kind k) {
    switch (k) {
    case CD_OPT_INT: case CD_OPT_I64: return "N";
    case CD_OPT_FLOAT: return "X";
    case CD_OPT_STR: case CD_OPT_STRLIST: return "S";
    default: return "";
    }
}

void cd_cli_help(const char *prog, const char *summary, const cd_opt *opts) {
    printf("usage: customdiff-%s [options]\n%s\n\noptions:\n", prog, summary ? summary : "");
    for (const cd_opt *o = opts; o->name; o++) {
        char left[96];
        snprintf(left, sizeof left, "--%s%s%s", o->name, o->kind == CD_OPT_FLAG ? "" : " ", kind_meta(o->kind));
        printf("  %-28s %s", left, o->help ? o->help : "");
        if (o->def && o->kind != CD_OPT_FLAG) printf(" (default: %s)", o->def);
        if (o->kind == CD_OPT_FLAG) printf(" (default: %s)", o->def && strcmp(o->def, "1") == 0 ? "on" : "off");
        if (o->kind == CD_OPT_STRLIST) printf(" [repeatable]");
        printf("\n");
    }
    printf("  %-28s %s\n  %-28s %s\n", "--help", "print this help", "--version", "print the version");
}

static int set_value(cd_opt *o, const char *v, int from_default) {
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case CD_OPT_FLAG: {
        if (!v) { *(int *)o->dst = 1; return 0; }
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on")) *(int *)o->dst = 1;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off")) *(int *)o->dst = 0;
        else return cd_err("--%s takes no value or one of 1/0/true/false, got '%s'", o->name, v);
        return 0;
    }
    case CD_OPT_INT: {
        long x = strtol(v, &end, 0);
        if (errno || end == v || *end || x < -2147483647L || x > 2147483647L)
            return cd_err("--%s expects an integer, got '%s'", o->name, v);
        *(int *)o->dst = (int)x;
        return 0;
    }
    case CD_OPT_I64: {
        long long x = strtoll(v, &end, 0);
        if (errno || end == v) return cd_err("--%s expects an integer, got '%s'", o->name, v);
        // allow size suffixes K/M/G (powers of 1024)
        if (*end == 'K' || *end == 'k') { x <<= 10; end++; }
        else if (*end == 'M' || *end == 'm') { x <<= 20; end++; }
        else if (*end == 'G' || *end == 'g') { x <<= 30; end++; }
        if (*end) return cd_err("--%s expects an integer (optionally with K/M/G), got '%s'", o->name, v);
        *(int64_t *)o->dst = x;
        return 0;
    }
    case CD_OPT_FLOAT: {
        double x = strtod(v, &end);
        if (errno || end == v || *end) return cd_err("--%s expects a number, got '%s'", o->name, v);
        *(double *)o->dst = x;
        return 0;
    }
    case CD_OPT_STR:
        *(const char **)o->dst = v;
        return 0;
    case CD_OPT_STRLIST: {
        cd_strlist *l = o->dst;
        if (from_default) { l->n = 0; l->v = NULL; if (!v) return 0; }
        l->v = cd_realloc((void *)l->v, sizeof(char *) * (l->n + 1));
        l->v[l->n++] = v;
        return 0;
    }
    }
    return cd_err("--%s: unknown option kind", o->name);
}

static int set_defaults(cd_opt *opts) {
    for (cd_opt *o = opts; o->name; o++) {
        if (o->kind == CD_OPT_STRLIST) { cd_strlist *l = o->dst; l->n = 0; l->v = NULL; if (o->def) CD_TRY(set_value(o, o->def, 0)); continue; }
        if (o->def) CD_TRY(set_value(o, o->def, 1));
        else switch (o->kind) {
            case CD_OPT_FLAG: case CD_OPT_INT: *(int *)o->dst = 0; break;
            case CD_OPT_I64: *(int64_t *)o->dst = 0; break;
            case CD_OPT_FLOAT: *(double *)o->dst = 0; break;
            default: *(const char **)o->dst = NULL; break;
        }
    }
    return 0;
}

static cd_opt *find_opt(cd_opt *opts, const char *name, size_t len, int *negated) {
    *negated = 0;
    for (cd_opt *o = opts; o->name; o++)
        if (strlen(o->name) == len && !strncmp(o->name, name, len)) return o;
    if (len > 3 && !strncmp(name, "no-", 3))
        for (cd_opt *o = opts; o->name; o++)
            if (o->kind == CD_OPT_FLAG && strlen(o->name) == len - 3 && !strncmp(o->name, name + 3, len - 3)) { *negated = 1; return o; }
    return NULL;
}

// OpenBLAS 0.3.21 (Debian 12) does not recognise some AVX-512/AVX2 CPUs (Zen 4 VMs among
// them) and falls back to its generic "Prescott" kernels, 4-5x slower. It reads
// OPENBLAS_CORETYPE only when it loads, so every stage checks once at start (this is the
// one entry point all of them share) and, on such a CPU, re-executes itself with the core
// named. OPENBLAS_CORETYPE set by the user (or CD_BLAS_NO_FIXUP) disables this.
extern char *openblas_get_corename(void) __attribute__((weak));
static void blas_core_fixup(char **argv) {
    if (getenv("OPENBLAS_CORETYPE") || getenv("CD_BLAS_NO_FIXUP") || !openblas_get_corename) return;
    const char *core = openblas_get_corename();
    if (!core || strcasecmp(core, "prescott") != 0) return;
    __builtin_cpu_init();
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) want = "Haswell";
    if (!want) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    execv("/proc/self/exe", argv);   // on failure go on with the generic kernels
    unsetenv("OPENBLAS_CORETYPE");
}

int cd_cli_parse(const char *prog, const char *summary, cd_opt *opts, int argc, char **argv, int *npos, char ***pos) {
    blas_core_fixup(argv);
    memset(given_mask, 0, sizeof given_mask);
    CD_TRY(set_defaults(opts));
    char **p = cd_calloc((size_t)argc + 1, sizeof(char *));
    int np = 0, only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] != '-' ) {
            if (!only_pos && a[0] == '-' && a[1] && a[1] != '-') { free(p); return cd_err("unknown option '%s' (options are --long; see --help)", a); }
            p[np++] = argv[i];
            continue;
        }
        if (!a[2]) { only_pos = 1; continue; }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { cd_cli_help(prog, summary, opts); free(p); return 1; }
        if (!strcmp(a, "--version")) { printf("customdiff-%s %s\n", prog, CD_VERSION); free(p); return 1; }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int neg;
        cd_opt *o = find_opt(opts, name, len, &neg);
        if (!o) { free(p); return cd_err("unknown option '--%.*s' (see customdiff-%s --help)", (int)len, name, prog); }
        if (o->kind == CD_OPT_STRLIST && (o - opts) < CD_MAX_OPTS && !given_mask[o - opts])
            ((cd_strlist *)o->dst)->n = 0;   // the command line replaces the default list
        if ((o - opts) < CD_MAX_OPTS) given_mask[o - opts] = 1;
        if (o->kind == CD_OPT_FLAG) {
            if (neg) { *(int *)o->dst = 0; continue; }
            if (set_value(o, eq ? eq + 1 : NULL, 0)) { free(p); return -1; }
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc) { free(p); return cd_err("option --%s needs a value", o->name); }
            v = argv[++i];
        }
        if (set_value(o, v, 0)) { free(p); return -1; }
    }
    if (npos) *npos = np;
    if (pos) *pos = p; else free(p);
    return 0;
}

int cd_cli_given(const cd_opt *opts, const char *name) {
    for (const cd_opt *o = opts; o->name; o++)
        if (!strcmp(o->name, name)) return (o - opts) < CD_MAX_OPTS && given_mask[o - opts];
    return 0;
}
