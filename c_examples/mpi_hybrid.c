/* An ordinary C MPI program: it initialises MPI itself (MPI_THREAD_MULTIPLE),
 * hands MPI_COMM_WORLD to shmpi as a Fortran handle, passes messages around
 * a ring through the hybrid world (shared-memory mailboxes on a node, MPI
 * between nodes), blocking and with requests, runs the world's
 * collectives, and builds a histogram in a distributed array with both
 * backends, checked against a local computation, then arrays of 4- and
 * 12-byte elements. */
#include <mpi.h>
#include <string.h>

#include "check.h"

#define BINS 16
#define DRAWS 2000

static size_t draw(int rank, int k) { return (size_t)((rank * 7919 + k * 104729) % BINS); }

static void histogram(shmpi_hybrid *world, int backend, int me, int n) {
    shmpi_dsm *hist = NULL;
    CHECK(shmpi_dsm_create(world, BINS, sizeof(uint64_t), backend, &hist));
    size_t len = 0;
    CHECK(shmpi_dsm_len(hist, &len));
    ASSERT(len == BINS);
    EXPECT(SHMPI_E_NULL, shmpi_dsm_len(hist, NULL));
    const uint64_t one = 1;
    for (int k = 0; k < DRAWS; k++) CHECK(shmpi_dsm_fetch_add(hist, draw(me, k), &one, NULL));
    CHECK(shmpi_dsm_barrier(hist));
    uint64_t expected[BINS] = {0};
    for (int r = 0; r < n; r++)
        for (int k = 0; k < DRAWS; k++) expected[draw(r, k)]++;
    for (size_t b = 0; b < BINS; b++) {
        uint64_t v = 0;
        CHECK(shmpi_dsm_get(hist, b, &v));
        ASSERT(v == expected[b]);
    }
    uint64_t v = 0;
    EXPECT(SHMPI_E_OUT_OF_BOUNDS, shmpi_dsm_get(hist, BINS, &v));
    CHECK(shmpi_dsm_barrier(hist));
    /* Ranges (one request per owner) and compare-exchange: exactly one
     * rank replaces bin 0's count. */
    uint64_t got[BINS];
    CHECK(shmpi_dsm_get_range(hist, 0, got, BINS));
    for (size_t b = 0; b < BINS; b++) ASSERT(got[b] == expected[b]);
    CHECK(shmpi_dsm_barrier(hist));
    uint64_t previous = 0, mark = 1000 + (uint64_t)me;
    int swapped = 0, wins = 0;
    CHECK(shmpi_dsm_compare_exchange(hist, 0, &expected[0], &mark, &previous, &swapped));
    ASSERT(swapped ? previous == expected[0] : previous >= 1000);
    /* The owner protocol serves only inside calls on the array: meet in
     * the array's barrier before leaving it for the world's allreduce. */
    CHECK(shmpi_dsm_barrier(hist));
    CHECK(shmpi_hybrid_allreduce(world, &swapped, &wins, 1, SHMPI_INT32, SHMPI_SUM));
    ASSERT(wins == 1);
    if (me == n - 1) {
        uint64_t tail[4] = {7, 8, 9, 10};
        CHECK(shmpi_dsm_put_range(hist, BINS - 4, tail, 4));
    }
    CHECK(shmpi_dsm_barrier(hist));
    CHECK(shmpi_dsm_get_range(hist, BINS - 4, got, 4));
    ASSERT(got[0] == 7 && got[1] == 8 && got[2] == 9 && got[3] == 10);
    EXPECT(SHMPI_E_OUT_OF_BOUNDS, shmpi_dsm_get_range(hist, BINS - 2, got, 4));
    EXPECT(SHMPI_E_OUT_OF_BOUNDS, shmpi_dsm_put_range(hist, BINS, got, 1));
    EXPECT(SHMPI_E_NULL, shmpi_dsm_get_range(hist, 0, NULL, 4));
    EXPECT(SHMPI_E_OUT_OF_BOUNDS, shmpi_dsm_compare_exchange(hist, BINS, &v, &v, NULL, NULL));
    EXPECT(SHMPI_E_NULL, shmpi_dsm_fetch_add(hist, 0, NULL, NULL));
    CHECK(shmpi_dsm_barrier(hist));
    CHECK(shmpi_dsm_put(hist, (size_t)me, &mark));
    CHECK(shmpi_dsm_barrier(hist));
    CHECK(shmpi_dsm_get(hist, (size_t)((me + 1) % n), &v));
    ASSERT(v == 1000 + (uint64_t)((me + 1) % n));
    CHECK(shmpi_dsm_barrier(hist));
    CHECK(shmpi_dsm_free(hist));
}

/* Elements of any size: 4-byte counters (fetch-add, compare-exchange),
 * 12-byte points (whole elements, ranges across owners through a
 * misaligned buffer), and what each size refuses. */
struct point { float x, y, z; };

static void element_sizes(shmpi_hybrid *world, int backend, int me, int n) {
    shmpi_dsm *counts = NULL;
    CHECK(shmpi_dsm_create(world, 3, sizeof(int32_t), backend, &counts));
    size_t elem = 0;
    CHECK(shmpi_dsm_elem_size(counts, &elem));
    ASSERT(elem == sizeof(int32_t));
    const int32_t down = -1;
    for (int k = 0; k < 100; k++) CHECK(shmpi_dsm_fetch_add(counts, 1, &down, NULL));
    int32_t seen = 0, next = 0, previous = 0;
    int swapped = 0;
    CHECK(shmpi_dsm_get(counts, 2, &seen));
    do {
        next = seen + 5;
        CHECK(shmpi_dsm_compare_exchange(counts, 2, &seen, &next, &previous, &swapped));
        seen = previous;
    } while (!swapped);
    CHECK(shmpi_dsm_barrier(counts));
    int32_t got[3];
    CHECK(shmpi_dsm_get_range(counts, 0, got, 3));
    ASSERT(got[0] == 0 && got[1] == -100 * n && got[2] == 5 * n);
    CHECK(shmpi_dsm_barrier(counts));
    CHECK(shmpi_dsm_free(counts));

    shmpi_dsm *points = NULL;
    const size_t len = 7;
    CHECK(shmpi_dsm_create(world, len, sizeof(struct point), backend, &points));
    for (size_t i = (size_t)me; i < len; i += (size_t)n) {
        struct point p = {(float)i, 2.0f * (float)i, -1.0f};
        CHECK(shmpi_dsm_put(points, i, &p));
    }
    CHECK(shmpi_dsm_barrier(points));
    unsigned char raw[7 * sizeof(struct point) + 1];
    CHECK(shmpi_dsm_get_range(points, 0, raw + 1, len)); /* misaligned on purpose */
    for (size_t i = 0; i < len; i++) {
        struct point p;
        memcpy(&p, raw + 1 + i * sizeof p, sizeof p);
        ASSERT(p.x == (float)i && p.y == 2.0f * (float)i && p.z == -1.0f);
    }
    struct point p = {0};
    EXPECT(SHMPI_E_INVALID, shmpi_dsm_fetch_add(points, 0, &p, &p)); /* not an integer */
    EXPECT(SHMPI_E_INVALID, shmpi_dsm_compare_exchange(points, 0, &p, &p, NULL, NULL));
    EXPECT(SHMPI_E_OUT_OF_BOUNDS, shmpi_dsm_get(points, len, &p));
    EXPECT(SHMPI_E_INVALID, shmpi_dsm_get_range(points, 0, raw, SIZE_MAX));
    EXPECT(SHMPI_E_NULL, shmpi_dsm_put(points, 0, NULL));
    EXPECT(SHMPI_E_NULL, shmpi_dsm_elem_size(points, NULL));
    CHECK(shmpi_dsm_barrier(points));
    CHECK(shmpi_dsm_free(points));

    shmpi_dsm *none = NULL;
    EXPECT(SHMPI_E_INVALID, shmpi_dsm_create(world, 4, 0, backend, &none));
    ASSERT(none == NULL);
}

/* Non-blocking sends and receives: requests are matched in the order they
 * were posted (whichever is tested first) and before a later blocking
 * receive; a message too long for a request's buffer stays until the
 * request is freed; a large send over MPI overlaps with polling. */
static void nonblocking(shmpi_hybrid *world, int me, int n) {
    int left = (me + n - 1) % n, right = (me + 1) % n;
    int32_t first = 0, second = 0, any = 0;
    shmpi_request *r_first = NULL, *r_second = NULL, *r_any = NULL;
    CHECK(shmpi_hybrid_irecv(world, left, 30, &first, sizeof first, &r_first));
    CHECK(shmpi_hybrid_irecv(world, left, 30, &second, sizeof second, &r_second));
    CHECK(shmpi_hybrid_irecv(world, SHMPI_ANY_SOURCE, 31, &any, sizeof any, &r_any));
    const int32_t values[4] = {1, 2, 3, 4};
    shmpi_request *sends[4] = {NULL};
    for (int k = 0; k < 4; k++)
        CHECK(shmpi_hybrid_isend(world, right, 30 + k / 2, &values[k], sizeof values[k], &sends[k]));
    int done = 0, from = -1, tag = -1;
    size_t len = 0;
    while (!done) CHECK(shmpi_hybrid_test(world, r_second, &done, &len, &from, &tag));
    ASSERT(second == 2 && len == sizeof second && from == left && tag == 30);
    int32_t blocking = 0;
    CHECK(shmpi_hybrid_recv(world, left, 31, &blocking, sizeof blocking, &len, NULL, NULL));
    ASSERT(blocking == 4); /* the open ANY_SOURCE request took the 3 */
    CHECK(shmpi_hybrid_wait(world, r_any, NULL, &from, NULL));
    ASSERT(any == 3 && from == left);
    CHECK(shmpi_hybrid_wait(world, r_first, NULL, NULL, NULL));
    ASSERT(first == 1);
    CHECK(shmpi_hybrid_wait(world, r_first, &len, NULL, NULL)); /* again: at once */
    ASSERT(len == sizeof first);
    for (int k = 0; k < 4; k++) {
        CHECK(shmpi_hybrid_wait(world, sends[k], NULL, NULL, NULL));
        CHECK(shmpi_request_free(sends[k]));
    }
    CHECK(shmpi_request_free(r_first));
    CHECK(shmpi_request_free(r_second));
    CHECK(shmpi_request_free(r_any));

    /* Too long for the request's buffer: kept; freeing the request hands
     * the message to the next receive. */
    int16_t small = 0;
    double big[8] = {0}, eight[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    shmpi_request *r_small = NULL, *r_send = NULL;
    CHECK(shmpi_hybrid_irecv(world, left, 32, &small, sizeof small, &r_small));
    CHECK(shmpi_hybrid_isend(world, right, 32, eight, sizeof eight, &r_send));
    len = 0;
    EXPECT(SHMPI_E_TOO_LONG, shmpi_hybrid_wait(world, r_small, &len, NULL, NULL));
    ASSERT(len == sizeof eight);
    CHECK(shmpi_request_free(r_small));
    CHECK(shmpi_hybrid_recv(world, left, 32, big, sizeof big, &len, NULL, NULL));
    ASSERT(len == sizeof big && big[7] == 8.0);
    CHECK(shmpi_hybrid_wait(world, r_send, NULL, NULL, NULL));
    CHECK(shmpi_request_free(r_send));

    /* A large message over whichever path, polled while "computing". */
    enum { LARGE = 300000 };
    unsigned char *out = malloc(LARGE), *in = malloc(LARGE);
    ASSERT(out && in);
    memset(out, me, LARGE);
    shmpi_request *r_in = NULL, *r_out = NULL;
    CHECK(shmpi_hybrid_irecv(world, left, 33, in, LARGE, &r_in));
    CHECK(shmpi_hybrid_isend(world, right, 33, out, LARGE, &r_out));
    int in_done = 0, out_done = 0;
    while (!in_done || !out_done) {
        if (!in_done) CHECK(shmpi_hybrid_test(world, r_in, &in_done, NULL, NULL, NULL));
        if (!out_done) CHECK(shmpi_hybrid_test(world, r_out, &out_done, NULL, NULL, NULL));
    }
    ASSERT(in[0] == (unsigned char)left && in[LARGE - 1] == (unsigned char)left);
    CHECK(shmpi_request_free(r_in));
    CHECK(shmpi_request_free(r_out));
    free(out);
    free(in);

    /* Bad arguments. */
    shmpi_request *bad = NULL;
    EXPECT(SHMPI_E_INVALID, shmpi_hybrid_irecv(world, n, 1, &small, sizeof small, &bad));
    EXPECT(SHMPI_E_INVALID, shmpi_hybrid_irecv(world, left, -7, &small, sizeof small, &bad));
    EXPECT(SHMPI_E_NULL, shmpi_hybrid_irecv(world, left, 1, NULL, 4, &bad));
    EXPECT(SHMPI_E_NULL, shmpi_hybrid_irecv(world, left, 1, &small, sizeof small, NULL));
    EXPECT(SHMPI_E_INVALID, shmpi_hybrid_isend(world, -1, 1, &small, sizeof small, &bad));
    EXPECT(SHMPI_E_NULL, shmpi_hybrid_test(world, NULL, &done, NULL, NULL, NULL));
    EXPECT(SHMPI_E_NULL, shmpi_hybrid_wait(NULL, bad, NULL, NULL, NULL));
    ASSERT(bad == NULL);
    CHECK(shmpi_request_free(NULL));
    /* An open request with nothing to match: test says not done; freeing
     * it withdraws it. */
    CHECK(shmpi_hybrid_irecv(world, left, 34, &small, sizeof small, &bad));
    CHECK(shmpi_hybrid_test(world, bad, &done, NULL, NULL, NULL));
    ASSERT(done == 0);
    CHECK(shmpi_request_free(bad));
    CHECK(shmpi_hybrid_barrier(world));
}

/* The world's collectives (hierarchical: the node, then the node leaders
 * over MPI), every rank in the same order, each result checked; bad
 * arguments are refused before anything is sent. */
static void collectives(shmpi_hybrid *world, int me, int n) {
    double grid[4] = {0};
    if (me == 0)
        for (int i = 0; i < 4; i++) grid[i] = 1.5 * i;
    CHECK(shmpi_hybrid_broadcast(world, 0, grid, sizeof grid));
    for (int i = 0; i < 4; i++) ASSERT(grid[i] == 1.5 * i);

    int32_t mine[2] = {me + 1, -me}, sum[2] = {0, 0};
    CHECK(shmpi_hybrid_allreduce(world, mine, sum, 2, SHMPI_INT32, SHMPI_SUM));
    ASSERT(sum[0] == n * (n + 1) / 2 && sum[1] == -(n * (n - 1) / 2));
    float lowest = (float)(10 - me);
    CHECK(shmpi_hybrid_allreduce(world, &lowest, &lowest, 1, SHMPI_FLOAT, SHMPI_MIN));
    ASSERT(lowest == (float)(10 - (n - 1)));
    uint64_t product = 2;
    CHECK(shmpi_hybrid_allreduce(world, &product, &product, 1, SHMPI_UINT64, SHMPI_PROD));
    ASSERT(product == (uint64_t)1 << n);

    int16_t pair[2] = {(int16_t)me, (int16_t)(100 + me)};
    int16_t all[2 * 64];
    ASSERT(n <= 64);
    int root = n - 1;
    CHECK(shmpi_hybrid_gather(world, root, pair, sizeof pair, me == root ? all : NULL));
    if (me == root)
        for (int r = 0; r < n; r++) ASSERT(all[2 * r] == r && all[2 * r + 1] == 100 + r);

    EXPECT(SHMPI_E_INVALID, shmpi_hybrid_allreduce(world, &lowest, &lowest, 1, SHMPI_FLOAT, SHMPI_BAND));
    EXPECT(SHMPI_E_INVALID, shmpi_hybrid_allreduce(world, mine, sum, 2, 0, SHMPI_SUM));
    EXPECT(SHMPI_E_INVALID, shmpi_hybrid_broadcast(world, -1, grid, sizeof grid));
    EXPECT(SHMPI_E_INVALID, shmpi_hybrid_gather(world, n, pair, sizeof pair, all));
    EXPECT(SHMPI_E_NULL, shmpi_hybrid_broadcast(NULL, 0, grid, sizeof grid));
    CHECK(shmpi_hybrid_barrier(world));
}

int main(int argc, char **argv) {
    int provided = 0, me = 0, n = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    ASSERT(provided == MPI_THREAD_MULTIPLE);
    shmpi_hybrid *world = NULL;
    CHECK(shmpi_hybrid_create((int)MPI_Comm_c2f(MPI_COMM_WORLD), &world));
    CHECK(shmpi_hybrid_rank(world, &me, &n));
    int mpi_rank = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
    ASSERT(mpi_rank == me);

    /* A ring: every rank sends to the right, receives from the left. */
    int right = (me + 1) % n, left = (me + n - 1) % n;
    char out[100], in[100];
    for (int lap = 0; lap < 100; lap++) {
        snprintf(out, sizeof out, "lap %d from %d", lap, me);
        CHECK(shmpi_hybrid_send(world, right, 3, out, strlen(out) + 1));
        size_t len = 0;
        int from = -1, tag = -1;
        CHECK(shmpi_hybrid_recv(world, left, 3, in, sizeof in, &len, &from, &tag));
        char want[100];
        snprintf(want, sizeof want, "lap %d from %d", lap, left);
        ASSERT(from == left && tag == 3 && strcmp(in, want) == 0);
    }
    /* Too long for the buffer: reported, kept, then received — two such
     * messages at once, neither lost, each delivered in order. */
    memset(out, 'a', sizeof out);
    CHECK(shmpi_hybrid_send(world, right, 4, out, sizeof out));
    memset(out, 'b', sizeof out);
    CHECK(shmpi_hybrid_send(world, right, 5, out, sizeof out - 1));
    char tiny[4];
    size_t len = 0;
    EXPECT(SHMPI_E_TOO_LONG, shmpi_hybrid_recv(world, SHMPI_ANY_SOURCE, 5, tiny, sizeof tiny, &len, NULL, NULL));
    ASSERT(len == sizeof out - 1);
    EXPECT(SHMPI_E_TOO_LONG, shmpi_hybrid_recv(world, SHMPI_ANY_SOURCE, 4, tiny, sizeof tiny, &len, NULL, NULL));
    ASSERT(len == sizeof out);
    CHECK(shmpi_hybrid_recv(world, SHMPI_ANY_SOURCE, 4, in, sizeof in, &len, NULL, NULL));
    ASSERT(len == sizeof out && in[0] == 'a');
    CHECK(shmpi_hybrid_recv(world, SHMPI_ANY_SOURCE, 5, in, sizeof in, &len, NULL, NULL));
    ASSERT(len == sizeof out - 1 && in[0] == 'b');
    EXPECT(SHMPI_E_INVALID, shmpi_hybrid_send(world, n, 0, out, 1));
    EXPECT(SHMPI_E_NULL, shmpi_hybrid_send(NULL, 0, 0, out, 1));
    CHECK(shmpi_hybrid_barrier(world));
    collectives(world, me, n);

    /* A second world at once (each holds the process's shared MPI): its
     * messages are its own, apart from the first world's. */
    shmpi_hybrid *second = NULL;
    CHECK(shmpi_hybrid_create((int)MPI_Comm_c2f(MPI_COMM_WORLD), &second));
    CHECK(shmpi_hybrid_send(second, right, 3, "second", 7));
    CHECK(shmpi_hybrid_send(world, right, 3, "first", 6));
    CHECK(shmpi_hybrid_recv(world, left, 3, in, sizeof in, &len, NULL, NULL));
    ASSERT(len == 6 && strcmp(in, "first") == 0);
    CHECK(shmpi_hybrid_recv(second, left, 3, in, sizeof in, &len, NULL, NULL));
    ASSERT(len == 7 && strcmp(in, "second") == 0);
    CHECK(shmpi_hybrid_free(second));

    nonblocking(world, me, n);
    histogram(world, SHMPI_DSM_OWNER, me, n);
    histogram(world, SHMPI_DSM_RMA, me, n);
    element_sizes(world, SHMPI_DSM_OWNER, me, n);
    element_sizes(world, SHMPI_DSM_RMA, me, n);

    int local = 0;
    if (n > 1) CHECK(shmpi_hybrid_is_local(world, 1, &local));
    EXPECT(SHMPI_E_INVALID, shmpi_hybrid_is_local(world, n, &local));
    EXPECT(SHMPI_E_INVALID, shmpi_hybrid_is_local(world, -1, &local));
    EXPECT(SHMPI_E_NULL, shmpi_hybrid_is_local(NULL, 0, &local));
    if (me == 0)
        printf("mpi_hybrid: %d ranks (rank 1 %s); ring, requests in posting order, collectives, owner-protocol and one-sided histograms and elements of 4 and 12 bytes checked\n",
               n, local ? "on this node" : "elsewhere");
    CHECK(shmpi_hybrid_free(world));
    MPI_Finalize();
    return 0;
}
