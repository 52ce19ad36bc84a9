/* The other program of an MPMD job: plain MPI, no shmpi. It echoes what
 * the shmpi rank sends it and sends one message longer than the buffer the
 * shmpi rank will first offer. It joins the one collective the job makes
 * (MPI_Comm_split, which gives the shmpi ranks a communicator of their own
 * for their hybrid world). */
#include <mpi.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int me = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    MPI_Comm mine;
    MPI_Comm_split(MPI_COMM_WORLD, 1, me, &mine);
    char buf[256];
    MPI_Status st;
    for (int i = 0; i < 10; i++) {
        MPI_Recv(buf, sizeof buf, MPI_CHAR, 0, 5, MPI_COMM_WORLD, &st);
        int len = 0;
        MPI_Get_count(&st, MPI_CHAR, &len);
        MPI_Send(buf, len, MPI_CHAR, 0, 6, MPI_COMM_WORLD);
    }
    char big[200];
    memset(big, 'z', sizeof big);
    MPI_Send(big, sizeof big, MPI_CHAR, 0, 7, MPI_COMM_WORLD);
    MPI_Comm_free(&mine);
    MPI_Finalize();
    return 0;
}
