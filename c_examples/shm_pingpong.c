/* Parent and forked child ping-pong through a shmpi mailbox group, checking
 * every status and every byte: messages of many sizes (some larger than
 * the ring, streamed), a zero-copy loan answered by reference, a message
 * too long for its buffer (kept, then received), a timeout, and NULL
 * arguments refused with a status. */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define ROUNDS 2000
#define BIG (300 * 1000)

static void fill(unsigned char *buf, size_t len, unsigned seed) {
    for (size_t i = 0; i < len; i++) buf[i] = (unsigned char)(i * 31 + seed * 7);
}

static size_t size_of_round(int round) {
    return round % 100 == 99 ? BIG : (size_t)(round * 37) % 5000;
}

static int child(const char *name) {
    shmpi_mailbox *mb = NULL;
    CHECK(shmpi_mailbox_join(name, 1, &mb));
    unsigned char *buf = malloc(BIG);
    ASSERT(buf != NULL);
    for (int round = 0; round < ROUNDS; round++) {
        size_t len = 0;
        int from = -1, tag = -1;
        if (round % 10 == 0) {
            /* Probe first: what comes, from whom, how long — not received. */
            CHECK(shmpi_mailbox_probe(mb, SHMPI_ANY_SOURCE, SHMPI_ANY_TAG, &len, &from, &tag));
            ASSERT(from == 0 && tag == round % 1000 && len == size_of_round(round));
            size_t again = 0;
            CHECK(shmpi_mailbox_probe_timeout(mb, 0, tag, &again, NULL, NULL, 0));
            ASSERT(again == len);
        }
        CHECK(shmpi_mailbox_recv(mb, 0, SHMPI_ANY_TAG, buf, BIG, &len, &from, &tag));
        ASSERT(from == 0 && tag == round % 1000 && len == size_of_round(round));
        CHECK(shmpi_mailbox_send(mb, 0, tag, buf, len)); /* echo */
    }
    /* Zero copy: receive by reference, answer through a loan. */
    const void *data = NULL;
    size_t len = 0;
    shmpi_recvref *ref = NULL;
    CHECK(shmpi_mailbox_recv_ref(mb, 0, 7, &data, &len, NULL, NULL, &ref));
    ASSERT(len == 64);
    void *out = NULL;
    shmpi_loan *loan = NULL;
    /* The mailbox is busy while the reference is held. */
    EXPECT(SHMPI_E_BUSY, shmpi_mailbox_loan(mb, 0, 8, 64, &out, &loan));
    unsigned char copy[64];
    memcpy(copy, data, 64);
    CHECK(shmpi_recvref_free(ref));
    CHECK(shmpi_mailbox_loan(mb, 0, 8, 64, &out, &loan));
    for (int i = 0; i < 64; i++) ((unsigned char *)out)[i] = (unsigned char)(copy[i] ^ 0xFF);
    CHECK(shmpi_loan_commit(loan));
    /* Probing for what nobody sends: not at all (0), or 20 ms. */
    EXPECT(SHMPI_E_WOULD_BLOCK, shmpi_mailbox_probe_timeout(mb, 0, 4321, &len, NULL, NULL, 0));
    EXPECT(SHMPI_E_TIMEOUT, shmpi_mailbox_probe_timeout(mb, 0, 4321, &len, NULL, NULL, 20));
    EXPECT(SHMPI_E_NULL, shmpi_mailbox_probe(NULL, 0, 9, &len, NULL, NULL));
    EXPECT(SHMPI_E_INVALID, shmpi_mailbox_probe(mb, 5, 9, &len, NULL, NULL));
    EXPECT(SHMPI_E_INVALID, shmpi_mailbox_probe(mb, 0, -5, &len, NULL, NULL));
    /* The probe sizes the buffer of the 100-byte message to come. */
    int from = -1, tag = -1;
    CHECK(shmpi_mailbox_probe(mb, 0, 9, &len, &from, &tag));
    ASSERT(len == 100 && from == 0 && tag == 9);
    /* 100 bytes for a 10-byte buffer: reported and kept. */
    char small[10];
    EXPECT(SHMPI_E_TOO_LONG, shmpi_mailbox_recv(mb, 0, 9, small, sizeof small, &len, NULL, NULL));
    ASSERT(len == 100);
    CHECK(shmpi_mailbox_recv(mb, 0, 9, buf, BIG, &len, NULL, NULL));
    ASSERT(len == 100 && buf[99] == 99);
    free(buf);
    CHECK(shmpi_mailbox_free(mb));
    return 0;
}

int main(void) {
    char name[64];
    snprintf(name, sizeof name, "c-pingpong-%d", (int)getpid());
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) exit(child(name));

    shmpi_mailbox *mb = NULL;
    CHECK(shmpi_mailbox_create(name, 0, 2, 1 << 20, 1, &mb));
    size_t id = 9, members = 0;
    CHECK(shmpi_mailbox_rank(mb, &id, &members));
    ASSERT(id == 0 && members == 2);
    unsigned char *out = malloc(BIG), *back = malloc(BIG);
    ASSERT(out != NULL && back != NULL);
    for (int round = 0; round < ROUNDS; round++) {
        size_t len = size_of_round(round), got = 0;
        fill(out, len, (unsigned)round);
        CHECK(shmpi_mailbox_send(mb, 1, round % 1000, out, len));
        CHECK(shmpi_mailbox_recv(mb, 1, round % 1000, back, BIG, &got, NULL, NULL));
        ASSERT(got == len && memcmp(out, back, len) == 0);
    }
    /* Zero copy both ways. */
    void *buf = NULL;
    shmpi_loan *loan = NULL;
    CHECK(shmpi_mailbox_loan(mb, 1, 7, 64, &buf, &loan));
    fill(buf, 64, 5);
    CHECK(shmpi_loan_commit(loan));
    const void *data = NULL;
    size_t len = 0;
    shmpi_recvref *ref = NULL;
    CHECK(shmpi_mailbox_recv_ref(mb, 1, 8, &data, &len, NULL, NULL, &ref));
    fill(out, 64, 5);
    ASSERT(len == 64);
    for (int i = 0; i < 64; i++) ASSERT(((const unsigned char *)data)[i] == (unsigned char)(out[i] ^ 0xFF));
    CHECK(shmpi_recvref_free(ref));
    /* An abandoned loan sends nothing. */
    CHECK(shmpi_mailbox_loan(mb, 1, 11, 16, &buf, &loan));
    CHECK(shmpi_loan_abandon(loan));
    /* Nothing comes with tag 1234 (the child waits for tag 9). */
    EXPECT(SHMPI_E_TIMEOUT, shmpi_mailbox_recv_timeout(mb, 1, 1234, back, BIG, NULL, NULL, NULL, 20));
    for (int i = 0; i < 100; i++) out[i] = (unsigned char)i;
    CHECK(shmpi_mailbox_send(mb, 1, 9, out, 100));

    /* Bad input gets a status, never a crash. */
    EXPECT(SHMPI_E_NULL, shmpi_mailbox_send(NULL, 1, 0, out, 1));
    EXPECT(SHMPI_E_NULL, shmpi_mailbox_send(mb, 1, 0, NULL, 1));
    EXPECT(SHMPI_E_INVALID, shmpi_mailbox_send(mb, 5, 0, out, 1));
    EXPECT(SHMPI_E_INVALID, shmpi_mailbox_recv(mb, -7, 0, back, BIG, NULL, NULL, NULL));
    EXPECT(SHMPI_E_NULL, shmpi_mailbox_create(NULL, 0, 2, 0, 0, &mb));
    shmpi_mailbox *other = NULL;
    EXPECT(SHMPI_E_INVALID, shmpi_mailbox_create("bad/name", 0, 2, 0, 0, &other));
    ASSERT(shmpi_last_error()[0] != '\0');
    /* Caller mistakes are SHMPI_E_INVALID naming the argument, and a failed
     * create leaves nothing in /dev/shm. */
    char fresh[64], path[96];
    snprintf(fresh, sizeof fresh, "shmpi.c-mistake.%d", (int)getpid());
    snprintf(path, sizeof path, "/dev/shm/%s", fresh);
    EXPECT(SHMPI_E_INVALID, shmpi_mailbox_create(fresh, 0, 2, 1000, 0, &other));
    ASSERT(strstr(shmpi_last_error(), "pool") != NULL);
    EXPECT(SHMPI_E_INVALID, shmpi_mailbox_create(fresh, 0, 0, 0, 0, &other));
    ASSERT(strstr(shmpi_last_error(), "members") != NULL);
    EXPECT(SHMPI_E_INVALID, shmpi_mailbox_create(fresh, 5, 2, 0, 0, &other));
    ASSERT(access(path, F_OK) != 0);
    CHECK(shmpi_mailbox_create(fresh, 0, 2, 0, 0, &other));
    shmpi_mailbox *third = NULL;
    EXPECT(SHMPI_E_INVALID, shmpi_mailbox_create(fresh, 1, 3, 0, 0, &third));
    CHECK(shmpi_mailbox_free(other));
    CHECK(shmpi_segment_unlink(fresh));
    ASSERT(strcmp(shmpi_status_str(12345), "unknown shmpi status") == 0);
    /* Results come through out-pointers; a required one that is NULL is
     * SHMPI_E_NULL. The header and the library are the same version. */
    size_t max_loan = 0;
    CHECK(shmpi_mailbox_max_loan(mb, &max_loan));
    ASSERT(max_loan > 0);
    EXPECT(SHMPI_E_NULL, shmpi_mailbox_max_loan(mb, NULL));
    EXPECT(SHMPI_E_NULL, shmpi_mailbox_max_loan(NULL, &max_loan));
    int major = -1, minor = -1, patch = -1;
    CHECK(shmpi_version(&major, &minor, &patch));
    ASSERT(major == SHMPI_VERSION_MAJOR && minor == SHMPI_VERSION_MINOR && patch == SHMPI_VERSION_PATCH);
    ASSERT(SHMPI_VERSION_NUMBER == major * 10000 + minor * 100 + patch);
    EXPECT(SHMPI_E_NULL, shmpi_version(&major, NULL, &patch));
    /* Every handle's free accepts NULL. */
    CHECK(shmpi_recvref_free(NULL));
    CHECK(shmpi_segment_free(NULL));

    int status = 0;
    ASSERT(waitpid(pid, &status, 0) == pid);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(shmpi_mailbox_free(mb));
    CHECK(shmpi_mailbox_free(NULL));
    free(out);
    free(back);
    printf("shm_pingpong: %d round trips (up to %d bytes), loans, references, errors: all checked\n", ROUNDS, BIG);
    return 0;
}
