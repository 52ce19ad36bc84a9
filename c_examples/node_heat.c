/* Computing in place on node-shared memory from C: the ranks of a node
 * smooth a 1-D rod of CELLS cells held twice (read and write buffers) in one
 * node array, each rank writing only its share of the write buffer, with a
 * node barrier between steps — no copies, no messages. Every rank then
 * checks the whole rod against a serial run, bit for bit. */
#include <mpi.h>
#include <string.h>

#include "check.h"

#define CELLS 1000
#define STEPS 200

static double cell_at(const double *rod, int i) {
    if (i < 0) i = 0;
    if (i >= CELLS) i = CELLS - 1;
    return rod[i];
}

static void smooth(const double *in, double *out, size_t from, size_t to) {
    for (size_t i = from; i < to; i++)
        out[i] = (cell_at(in, (int)i - 1) + in[i] + cell_at(in, (int)i + 1)) / 3.0;
}

int main(int argc, char **argv) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    shmpi_hybrid *world = NULL;
    CHECK(shmpi_hybrid_create((int)MPI_Comm_c2f(MPI_COMM_WORLD), &world));

    shmpi_node_array *array = NULL;
    CHECK(shmpi_node_array_create(world, 2 * CELLS * sizeof(double), &array));
    void *base = NULL;
    size_t bytes = 0, offset = 0, share = 0;
    int node_rank = -1, node_size = 0;
    CHECK(shmpi_node_array_ptr(array, &base, &bytes));
    ASSERT(bytes == 2 * CELLS * sizeof(double));
    ASSERT((uintptr_t)base % 64 == 0);
    /* My share of the cells: the array split in units of one cell pair. */
    CHECK(shmpi_node_array_part(array, 2 * sizeof(double), &offset, &share, &node_rank, &node_size));
    size_t from = offset / (2 * sizeof(double)), to = from + share / (2 * sizeof(double));
    ASSERT(node_rank >= 0 && node_rank < node_size);

    double *buf[2] = {(double *)base, (double *)base + CELLS};
    for (size_t i = from; i < to; i++) buf[0][i] = (double)(i % 17);
    CHECK(shmpi_node_array_barrier(array));
    for (int step = 0; step < STEPS; step++) {
        /* Read all of one buffer, write my share of the other, in place. */
        smooth(buf[step % 2], buf[1 - step % 2], from, to);
        CHECK(shmpi_node_array_barrier(array));
    }

    double serial[2][CELLS];
    for (int i = 0; i < CELLS; i++) serial[0][i] = (double)(i % 17);
    for (int step = 0; step < STEPS; step++)
        smooth(serial[step % 2], serial[1 - step % 2], 0, CELLS);
    ASSERT(memcmp(serial[STEPS % 2], buf[STEPS % 2], sizeof serial[0]) == 0);

    /* Error paths: a NULL handle, a zero unit. */
    EXPECT(SHMPI_E_NULL, shmpi_node_array_ptr(NULL, &base, NULL));
    EXPECT(SHMPI_E_NULL, shmpi_node_array_barrier(NULL));
    EXPECT(SHMPI_E_INVALID, shmpi_node_array_part(array, 0, &offset, NULL, NULL, NULL));
    EXPECT(SHMPI_E_NULL, shmpi_node_array_create(world, 64, NULL));

    CHECK(shmpi_node_array_barrier(array)); /* everyone checked: free */
    CHECK(shmpi_node_array_free(array));
    CHECK(shmpi_node_array_free(NULL));
    int me = 0;
    CHECK(shmpi_hybrid_rank(world, &me, NULL));
    if (me == 0) printf("node_heat: %d cells, %d steps in place on %d rank(s) per node: identical to serial\n", CELLS, STEPS, node_size);
    CHECK(shmpi_hybrid_free(world));
    MPI_Finalize();
    return 0;
}
