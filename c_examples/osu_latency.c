/* OSU-style ping-pong in plain C on the same MPI, as the baseline for
 * shmpi's bindings (path "mpi.c" in the benchmark records). Same method as
 * examples/mpi_pingpong.rs: one-way latency = half the round trip, median
 * of N samples after one warm-up sample.
 *
 *   mpicc -O2 -o osu_latency osu_latency.c
 *   scripts/mpirun.sh -n 2 ./osu_latency [--quick] [--mprobe | --probe | --multiple] [--json FILE] [--records]
 *
 * --mprobe receives with MPI_Mprobe + MPI_Mrecv, as shmpi does under
 * MPI_THREAD_MULTIPLE to keep a message that is too long for the buffer
 * (path "mpi.c.mprobe"); --probe with MPI_Probe + MPI_Recv of the probed
 * source and tag, race-free below MULTIPLE (path "mpi.c.probe"): they show
 * what each way of receiving safely costs in this MPI. --multiple is
 * --mprobe with MPI initialised at MPI_THREAD_MULTIPLE (path
 * "mpi.c.multiple"), the baseline for shmpi at that level.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PLAIN, MPROBE, PROBE };

static void receive(char *buf, int len, int from, int how) {
    if (how == PROBE) {
        MPI_Status st;
        MPI_Probe(from, 1, MPI_COMM_WORLD, &st);
        MPI_Recv(buf, len, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else if (how == MPROBE) {
        MPI_Message msg;
        MPI_Status st;
        MPI_Mprobe(from, 1, MPI_COMM_WORLD, &msg, &st);
        MPI_Mrecv(buf, len, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
    } else {
        MPI_Recv(buf, len, MPI_BYTE, from, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int quick = 0, mprobe = 0, multiple = 0, records = 0, rank, size, provided;
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--mprobe")) mprobe = MPROBE;
        else if (!strcmp(argv[i], "--probe")) mprobe = PROBE;
        else if (!strcmp(argv[i], "--multiple")) mprobe = MPROBE, multiple = 1;
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--records")) records = 1;
    }
    int level = multiple ? MPI_THREAD_MULTIPLE : MPI_THREAD_SINGLE;
    MPI_Init_thread(&argc, &argv, level, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (provided < level) {
        fprintf(stderr, "osu_latency: MPI_THREAD_MULTIPLE not provided (%d)\n", provided);
        MPI_Finalize();
        return 1;
    }
    if (size < 2) {
        fprintf(stderr, "osu_latency needs 2 ranks\n");
        MPI_Finalize();
        return 1;
    }
    const int sizes[] = {8, 64, 1024, 65536, 1 << 20};
    const int nsizes = 5, samples = quick ? 3 : 7;
    char *buf = malloc(1 << 20);
    memset(buf, 0x5a, 1 << 20);
    double med[5], lo[5], hi[5];
    for (int s = 0; s < nsizes; s++) {
        int iters = (sizes[s] <= 1024 ? 10000 : sizes[s] <= 65536 ? 1000 : 100) / (quick ? 4 : 1);
        double t[16];
        for (int k = 0; k <= samples; k++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double start = MPI_Wtime();
            for (int i = 0; i < iters; i++) {
                if (rank == 0) {
                    MPI_Send(buf, sizes[s], MPI_BYTE, 1, 1, MPI_COMM_WORLD);
                    receive(buf, sizes[s], 1, mprobe);
                } else if (rank == 1) {
                    receive(buf, sizes[s], 0, mprobe);
                    MPI_Send(buf, sizes[s], MPI_BYTE, 0, 1, MPI_COMM_WORLD);
                }
            }
            t[k] = (MPI_Wtime() - start) * 1e9 / iters / 2.0;
        }
        qsort(t + 1, samples, sizeof(double), cmp); /* t[0] is the warm-up */
        med[s] = samples % 2 ? t[1 + samples / 2] : (t[samples / 2] + t[1 + samples / 2]) / 2.0;
        lo[s] = t[1];
        hi[s] = t[samples];
    }
    const char *path = multiple ? "mpi.c.multiple" : mprobe == MPROBE ? "mpi.c.mprobe" : mprobe == PROBE ? "mpi.c.probe" : "mpi.c";
    if (rank == 0) {
        if (records) /* the lines `shmpi bench --c-baseline` reads */
            for (int s = 0; s < nsizes; s++)
                printf("shmpi-record\t%s\tlatency_ns\t%d\t%f\t%f\t%f\t%d\n", path, sizes[s], med[s], lo[s], hi[s], samples);
        else {
            printf("| path | metric | size | median | min–max | n |\n|---|---|---:|---:|---:|---:|\n");
            for (int s = 0; s < nsizes; s++)
                printf("| %s | latency_ns | %d B | %.1f | %.1f–%.1f | %d |\n", path, sizes[s], med[s], lo[s], hi[s], samples);
        }
        if (json) {
            FILE *f = fopen(json, "w");
            if (!f) {
                perror(json);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            fprintf(f, "{\"machine\": {\"cpus\": null, \"mpi\": null, \"host\": null},\n \"records\": [");
            for (int s = 0; s < nsizes; s++)
                fprintf(f, "%s\n  {\"path\": \"%s\", \"metric\": \"latency_ns\", \"size\": %d, \"median\": %.3f, \"min\": %.3f, \"max\": %.3f, \"n\": %d}",
                        s ? "," : "", path, sizes[s], med[s], lo[s], hi[s], samples);
            fprintf(f, "\n]}\n");
            fclose(f);
        }
    }
    free(buf);
    MPI_Finalize();
    return 0;
}
