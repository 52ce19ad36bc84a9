/* Every shmpi call in the examples is checked: on failure, print where,
 * the status's name and the library's message, and exit non-zero. */
#ifndef SHMPI_EXAMPLES_CHECK_H
#define SHMPI_EXAMPLES_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include <shmpi.h>

#define CHECK(call)                                                          \
    do {                                                                     \
        int check_rc_ = (call);                                              \
        if (check_rc_ != SHMPI_OK) {                                         \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__,      \
                    #call, shmpi_status_str(check_rc_), shmpi_last_error());  \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* A call that must fail with `expected`. */
#define EXPECT(expected, call)                                               \
    do {                                                                     \
        int expect_rc_ = (call);                                             \
        if (expect_rc_ != (expected)) {                                      \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s\n",          \
                    __FILE__, __LINE__, #call, shmpi_status_str(expect_rc_), \
                    shmpi_status_str(expected));                             \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#define ASSERT(cond)                                                         \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,       \
                    __LINE__, #cond);                                        \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#endif
