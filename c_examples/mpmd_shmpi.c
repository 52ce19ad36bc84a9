/* A shmpi program in an MPMD job (`mpirun -n 2 mpmd_shmpi : -n 1
 * mpmd_peer`): the last rank runs plain MPI. Rank 0 talks to it through
 * shmpi's point-to-point on MPI_COMM_WORLD itself (`shmpi_comm_attach`:
 * borrowed, not duplicated, so no collective the peer would have to join):
 * an echo, and a message longer than the buffer, reported and kept, then
 * received whole. The shmpi ranks build a hybrid world on a
 * sub-communicator of their own (MPI_Comm_split) and pass a ring. */
#include <mpi.h>
#include <string.h>

#include "check.h"

int main(int argc, char **argv) {
    int provided = 0, me = 0, n = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    int peer = n - 1; /* the plain MPI rank */

    /* The shmpi ranks' own communicator; the peer joins the split. */
    MPI_Comm ours;
    MPI_Comm_split(MPI_COMM_WORLD, 0, me, &ours);
    shmpi_hybrid *world = NULL;
    CHECK(shmpi_hybrid_create((int)MPI_Comm_c2f(ours), &world));
    int rank = -1, size = 0;
    CHECK(shmpi_hybrid_rank(world, &rank, &size));
    ASSERT(size == n - 1 && rank == me);
    char out[64], in[64];
    size_t len = 0;
    snprintf(out, sizeof out, "ring from %d", rank);
    CHECK(shmpi_hybrid_send(world, (rank + 1) % size, 1, out, strlen(out) + 1));
    CHECK(shmpi_hybrid_recv(world, (rank + size - 1) % size, 1, in, sizeof in, &len, NULL, NULL));
    char want[64];
    snprintf(want, sizeof want, "ring from %d", (rank + size - 1) % size);
    ASSERT(strcmp(in, want) == 0);

    if (me == 0) {
        shmpi_comm *comm = NULL;
        CHECK(shmpi_comm_attach((int)MPI_Comm_c2f(MPI_COMM_WORLD), &comm));
        int wr = -1, ws = 0;
        CHECK(shmpi_comm_rank(comm, &wr, &ws));
        ASSERT(wr == 0 && ws == n);
        for (int i = 0; i < 10; i++) {
            snprintf(out, sizeof out, "echo %d", i);
            CHECK(shmpi_comm_send(comm, peer, 5, out, strlen(out) + 1));
            int from = -1, tag = -1;
            CHECK(shmpi_comm_recv(comm, peer, 6, in, sizeof in, &len, &from, &tag));
            ASSERT(from == peer && tag == 6 && len == strlen(out) + 1 && strcmp(in, out) == 0);
        }
        /* Too long: reported with its length and kept, then received. */
        char small[16], big[256];
        EXPECT(SHMPI_E_TOO_LONG, shmpi_comm_recv(comm, peer, 7, small, sizeof small, &len, NULL, NULL));
        ASSERT(len == 200);
        CHECK(shmpi_comm_recv(comm, SHMPI_ANY_SOURCE, SHMPI_ANY_TAG, big, sizeof big, &len, NULL, NULL));
        ASSERT(len == 200 && big[0] == 'z' && big[199] == 'z');
        EXPECT(SHMPI_E_INVALID, shmpi_comm_send(comm, n, 0, out, 1));
        EXPECT(SHMPI_E_NULL, shmpi_comm_send(NULL, 0, 0, out, 1));
        CHECK(shmpi_comm_free(comm));
        printf("mpmd_shmpi: %d shmpi ranks and 1 plain MPI rank; echo, a kept too-long message, the hybrid ring: checked\n", n - 1);
    }
    CHECK(shmpi_hybrid_free(world));
    MPI_Comm_free(&ours);
    MPI_Finalize();
    return 0;
}
