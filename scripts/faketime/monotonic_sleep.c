/* libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC=1 rejects absolute sleeps on
 * CLOCK_MONOTONIC (EINVAL), which Python's time.sleep uses: send those straight to the
 * kernel, every other clock on to libfaketime. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *request, struct timespec *remain) {
    if (clock == CLOCK_MONOTONIC) {
        long rc = syscall(SYS_clock_nanosleep, clock, flags, request, remain);
        return rc == 0 ? 0 : errno;
    }
    static int (*next)(clockid_t, int, const struct timespec *, struct timespec *);
    if (!next) next = dlsym(RTLD_NEXT, "clock_nanosleep");
    return next(clock, flags, request, remain);
}
