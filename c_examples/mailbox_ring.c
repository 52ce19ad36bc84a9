/* N processes (default 4; argv[1]) pass a token around a ring of shmpi
 * mailboxes for LAPS laps; each adds its id + 1, and member 0 checks the
 * checksum after every lap. Then the group's collectives, checked. */
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define LAPS 1000

/* The group's collectives, every member in the same order: a barrier, a
 * broadcast from the last member, sums and maxima of every element type's
 * kind, a gather at member 0 — each result checked — and bad arguments,
 * refused before anything is sent (so no member is left waiting). */
static void collectives(shmpi_mailbox *mb, size_t id, size_t n) {
    CHECK(shmpi_mailbox_barrier(mb));
    char word[16] = {0};
    if (id == n - 1) snprintf(word, sizeof word, "from %zu", n - 1);
    CHECK(shmpi_mailbox_broadcast(mb, (int)(n - 1), word, sizeof word));
    char want[16] = {0};
    snprintf(want, sizeof want, "from %zu", n - 1);
    ASSERT(memcmp(word, want, sizeof word) == 0);

    int64_t mine[3] = {(int64_t)id + 1, -(int64_t)id, 7}, sum[3] = {0};
    CHECK(shmpi_mailbox_allreduce(mb, mine, sum, 3, SHMPI_INT64, SHMPI_SUM));
    ASSERT(sum[0] == (int64_t)(n * (n + 1) / 2) && sum[1] == -(int64_t)(n * (n - 1) / 2) && sum[2] == 7 * (int64_t)n);
    double x[2] = {0.5 * (double)id, -1.0 * (double)id};
    CHECK(shmpi_mailbox_allreduce(mb, x, x, 2, SHMPI_DOUBLE, SHMPI_MAX)); /* in place */
    ASSERT(x[0] == 0.5 * (double)(n - 1) && x[1] == 0.0);
    uint8_t bits = (uint8_t)(1u << (id % 8)), any = 0;
    CHECK(shmpi_mailbox_allreduce(mb, &bits, &any, 1, SHMPI_UINT8, SHMPI_BOR));
    ASSERT(any == (uint8_t)((1u << (n < 8 ? n : 8)) - 1));

    uint32_t contribution[2] = {(uint32_t)id, (uint32_t)(id * id)};
    uint32_t all[2 * 64];
    CHECK(shmpi_mailbox_gather(mb, 0, contribution, sizeof contribution, id == 0 ? all : NULL));
    if (id == 0)
        for (size_t r = 0; r < n; r++) ASSERT(all[2 * r] == r && all[2 * r + 1] == r * r);

    EXPECT(SHMPI_E_INVALID, shmpi_mailbox_allreduce(mb, &x, &x, 1, SHMPI_DOUBLE, SHMPI_BXOR));
    EXPECT(SHMPI_E_INVALID, shmpi_mailbox_allreduce(mb, &x, &x, 1, 99, SHMPI_SUM));
    EXPECT(SHMPI_E_INVALID, shmpi_mailbox_allreduce(mb, &x, &x, 1, SHMPI_DOUBLE, 99));
    EXPECT(SHMPI_E_INVALID, shmpi_mailbox_broadcast(mb, (int)n, word, sizeof word));
    EXPECT(SHMPI_E_INVALID, shmpi_mailbox_gather(mb, -1, contribution, sizeof contribution, all));
    EXPECT(SHMPI_E_NULL, shmpi_mailbox_allreduce(mb, NULL, sum, 3, SHMPI_INT64, SHMPI_SUM));
    EXPECT(SHMPI_E_NULL, shmpi_mailbox_barrier(NULL));
    CHECK(shmpi_mailbox_barrier(mb));
}

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
    collectives(mb, id, n);
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
    printf("mailbox_ring: %zu processes, %d laps, checksum right every lap; collectives checked\n", n, LAPS);
    return 0;
}
