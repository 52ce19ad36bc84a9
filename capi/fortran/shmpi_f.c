/* The part of shmpi's Fortran module that reads Fortran descriptors
 * (TS 29113 / Fortran 2018, ISO_Fortran_binding.h): a `type(*),
 * dimension(..)` buffer arrives as a CFI_cdesc_t, whose element length
 * and extents give the bytes to send or the room to receive into. The
 * Fortran side has checked contiguity; this checks it again (a
 * descriptor is input like any other). */
#include <ISO_Fortran_binding.h>
#include <stddef.h>
#include <stdint.h>

#include <shmpi.h>

/* The buffer's address and bytes, or SHMPI_E_INVALID when it cannot be
 * passed as one run of bytes. */
static int buffer_of(const CFI_cdesc_t *buf, void **data, size_t *bytes) {
    if (buf == NULL) return SHMPI_E_NULL;
    if (!CFI_is_contiguous(buf)) return SHMPI_E_INVALID;
    size_t n = buf->elem_len;
    for (CFI_rank_t d = 0; d < buf->rank; d++) {
        CFI_index_t extent = buf->dim[d].extent;
        if (extent < 0) return SHMPI_E_INVALID;
        if (extent != 0 && n > SIZE_MAX / (size_t)extent) return SHMPI_E_INVALID;
        n *= (size_t)extent;
    }
    *data = buf->base_addr;
    *bytes = buf->base_addr == NULL ? 0 : n;
    return SHMPI_OK;
}

int shmpi_f_hybrid_send(shmpi_hybrid *h, int dest, int tag, const CFI_cdesc_t *buf) {
    void *data = NULL;
    size_t bytes = 0;
    int rc = buffer_of(buf, &data, &bytes);
    if (rc != SHMPI_OK) return rc;
    return shmpi_hybrid_send(h, dest, tag, data, bytes);
}

int shmpi_f_hybrid_recv(shmpi_hybrid *h, int source, int tag, const CFI_cdesc_t *buf, size_t *len,
                        int *from, int *got_tag) {
    void *data = NULL;
    size_t bytes = 0;
    int rc = buffer_of(buf, &data, &bytes);
    if (rc != SHMPI_OK) return rc;
    return shmpi_hybrid_recv(h, source, tag, data, bytes, len, from, got_tag);
}
