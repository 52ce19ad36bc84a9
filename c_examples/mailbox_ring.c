/* N processes (default 4; argv[1]) pass a token around a ring of shmpi
 * mailboxes for LAPS laps; each adds its id + 1, and member 0 checks the
 * checksum after every lap. */
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define LAPS 1000

static int member(const char *name, size_t id, size_t n) {
    shmpi_mailbox *mb = NULL;
    if (id == 0)
        CHECK(shmpi_mailbox_create(name, 0, n, 0, 1, &mb));
    else
        CHECK(shmpi_mailbox_join(name, id, &mb));
    size_t next = (id + 1) % n, prev = (id + n - 1) % n;
    uint64_t lap_sum = (uint64_t)(n * (n + 1) / 2);
    for (uint64_t lap = 0; lap < LAPS; lap++) {
        uint64_t token[2] = {0, lap};
        size_t len = 0;
        if (id == 0) {
            token[0] = 1;
            CHECK(shmpi_mailbox_send(mb, next, 1, token, sizeof token));
            CHECK(shmpi_mailbox_recv(mb, (int)prev, 1, token, sizeof token, &len, NULL, NULL));
            ASSERT(len == sizeof token && token[0] == lap_sum && token[1] == lap);
        } else {
            CHECK(shmpi_mailbox_recv(mb, (int)prev, 1, token, sizeof token, &len, NULL, NULL));
            ASSERT(len == sizeof token && token[1] == lap);
            token[0] += id + 1;
            CHECK(shmpi_mailbox_send(mb, next, 1, token, sizeof token));
        }
    }
    CHECK(shmpi_mailbox_free(mb));
    return 0;
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? (size_t)atoi(argv[1]) : 4;
    ASSERT(n >= 2 && n <= 64);
    char name[64];
    snprintf(name, sizeof name, "c-ring-%d", (int)getpid());
    pid_t pids[64];
    for (size_t id = 1; id < n; id++) {
        pids[id] = fork();
        ASSERT(pids[id] >= 0);
        if (pids[id] == 0) exit(member(name, id, n));
    }
    member(name, 0, n);
    for (size_t id = 1; id < n; id++) {
        int status = 0;
        ASSERT(waitpid(pids[id], &status, 0) == pids[id]);
        ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    printf("mailbox_ring: %zu processes, %d laps, checksum right every lap\n", n, LAPS);
    return 0;
}
