// customdiff <stage> ...: runs build/bin/customdiff-<stage> from the same folder.
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *stages[] = {"index", "retrieve", "preprocess", "train", "sample", "compress",
                               "merge", "export", "verify", "tiny-model", NULL};

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: customdiff <stage> [options]   (customdiff-<stage> --help for each)\nstages:");
        for (int i = 0; stages[i]; i++) printf(" %s", stages[i]);
        printf("\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) { printf("customdiff %s\n", CD_VERSION); return 0; }
    int known = 0;
    for (int i = 0; stages[i]; i++) known |= !strcmp(stages[i], argv[1]);
    if (!known) { fprintf(stderr, "customdiff: unknown stage '%s' (see customdiff --help)\n", argv[1]); return 2; }
    char self[PATH_MAX], path[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) { perror("customdiff: /proc/self/exe"); return 2; }
    self[n] = 0;
    snprintf(path, sizeof path, "%s/customdiff-%s", dirname(self), argv[1]);
    argv[1] = path;
    execv(path, argv + 1);
    fprintf(stderr, "customdiff: cannot run %s: ", path);
    perror(NULL);
    return 2;
}
