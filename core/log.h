// Logging to stderr: "[customdiff] LEVEL message". CD_LOG_LEVEL env or cd_log_level sets
// the threshold (0 error, 1 warn, 2 info, 3 debug; default 2).
#ifndef CD_LOG_H
#define CD_LOG_H
extern int cd_log_level;
void cd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define cd_error(...) cd_log(0, __VA_ARGS__)
#define cd_warn(...)  cd_log(1, __VA_ARGS__)
#define cd_info(...)  cd_log(2, __VA_ARGS__)
#define cd_debug(...) cd_log(3, __VA_ARGS__)
#endif
