/* The part of shmpi's Fortran module that reads Fortran descriptors
 * (TS 29113 / Fortran 2018, ISO_Fortran_binding.h): a `type(*),
 * dimension(..)` buffer arrives as a CFI_cdesc_t, whose element length
 * and extents give the bytes to send or the room to receive into. The
 * Fortran side has checked contiguity; this checks it again (a
 * descriptor is input like any other). */
#include <ISO_Fortran_binding.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

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

/* The element type of a descriptor's data as an SHMPI_* allreduce type
 * (0: none fits). */
static int elem_type_of(const CFI_cdesc_t *buf) {
    switch (buf->type) {
    case CFI_type_int8_t: return SHMPI_INT8;
    case CFI_type_int16_t: return SHMPI_INT16;
    case CFI_type_int32_t: return SHMPI_INT32;
    case CFI_type_int64_t: return SHMPI_INT64;
    case CFI_type_float: return SHMPI_FLOAT;
    case CFI_type_double: return SHMPI_DOUBLE;
    default: return 0;
    }
}

int shmpi_f_hybrid_broadcast(shmpi_hybrid *h, int root, const CFI_cdesc_t *buf) {
    void *data = NULL;
    size_t bytes = 0;
    int rc = buffer_of(buf, &data, &bytes);
    if (rc != SHMPI_OK) return rc;
    return shmpi_hybrid_broadcast(h, root, data, bytes);
}

/* Input and output must have one element type (integer 1-8 bytes, real
 * 4 or 8) and one length; the type comes from the descriptor. */
int shmpi_f_hybrid_allreduce(shmpi_hybrid *h, const CFI_cdesc_t *input, const CFI_cdesc_t *output, int op) {
    void *in = NULL, *out = NULL;
    size_t in_bytes = 0, out_bytes = 0;
    int rc = buffer_of(input, &in, &in_bytes);
    if (rc == SHMPI_OK) rc = buffer_of(output, &out, &out_bytes);
    if (rc != SHMPI_OK) return rc;
    int type = elem_type_of(input);
    if (type == 0 || elem_type_of(output) != type || in_bytes != out_bytes || input->elem_len == 0)
        return SHMPI_E_INVALID;
    return shmpi_hybrid_allreduce(h, in, out, in_bytes / input->elem_len, type, op);
}

/* `output` is the root's (size × input's bytes); elsewhere it may be any
 * array, even of size 0. Only the root can see that its output is too
 * small: it still takes part, into room of its own, so that the others
 * finish and no part is left queued to confuse a later gather, and then
 * reports SHMPI_E_INVALID with its output untouched. */
int shmpi_f_hybrid_gather(shmpi_hybrid *h, int root, const CFI_cdesc_t *input, const CFI_cdesc_t *output) {
    void *in = NULL, *out = NULL;
    size_t in_bytes = 0, out_bytes = 0;
    int rc = buffer_of(input, &in, &in_bytes);
    if (rc == SHMPI_OK) rc = buffer_of(output, &out, &out_bytes);
    if (rc != SHMPI_OK) return rc;
    int me = -1, n = 0;
    rc = shmpi_hybrid_rank(h, &me, &n);
    if (rc != SHMPI_OK) return rc;
    if (me != root || out_bytes / (size_t)n >= in_bytes) return shmpi_hybrid_gather(h, root, in, in_bytes, out);
    if (in_bytes > SIZE_MAX / (size_t)n) return SHMPI_E_INVALID;
    void *room = malloc(in_bytes * (size_t)n);
    if (room == NULL) return SHMPI_E_OS;
    rc = shmpi_hybrid_gather(h, root, in, in_bytes, room);
    free(room);
    return rc != SHMPI_OK ? rc : SHMPI_E_INVALID;
}

/* The elements a buffer holds for array `d`, or SHMPI_E_INVALID when its
 * bytes are not whole elements. */
static int elements_of(shmpi_dsm *d, const CFI_cdesc_t *buf, void **data, size_t *count) {
    size_t bytes = 0, elem = 0;
    int rc = buffer_of(buf, data, &bytes);
    if (rc == SHMPI_OK) rc = shmpi_dsm_elem_size(d, &elem);
    if (rc != SHMPI_OK) return rc;
    if (elem == 0 || bytes % elem != 0) return SHMPI_E_INVALID;
    *count = bytes / elem;
    return SHMPI_OK;
}

/* `start` is 0-based here; the module converts from Fortran's 1. */
int shmpi_f_dsm_get(shmpi_dsm *d, size_t start, const CFI_cdesc_t *buf) {
    void *data = NULL;
    size_t count = 0;
    int rc = elements_of(d, buf, &data, &count);
    return rc != SHMPI_OK ? rc : shmpi_dsm_get_range(d, start, data, count);
}

int shmpi_f_dsm_put(shmpi_dsm *d, size_t start, const CFI_cdesc_t *buf) {
    void *data = NULL;
    size_t count = 0;
    int rc = elements_of(d, buf, &data, &count);
    return rc != SHMPI_OK ? rc : shmpi_dsm_put_range(d, start, data, count);
}

/* One element at `buf`, or SHMPI_E_INVALID. */
static int one_element(shmpi_dsm *d, const CFI_cdesc_t *buf, void **data) {
    size_t count = 0;
    int rc = elements_of(d, buf, data, &count);
    return rc != SHMPI_OK ? rc : count == 1 ? SHMPI_OK : SHMPI_E_INVALID;
}

int shmpi_f_dsm_fetch_add(shmpi_dsm *d, size_t index, const CFI_cdesc_t *addend, const CFI_cdesc_t *previous) {
    void *a = NULL, *p = NULL;
    int rc = one_element(d, addend, &a);
    if (rc == SHMPI_OK) rc = one_element(d, previous, &p);
    return rc != SHMPI_OK ? rc : shmpi_dsm_fetch_add(d, index, a, p);
}

int shmpi_f_dsm_compare_exchange(shmpi_dsm *d, size_t index, const CFI_cdesc_t *expected,
                                 const CFI_cdesc_t *desired, const CFI_cdesc_t *previous, int *swapped) {
    void *e = NULL, *w = NULL, *p = NULL;
    int rc = one_element(d, expected, &e);
    if (rc == SHMPI_OK) rc = one_element(d, desired, &w);
    if (rc == SHMPI_OK) rc = one_element(d, previous, &p);
    return rc != SHMPI_OK ? rc : shmpi_dsm_compare_exchange(d, index, e, w, p, swapped);
}
