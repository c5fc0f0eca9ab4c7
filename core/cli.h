// Command-line options from one table per program; --help is generated from it.
//   static int steps; static const char *out;
//   cd_opt opts[] = {
//       {"steps", CD_OPT_INT, &steps, "50", "number of denoising steps"},
//       {"out",   CD_OPT_STR, &out,   "samples", "output folder"},
//       {0}};
//   int npos; char **pos;
//   cd_cli_parse("sample", "text to image with deltas", opts, argc, argv, &npos, &pos);
// Options are --name VALUE or --name=VALUE; flags take no value (--no-name clears one).
// Defaults are strings parsed like a command-line value (NULL: no default, 0 / NULL).
#ifndef CD_CLI_H
#define CD_CLI_H
#include <stdint.h>

typedef enum {
    CD_OPT_FLAG,    // int: 0/1
    CD_OPT_INT,     // int
    CD_OPT_I64,     // int64_t
    CD_OPT_FLOAT,   // double
    CD_OPT_STR,     // const char *
    CD_OPT_STRLIST, // cd_strlist: repeatable
} cd_opt_kind;

typedef struct { int n; const char **v; } cd_strlist;

typedef struct {
    const char *name;     // long name without the dashes
    cd_opt_kind kind;
    void *dst;
    const char *def;      // default as text, or NULL
    const char *help;
} cd_opt;

// Parses argv. Returns 0 when the program should go on, 1 when --help or --version was
// printed (main exits 0), -1 on a bad command line (message in cd_errmsg; main exits 2).
// Positional arguments are returned in *pos (argv's own strings; may be NULL).
int cd_cli_parse(const char *prog, const char *summary, cd_opt *opts, int argc, char **argv,
                 int *npos, char ***pos);
// Print the generated help to stdout.
void cd_cli_help(const char *prog, const char *summary, const cd_opt *opts);
// Was the option given on the command line (not only defaulted)?
int cd_cli_given(const cd_opt *opts, const char *name);
#endif
