/* What rsmpi's bindings do not reach: constants MPICH defines as macros
 * (MPI_REPLACE, MPI_NO_OP) and a control variable of the
 * MPI tools interface. Compiled by build.rs with the MPI's own compiler. */
#include <mpi.h>
#include <string.h>
#include <stdlib.h>

MPI_Op shmpi_op_replace(void) { return MPI_REPLACE; }
MPI_Op shmpi_op_no_op(void) { return MPI_NO_OP; }

/* Reads the string control variable NAME into BUF (LEN bytes, always
 * terminated). Returns 0 when read, 1 when the MPI has no such variable
 * (or it is not a string), 2 when the tools interface is unavailable. */
int shmpi_cvar_string(const char *name, char *buf, int len) {
    int provided, index, count, rc = 1;
    MPI_T_cvar_handle handle;
    MPI_Datatype type;
    char *value;
    if (len <= 0) return 1;
    buf[0] = '\0';
    if (MPI_T_init_thread(MPI_THREAD_SINGLE, &provided) != MPI_SUCCESS) return 2;
    if (MPI_T_cvar_get_index(name, &index) == MPI_SUCCESS &&
        MPI_T_cvar_get_info(index, NULL, NULL, NULL, &type, NULL, NULL, NULL, NULL,
                            NULL) == MPI_SUCCESS &&
        type == MPI_CHAR &&
        MPI_T_cvar_handle_alloc(index, NULL, &handle, &count) == MPI_SUCCESS) {
        value = calloc((size_t)count + 1, 1);
        if (value != NULL && MPI_T_cvar_read(handle, value) == MPI_SUCCESS) {
            strncpy(buf, value, (size_t)len - 1);
            buf[len - 1] = '\0';
            rc = 0;
        }
        free(value);
        MPI_T_cvar_handle_free(&handle);
    }
    MPI_T_finalize();
    return rc;
}
