// The run and failure counters of the simulator's test programs, and EXPECT(cond, fmt, ...): one
// run; a failure prints "FAIL file:line: cond: message" on stderr. Each program ends with
// printf("%d runs, %d failures\n", g_runs, g_fail) (tests/test_cudasim.sh reads that line).
#pragma once
#include <stdio.h>
static int g_fail, g_runs;
#define EXPECT(cond, ...)                                                       \
    do {                                                                        \
        g_runs++;                                                               \
        if (!(cond)) {                                                          \
            g_fail++;                                                           \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                \
        }                                                                       \
    } while (0)
