//! The hybrid world and distributed arrays through the C API (feature
//! `mpi`). The caller initialises MPI itself and hands over a communicator
//! as its Fortran handle (`MPI_Comm_c2f`), so the header needs no MPI
//! types; shmpi then never finalises MPI. Free every handle before
//! `MPI_Finalize`; creating and freeing are collective over the ranks.

use std::ffi::{c_int, c_void};

use super::collective;
use super::{
    arg, buffer_arg, bytes_arg, call, finish_recv_into, give, take, write_envelope, write_opt,
    Failure,
};
use super::{SHMPI_E_INVALID, SHMPI_E_TOO_LONG};
use shmpi::dsm::ByteArray;
use shmpi::hybrid::{HybridRecvRequest, HybridSendRequest, HybridWorld, NodeArray};
use shmpi::mpi::Mpi;
use shmpi::transport::{Status, Transport, Wait};

/// A hybrid world over the caller's communicator (opaque): mailboxes
/// inside a node, MPI between nodes. Freed by `shmpi_hybrid_free`. Several
/// may exist at once in a process (each holds the process's shared use of
/// MPI).
pub struct HybridHandle {
    world: HybridWorld,
    _mpi: Mpi,
}

/// Creates a hybrid world over the communicator whose Fortran handle is
/// `comm` (`MPI_Comm_c2f(MPI_COMM_WORLD)`). MPI must be initialised.
/// Collective.
///
/// # Safety
///
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_hybrid_create(comm: c_int, out: *mut *mut HybridHandle) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { arg(out, "out")? };
        let mpi = Mpi::attach()?;
        let world = HybridWorld::from_comm(mpi.comm_from_fortran(comm)?)?;
        give(out, HybridHandle { world, _mpi: mpi });
        Ok(())
    })
}

/// This rank and the number of ranks (either out-pointer may be NULL).
///
/// # Safety
///
/// `h` is NULL or a live handle; the out-pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_hybrid_rank(
    h: *mut HybridHandle,
    rank: *mut c_int,
    size: *mut c_int,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let h = unsafe { arg(h, "hybrid world")? };
        // SAFETY: NULL or writable.
        unsafe {
            write_opt(rank, h.world.rank() as c_int);
            write_opt(size, h.world.size() as c_int);
        }
        Ok(())
    })
}

/// Writes 1 to `local` when `rank` shares this rank's node (its messages
/// go through shared memory), else 0. A rank outside the world is
/// `SHMPI_E_INVALID`.
///
/// # Safety
///
/// `h` is NULL or a live handle; `local` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_hybrid_is_local(
    h: *const HybridHandle,
    rank: c_int,
    local: *mut c_int,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let h = unsafe { super::arg_ref(h, "hybrid world")? };
        let size = h.world.size();
        let rank = usize::try_from(rank)
            .ok()
            .filter(|&r| r < size)
            .ok_or_else(|| {
                Failure::new(
                    SHMPI_E_INVALID,
                    format!("rank {rank} is outside the world of {size}"),
                )
            })?;
        // SAFETY: NULL-checked; writable (caller's contract).
        unsafe { super::out(local, "local", c_int::from(h.world.is_local(rank))) }
    })
}

/// Sends `len` bytes to `dest` with `tag` (mailbox on the node, MPI
/// between nodes).
///
/// # Safety
///
/// `h` is NULL or a live handle; `data` is NULL (with `len` 0) or readable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_hybrid_send(
    h: *mut HybridHandle,
    dest: c_int,
    tag: c_int,
    data: *const c_void,
    len: usize,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (h, data) = unsafe {
            (
                arg(h, "hybrid world")?,
                bytes_arg(data.cast(), len, "data")?,
            )
        };
        let dest = rank_arg(dest)?;
        h.world.send(dest, tag, data)?;
        Ok(())
    })
}

/// Receives from `source` (or `SHMPI_ANY_SOURCE`) with `tag` (or
/// `SHMPI_ANY_TAG`) into `buf` (`cap` bytes), as `shmpi_mailbox_recv`: a
/// message longer than `cap` is `SHMPI_E_TOO_LONG` with `*len` set, and is
/// kept for the next receive.
///
/// # Safety
///
/// As [`shmpi_mailbox_recv`](super::shmpi_mailbox_recv).
#[no_mangle]
pub unsafe extern "C" fn shmpi_hybrid_recv(
    h: *mut HybridHandle,
    source: c_int,
    tag: c_int,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    from: *mut c_int,
    got_tag: *mut c_int,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (h, buf) = unsafe {
            (
                arg(h, "hybrid world")?,
                buffer_arg(buf.cast(), cap, "buffer")?,
            )
        };
        let (source, tag) = (
            super::mailbox::source_of(source)?,
            super::mailbox::tag_of(tag)?,
        );
        // A message too long for `buf` is kept by the world, in its place.
        let received = h
            .world
            .recv_into(source, tag, buf, Wait::Forever)
            .map(|(source, tag, len)| Status { source, tag, len });
        // SAFETY: the out-pointers are NULL or writable (caller's contract).
        unsafe { finish_recv_into(received, (len, from, got_tag)) }
    })
}

/// A destination rank from C: negative is `SHMPI_E_INVALID`.
fn rank_arg(rank: c_int) -> Result<usize, Failure> {
    usize::try_from(rank).map_err(|_| Failure::new(SHMPI_E_INVALID, format!("rank {rank}")))
}

/// The failure for a message of `needed` bytes and a buffer of `cap`, with
/// the length written through `len`.
///
/// # Safety
///
/// `len` is NULL or writable.
unsafe fn too_long(needed: usize, cap: usize, len: *mut usize) -> Failure {
    // SAFETY: NULL or writable (this function's contract).
    unsafe { write_opt(len, needed) };
    Failure::new(
        SHMPI_E_TOO_LONG,
        format!("a message of {needed} bytes does not fit the {cap}-byte buffer (it is kept)"),
    )
}

/// Point-to-point on the caller's own communicator (opaque), borrowed, not
/// duplicated: attaching is not collective, so a shmpi rank can talk to
/// ranks that do not use shmpi (an MPMD job's other program, an mpi4py
/// peer). Messages share the communicator's tags with the caller's own
/// MPI calls; its error handler is the caller's (shmpi does not change
/// it). Freed by `shmpi_comm_free`, which leaves the communicator alone.
pub struct CommHandle {
    comm: shmpi::mpi::Comm,
    _mpi: Mpi,
}

/// Attaches to the communicator whose Fortran handle is `comm`
/// (`MPI_Comm_c2f`). MPI must be initialised. Not collective.
///
/// # Safety
///
/// The communicator outlives the handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_comm_attach(comm: c_int, out: *mut *mut CommHandle) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { arg(out, "out")? };
        let mpi = Mpi::attach()?;
        // SAFETY: MPI is initialised (attach checked); the conversion is a
        // table lookup, and the caller keeps the communicator alive.
        let comm =
            unsafe { shmpi::mpi::Comm::borrow_raw(shmpi::rsmpi::ffi::RSMPI_Comm_f2c(comm))? };
        give(out, CommHandle { comm, _mpi: mpi });
        Ok(())
    })
}

/// This rank and the communicator's size (either out-pointer may be NULL).
///
/// # Safety
///
/// `c` is NULL or a live handle; the out-pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_comm_rank(
    c: *mut CommHandle,
    rank: *mut c_int,
    size: *mut c_int,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let c = unsafe { arg(c, "communicator")? };
        // SAFETY: NULL or writable.
        unsafe {
            write_opt(rank, c.comm.rank() as c_int);
            write_opt(size, c.comm.size() as c_int);
        }
        Ok(())
    })
}

/// Sends `len` bytes to `dest` with `tag` (`MPI_Send`).
///
/// # Safety
///
/// `c` is NULL or a live handle; `data` is NULL (with `len` 0) or readable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_comm_send(
    c: *mut CommHandle,
    dest: c_int,
    tag: c_int,
    data: *const c_void,
    len: usize,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (c, data) = unsafe {
            (
                arg(c, "communicator")?,
                bytes_arg(data.cast(), len, "data")?,
            )
        };
        let dest = rank_arg(dest)?;
        Ok(c.comm.send(dest, tag, data)?)
    })
}

/// Receives from `source` (or `SHMPI_ANY_SOURCE`) with `tag` (or
/// `SHMPI_ANY_TAG`) into `buf` (`cap` bytes): a message longer than `cap`
/// is `SHMPI_E_TOO_LONG` with `*len` set, and is kept for the next
/// receive — never truncated, never lost.
///
/// # Safety
///
/// As [`shmpi_mailbox_recv`](super::shmpi_mailbox_recv).
#[no_mangle]
pub unsafe extern "C" fn shmpi_comm_recv(
    c: *mut CommHandle,
    source: c_int,
    tag: c_int,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    from: *mut c_int,
    got_tag: *mut c_int,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (c, buf) = unsafe {
            (
                arg(c, "communicator")?,
                buffer_arg(buf.cast(), cap, "buffer")?,
            )
        };
        let (source, tag) = (
            super::mailbox::source_of(source)?,
            super::mailbox::tag_of(tag)?,
        );
        let received = c.comm.recv_into(source, tag, buf, Wait::Forever);
        // SAFETY: the out-pointers are NULL or writable (caller's contract).
        unsafe { finish_recv_into(received, (len, from, got_tag)) }
    })
}

/// Frees the handle (NULL: nothing); the communicator stays the caller's.
///
/// # Safety
///
/// `c` is NULL or a live handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn shmpi_comm_free(c: *mut CommHandle) -> c_int {
    // SAFETY: the caller's contract.
    drop(unsafe { take(c) });
    super::SHMPI_OK
}

/// A barrier of every rank (hierarchical: node, then node leaders).
///
/// # Safety
///
/// `h` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmpi_hybrid_barrier(h: *mut HybridHandle) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let h = unsafe { arg(h, "hybrid world")? };
        Ok(h.world.barrier()?)
    })
}

/// Frees the hybrid world (collective; NULL: nothing). MPI stays
/// initialised.
///
/// # Safety
///
/// `h` is NULL or a live handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn shmpi_hybrid_free(h: *mut HybridHandle) -> c_int {
    // SAFETY: the caller's contract.
    drop(unsafe { take(h) });
    super::SHMPI_OK
}

/// Bytes every rank of a node maps, for computing in place (opaque): a
/// segment the node leader creates and the others open, unlinked as soon
/// as all have it. Freed by `shmpi_node_array_free`.
///
/// The contract of in-place use (the one promise the caller makes): between
/// two `shmpi_node_array_barrier` calls, no rank writes bytes another rank
/// reads or writes. Writes become visible to the node's other ranks at the
/// next barrier.
pub struct NodeArrayHandle(NodeArray<u8>);

/// Creates a zeroed node array of `bytes` bytes on every rank of this
/// rank's node (collective over the node's ranks of the hybrid world; the
/// ranks must agree on `bytes`).
///
/// # Safety
///
/// `h` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_node_array_create(
    h: *mut HybridHandle,
    bytes: usize,
    out: *mut *mut NodeArrayHandle,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (h, out) = unsafe { (arg(h, "hybrid world")?, arg(out, "out")?) };
        give(out, NodeArrayHandle(h.world.node_array::<u8>(bytes)?));
        Ok(())
    })
}

/// The array's first byte (aligned to at least 64 bytes), valid until
/// `shmpi_node_array_free`; and its size in bytes (either out-pointer may
/// be NULL).
///
/// # Safety
///
/// `a` is NULL or a live handle; the out-pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_node_array_ptr(
    a: *mut NodeArrayHandle,
    ptr: *mut *mut c_void,
    bytes: *mut usize,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let a = unsafe { arg(a, "node array")? };
        // SAFETY: NULL or writable.
        unsafe {
            write_opt(ptr, a.0.as_ptr().cast());
            write_opt(bytes, a.0.len());
        }
        Ok(())
    })
}

/// This rank's share of the array when it is split evenly among the
/// node's ranks in whole units of `unit` bytes (a row, an element): the
/// byte offset and length of the share (a remainder shorter than a unit is
/// in no share); and this rank's rank on the node and the node's rank
/// count. Any out-pointer may be NULL.
///
/// # Safety
///
/// `a` is NULL or a live handle; the out-pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_node_array_part(
    a: *mut NodeArrayHandle,
    unit: usize,
    offset: *mut usize,
    bytes: *mut usize,
    node_rank: *mut c_int,
    node_size: *mut c_int,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let a = unsafe { arg(a, "node array")? };
        if unit == 0 {
            return Err(Failure::new(SHMPI_E_INVALID, "a unit of 0 bytes"));
        }
        let (rank, size) = a.0.node_rank();
        let units = shmpi::partition::split_range(a.0.len() / unit, size, rank);
        // SAFETY: NULL or writable.
        unsafe {
            write_opt(offset, units.start * unit);
            write_opt(bytes, units.len() * unit);
            write_opt(node_rank, rank as c_int);
            write_opt(node_size, size as c_int);
        }
        Ok(())
    })
}

/// A barrier of the node's ranks that orders every rank's writes to the
/// array before it with every read after it (collective over the node).
///
/// # Safety
///
/// `a` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmpi_node_array_barrier(a: *mut NodeArrayHandle) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let a = unsafe { arg(a, "node array")? };
        Ok(a.0.barrier_until(None, None)?)
    })
}

/// Unmaps the array (NULL: nothing); its pointer is invalid afterwards.
/// Not collective: the memory goes when the node's last rank frees it.
///
/// # Safety
///
/// `a` is NULL or a live handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn shmpi_node_array_free(a: *mut NodeArrayHandle) -> c_int {
    // SAFETY: the caller's contract.
    drop(unsafe { take(a) });
    super::SHMPI_OK
}

/// `shmpi_dsm_create` backend: the owner protocol (requests to the owner
/// as messages on a duplicate of the hybrid world). An owner serves
/// requests only while it is inside a call on the array (every call, a
/// local one too, serves what waits first): a rank that leaves the array
/// for other work — a world collective, say — while others still need its
/// elements must first meet them in `shmpi_dsm_barrier`.
pub const SHMPI_DSM_OWNER: c_int = 0;
/// `shmpi_dsm_create` backend: MPI one-sided operations.
pub const SHMPI_DSM_RMA: c_int = 1;

/// A distributed array of elements of a size chosen at creation (opaque).
/// Freed by `shmpi_dsm_free` (collective).
pub struct DsmHandle(ByteArray);

/// Creates a zeroed array of `len` elements of `elem_size` bytes each,
/// distributed over the hybrid world's ranks (every element whole on one
/// rank), with backend `SHMPI_DSM_OWNER` or `SHMPI_DSM_RMA`. Elements of
/// 1, 2, 4 or 8 bytes are read and written atomically as a whole — the
/// only sizes for which that is promised (a larger element: whole under
/// the owner protocol, per 8-, 4-, 2- or 1-byte word under RMA).
/// Collective; the ranks must agree on `len` and `elem_size` (else
/// `SHMPI_E_INVALID`); `elem_size` 0 is `SHMPI_E_INVALID`.
///
/// # Safety
///
/// `h` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_dsm_create(
    h: *mut HybridHandle,
    len: usize,
    elem_size: usize,
    backend: c_int,
    out: *mut *mut DsmHandle,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (h, out) = unsafe { (arg(h, "hybrid world")?, arg(out, "out")?) };
        let array = match backend {
            SHMPI_DSM_OWNER => ByteArray::owner(h.world.dup()?, len, elem_size)?,
            SHMPI_DSM_RMA => ByteArray::rma(h.world.world(), len, elem_size)?,
            b => return Err(Failure::new(SHMPI_E_INVALID, format!("backend {b}"))),
        };
        give(out, DsmHandle(array));
        Ok(())
    })
}

/// The bytes of `count` elements of `d` (the product checked).
fn span(d: &DsmHandle, count: usize) -> Result<usize, Failure> {
    count.checked_mul(d.0.elem_size()).ok_or_else(|| {
        Failure::new(
            SHMPI_E_INVALID,
            format!("{count} elements of {} bytes", d.0.elem_size()),
        )
    })
}

/// Reads element `index` into `value` (`elem_size` bytes, any alignment).
///
/// # Safety
///
/// `d` is NULL or a live handle; `value` NULL or writable for one element.
#[no_mangle]
pub unsafe extern "C" fn shmpi_dsm_get(
    d: *mut DsmHandle,
    index: usize,
    value: *mut c_void,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { shmpi_dsm_get_range(d, index, value, 1) }
}

/// Writes element `index` from `value` (`elem_size` bytes; complete on
/// return).
///
/// # Safety
///
/// `d` is NULL or a live handle; `value` NULL or readable for one element.
#[no_mangle]
pub unsafe extern "C" fn shmpi_dsm_put(
    d: *mut DsmHandle,
    index: usize,
    value: *const c_void,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { shmpi_dsm_put_range(d, index, value, 1) }
}

/// Reads `count` elements from index `start` into `out` (one request per
/// owner; `SHMPI_E_OUT_OF_BOUNDS` when the range passes the end, nothing
/// read).
///
/// # Safety
///
/// `d` is NULL or a live handle; `out` NULL (with `count` 0) or writable
/// for `count` elements.
#[no_mangle]
pub unsafe extern "C" fn shmpi_dsm_get_range(
    d: *mut DsmHandle,
    start: usize,
    out: *mut c_void,
    count: usize,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let d = unsafe { arg(d, "array")? };
        let bytes = span(d, count)?;
        // SAFETY: the caller's contract.
        let out = unsafe { buffer_arg(out.cast(), bytes, "out")? };
        Ok(d.0.get_range(start, out)?)
    })
}

/// Writes `count` elements from `data` at index `start` (one request per
/// owner; `SHMPI_E_OUT_OF_BOUNDS` when the range passes the end, nothing
/// written).
///
/// # Safety
///
/// `d` is NULL or a live handle; `data` NULL (with `count` 0) or readable
/// for `count` elements.
#[no_mangle]
pub unsafe extern "C" fn shmpi_dsm_put_range(
    d: *mut DsmHandle,
    start: usize,
    data: *const c_void,
    count: usize,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let d = unsafe { arg(d, "array")? };
        let bytes = span(d, count)?;
        // SAFETY: the caller's contract.
        let data = unsafe { bytes_arg(data.cast(), bytes, "data")? };
        Ok(d.0.put_range(start, data)?)
    })
}

/// Copies an element's previous value to an optional out-pointer.
///
/// # Safety
///
/// `ptr` is NULL or writable for `value.len()` bytes.
unsafe fn write_previous(ptr: *mut c_void, value: &[u8]) {
    if !ptr.is_null() {
        // SAFETY: writable for one element (caller's contract); a caller's
        // buffer never overlaps the library's scratch value.
        unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), ptr.cast(), value.len()) };
    }
}

/// Adds `*addend` to element `index` atomically, the elements taken as
/// native-endian integers of 4 or 8 bytes (wrapping: the same for
/// signed and unsigned); the previous value goes to `previous` unless it
/// is NULL. Other element sizes: `SHMPI_E_INVALID`.
///
/// # Safety
///
/// `d` is NULL or a live handle; `addend` NULL or readable and `previous`
/// NULL or writable for one element.
#[no_mangle]
pub unsafe extern "C" fn shmpi_dsm_fetch_add(
    d: *mut DsmHandle,
    index: usize,
    addend: *const c_void,
    previous: *mut c_void,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let d = unsafe { arg(d, "array")? };
        // SAFETY: the caller's contract.
        let addend = unsafe { bytes_arg(addend.cast(), d.0.elem_size(), "addend")? };
        let mut old = vec![0u8; d.0.elem_size()];
        d.0.fetch_add(index, addend, &mut old)?;
        // SAFETY: NULL or writable for one element.
        unsafe { write_previous(previous, &old) };
        Ok(())
    })
}

/// Sets element `index` to `*desired` if it holds `*expected` (bitwise),
/// atomically, for elements of 4 or 8 bytes (others:
/// `SHMPI_E_INVALID`). `previous` gets the value it held and `*swapped` 1
/// when it was replaced, else 0 (either out-pointer may be NULL).
///
/// # Safety
///
/// `d` is NULL or a live handle; `expected` and `desired` NULL or readable
/// for one element; the out-pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_dsm_compare_exchange(
    d: *mut DsmHandle,
    index: usize,
    expected: *const c_void,
    desired: *const c_void,
    previous: *mut c_void,
    swapped: *mut c_int,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let d = unsafe { arg(d, "array")? };
        // SAFETY: the caller's contract.
        let (expected, desired) = unsafe {
            let n = d.0.elem_size();
            (
                bytes_arg(expected.cast(), n, "expected")?,
                bytes_arg(desired.cast(), n, "desired")?,
            )
        };
        let mut old = vec![0u8; d.0.elem_size()];
        let done = d.0.compare_exchange(index, expected, desired, &mut old)?;
        // SAFETY: NULL or writable.
        unsafe {
            write_previous(previous, &old);
            write_opt(swapped, c_int::from(done));
        }
        Ok(())
    })
}

/// Waits for every rank; afterwards every read sees every earlier write.
///
/// # Safety
///
/// `d` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmpi_dsm_barrier(d: *mut DsmHandle) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let d = unsafe { arg(d, "array")? };
        Ok(d.0.barrier()?)
    })
}

/// The array's global length in elements, through `len`.
///
/// # Safety
///
/// `d` is NULL or a live handle; `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_dsm_len(d: *mut DsmHandle, len: *mut usize) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let d = unsafe { arg(d, "array")? };
        // SAFETY: NULL-checked; writable (caller's contract).
        unsafe { super::out(len, "len", d.0.len()) }
    })
}

/// The array's element size in bytes, through `elem_size`.
///
/// # Safety
///
/// `d` is NULL or a live handle; `elem_size` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_dsm_elem_size(d: *mut DsmHandle, elem_size: *mut usize) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let d = unsafe { arg(d, "array")? };
        // SAFETY: NULL-checked; writable (caller's contract).
        unsafe { super::out(elem_size, "elem_size", d.0.elem_size()) }
    })
}

/// Frees the array (collective: every rank frees it; NULL: nothing).
///
/// # Safety
///
/// `d` is NULL or a live handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn shmpi_dsm_free(d: *mut DsmHandle) -> c_int {
    // SAFETY: the caller's contract.
    drop(unsafe { take(d) });
    super::SHMPI_OK
}

/// Makes every rank's `len` bytes at `buf` equal to rank `root`'s.
/// Every rank passes the same `len` (a rank whose `len` differs from the
/// root's gets `SHMPI_E_INVALID`, its buffer unchanged). Collective.
///
/// # Safety
///
/// `h` is NULL or a live handle; `buf` NULL (with `len` 0) or writable
/// for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmpi_hybrid_broadcast(
    h: *mut HybridHandle,
    root: c_int,
    buf: *mut c_void,
    len: usize,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        unsafe { collective::broadcast(&mut arg(h, "hybrid world")?.world, root, buf, len) }
    })
}

/// Combines every rank's `count` elements of type `elem_type` (`SHMPI_INT8`
/// … `SHMPI_DOUBLE`) at `input` element-wise with `op` (`SHMPI_SUM` …
/// `SHMPI_BXOR`, in rank order); every rank gets the result at `output`,
/// which may be `input`. Collective.
///
/// # Safety
///
/// `h` is NULL or a live handle; `input` readable and `output` writable
/// for `count` elements (NULL only with `count` 0).
#[no_mangle]
pub unsafe extern "C" fn shmpi_hybrid_allreduce(
    h: *mut HybridHandle,
    input: *const c_void,
    output: *mut c_void,
    count: usize,
    elem_type: c_int,
    op: c_int,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        unsafe {
            collective::allreduce(
                &mut arg(h, "hybrid world")?.world,
                input,
                output,
                count,
                elem_type,
                op,
            )
        }
    })
}

/// Collects every rank's `len` bytes at `input` at rank `root`, in
/// rank order, into `output` (`size × len` bytes at the root; ignored,
/// and may be NULL, elsewhere). Collective.
///
/// # Safety
///
/// `h` is NULL or a live handle; `input` readable for `len` bytes; at
/// the root `output` writable for `size × len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmpi_hybrid_gather(
    h: *mut HybridHandle,
    root: c_int,
    input: *const c_void,
    len: usize,
    output: *mut c_void,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        unsafe { collective::gather(&mut arg(h, "hybrid world")?.world, root, input, len, output) }
    })
}

/// A non-blocking send or receive on a hybrid world (opaque), from
/// `shmpi_hybrid_isend` or `shmpi_hybrid_irecv`; completed through
/// `shmpi_hybrid_test` / `shmpi_hybrid_wait` with its world, freed by
/// `shmpi_request_free` (before its world, and before `MPI_Finalize`).
pub struct RequestHandle(Request);

enum Request {
    /// `None` once complete.
    Send(Option<HybridSendRequest<'static>>),
    Recv {
        /// `None` once complete.
        request: Option<HybridRecvRequest>,
        buf: *mut u8,
        cap: usize,
        /// The message's envelope once complete.
        status: Option<Status>,
    },
}

/// Starts a send of `len` bytes at `data` to `dest` with `tag`: through
/// MPI a real non-blocking send; through the node's mailbox the message is
/// written at once (as MPI's eager sends), so sends to one rank keep their
/// order. `data` must stay valid and unchanged until the request
/// completes (`shmpi_hybrid_test` reports done, `shmpi_hybrid_wait`
/// returns) or is freed (which waits for it).
///
/// # Safety
///
/// `h` is NULL or a live handle; `data` NULL (with `len` 0) or readable
/// for `len` bytes until the request completes; `req` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_hybrid_isend(
    h: *mut HybridHandle,
    dest: c_int,
    tag: c_int,
    data: *const c_void,
    len: usize,
    req: *mut *mut RequestHandle,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract: `data` outlives the request.
        let (h, data, req) = unsafe {
            (
                arg(h, "hybrid world")?,
                bytes_arg(data.cast(), len, "data")?,
                arg(req, "req")?,
            )
        };
        let sending = h.world.isend(rank_arg(dest)?, tag, data)?;
        give(req, RequestHandle(Request::Send(Some(sending))));
        Ok(())
    })
}

/// Starts a receive from `source` (or `SHMPI_ANY_SOURCE`) with `tag` (or
/// `SHMPI_ANY_TAG`) into `buf` (`cap` bytes). Requests are matched as MPI
/// matches receives: a message goes to the earliest-posted open request
/// that accepts it, whichever request is tested first, and a blocking
/// `shmpi_hybrid_recv` made while requests are open is matched after them.
/// A matched message longer than `cap` makes test and wait return
/// `SHMPI_E_TOO_LONG` with its length; it stays in the request, and
/// freeing the request hands it to the next receive that accepts it (one
/// with a larger buffer).
///
/// # Safety
///
/// `h` is NULL or a live handle; `buf` NULL (with `cap` 0) or writable for
/// `cap` bytes until the request completes or is freed; `req` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_hybrid_irecv(
    h: *mut HybridHandle,
    source: c_int,
    tag: c_int,
    buf: *mut c_void,
    cap: usize,
    req: *mut *mut RequestHandle,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (h, req) = unsafe { (arg(h, "hybrid world")?, arg(req, "req")?) };
        if buf.is_null() && cap > 0 {
            return Err(Failure::new(
                super::SHMPI_E_NULL,
                format!("buffer is NULL with length {cap}"),
            ));
        }
        let (source, tag) = (
            super::mailbox::source_of(source)?,
            super::mailbox::tag_of(tag)?,
        );
        let request = h.world.irecv(source, tag)?;
        give(
            req,
            RequestHandle(Request::Recv {
                request: Some(request),
                buf: buf.cast(),
                cap,
                status: None,
            }),
        );
        Ok(())
    })
}

/// Completes a request if it can (`wait`: waiting as long as it takes);
/// true once complete. A receive's message too long for its buffer stays
/// in the request, its length written through `len`.
///
/// # Safety
///
/// A receive's buffer is writable for its capacity (irecv's contract);
/// `len` is NULL or writable.
unsafe fn complete(
    world: &mut HybridWorld,
    req: &mut Request,
    wait: Wait,
    len: *mut usize,
) -> Result<bool, Failure> {
    match req {
        Request::Send(sending) => {
            let Some(mut s) = sending.take() else {
                return Ok(true);
            };
            if wait == Wait::Forever {
                world.wait_send(s)?;
                return Ok(true);
            }
            let done = world.test_send(&mut s);
            if !matches!(done, Ok(true)) {
                *sending = Some(s); // still running, or to report again
            }
            Ok(done?)
        }
        Request::Recv {
            request,
            buf,
            cap,
            status,
        } => {
            let Some(r) = request.as_ref() else {
                return Ok(true);
            };
            let found = match wait {
                Wait::Forever => Some(world.await_recv(r, Wait::Forever)?),
                _ => world.test_recv(r)?,
            };
            let Some(found) = found else {
                return Ok(false);
            };
            if found.len > *cap {
                // SAFETY: `len` is NULL or writable (this function's contract).
                return Err(unsafe { too_long(found.len, *cap, len) });
            }
            let Some(r) = request.take() else {
                return Ok(true);
            };
            let message = world.wait_recv(r)?;
            if !message.data.is_empty() {
                // SAFETY: `buf` is writable for `cap` ≥ the message's bytes
                // (this function's contract); a message's own allocation
                // never overlaps it.
                unsafe {
                    std::ptr::copy_nonoverlapping(message.data.as_ptr(), *buf, message.data.len())
                };
            }
            *status = Some(message.status());
            Ok(true)
        }
    }
}

/// The envelope of a completed receive (a send has none: the out-pointers
/// are left alone).
fn envelope(req: &Request) -> Option<Status> {
    match req {
        Request::Recv { status, .. } => *status,
        Request::Send(_) => None,
    }
}

/// Polls a request of world `h`: `*done` 1 once it has completed (then a
/// receive's length, source and tag go to the out-pointers that are not
/// NULL), else 0. Testing a completed request again reports it again.
/// A receive whose message is longer than its buffer: `SHMPI_E_TOO_LONG`
/// with the length in `*len` (see `shmpi_hybrid_irecv`).
///
/// # Safety
///
/// `h` and `req` are NULL or live handles, `req` made on `h`; the
/// out-pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_hybrid_test(
    h: *mut HybridHandle,
    req: *mut RequestHandle,
    done: *mut c_int,
    len: *mut usize,
    source: *mut c_int,
    tag: *mut c_int,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { finish(h, req, Wait::Now, done, (len, source, tag)) }
}

/// Waits until a request of world `h` completes; a receive's length,
/// source and tag go to the out-pointers that are not NULL. Waiting for a
/// completed request again returns at once. Errors as `shmpi_hybrid_test`.
///
/// # Safety
///
/// As [`shmpi_hybrid_test`].
#[no_mangle]
pub unsafe extern "C" fn shmpi_hybrid_wait(
    h: *mut HybridHandle,
    req: *mut RequestHandle,
    len: *mut usize,
    source: *mut c_int,
    tag: *mut c_int,
) -> c_int {
    // SAFETY: the caller's contract.
    unsafe {
        finish(
            h,
            req,
            Wait::Forever,
            std::ptr::null_mut(),
            (len, source, tag),
        )
    }
}

/// `shmpi_hybrid_test` and `_wait`.
///
/// # Safety
///
/// As [`shmpi_hybrid_test`].
unsafe fn finish(
    h: *mut HybridHandle,
    req: *mut RequestHandle,
    wait: Wait,
    done: *mut c_int,
    out: (*mut usize, *mut c_int, *mut c_int),
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (h, req) = unsafe { (arg(h, "hybrid world")?, arg(req, "request")?) };
        // SAFETY: the receive's buffer per irecv's contract; `out.0` NULL
        // or writable (caller's contract).
        let complete = unsafe { complete(&mut h.world, &mut req.0, wait, out.0)? };
        // SAFETY: NULL or writable (caller's contract).
        unsafe {
            write_opt(done, c_int::from(complete));
            if let (true, Some(status)) = (complete, envelope(&req.0)) {
                write_envelope(out, status);
            }
        }
        Ok(())
    })
}

/// Frees a request (NULL: nothing). An unfinished send is waited for; an
/// unfinished receive is withdrawn, and a message it had matched goes to
/// the next receive that accepts it.
///
/// # Safety
///
/// `req` is NULL or a live handle, not used again; its world still live.
#[no_mangle]
pub unsafe extern "C" fn shmpi_request_free(req: *mut RequestHandle) -> c_int {
    // SAFETY: the caller's contract.
    drop(unsafe { take(req) });
    super::SHMPI_OK
}
