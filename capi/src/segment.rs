//! Segments through the C API.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use super::{arg, arg_ref, call, give, string_arg, take, write_opt};
use shmpi::segment::{Segment, SegmentName};

/// Bytes of the header that starts every segment shmpi creates: the data
/// begins at this byte of the POSIX object (`/dev/shm/NAME`), so a program
/// that maps the object itself (`shm_open` + `mmap`) finds the data at
/// offset 128, 128-byte aligned. A segment opened with
/// `shmpi_segment_open_raw` has no header: its data is the whole object,
/// from byte 0.
pub const SHMPI_SEGMENT_HEADER_SIZE: usize = 128;

const _: () = assert!(SHMPI_SEGMENT_HEADER_SIZE == shmpi::segment::HEADER_SIZE);

/// A mapped segment (opaque). Freed by `shmpi_segment_free`; semaphores,
/// mutexes and barriers placed in it keep it mapped until they are freed.
pub struct SegmentHandle(pub(crate) Arc<Segment>);

/// Creates segment `name` (exclusively) with `size` bytes of data, mode
/// `mode` (0: 0600, owner only), and maps it. The creator's close removes
/// the name unless `shmpi_segment_persist` was called.
///
/// # Safety
///
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_segment_create(
    name: *const c_char,
    size: usize,
    mode: u32,
    out: *mut *mut SegmentHandle,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract for each argument.
        let (name, out) = unsafe { (string_arg(name, "name")?, arg(out, "out")?) };
        let mut b = Segment::builder(name).size(size);
        if mode != 0 {
            b = b.mode(mode);
        }
        give(out, SegmentHandle(Arc::new(b.create()?)));
        Ok(())
    })
}

/// Opens segment `name`, checking its shmpi header (waits up to the
/// default ready timeout for a creator still initialising it).
///
/// # Safety
///
/// As [`shmpi_segment_create`].
#[no_mangle]
pub unsafe extern "C" fn shmpi_segment_open(
    name: *const c_char,
    out: *mut *mut SegmentHandle,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (name, out) = unsafe { (string_arg(name, "name")?, arg(out, "out")?) };
        give(out, SegmentHandle(Arc::new(Segment::builder(name).open()?)));
        Ok(())
    })
}

/// Opens any shared-memory object `name` as raw bytes, without a shmpi
/// header (another library's segment).
///
/// # Safety
///
/// As [`shmpi_segment_create`].
#[no_mangle]
pub unsafe extern "C" fn shmpi_segment_open_raw(
    name: *const c_char,
    out: *mut *mut SegmentHandle,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (name, out) = unsafe { (string_arg(name, "name")?, arg(out, "out")?) };
        give(
            out,
            SegmentHandle(Arc::new(Segment::builder(name).open_raw()?)),
        );
        Ok(())
    })
}

/// The segment's data: its address and length in bytes (either out-pointer
/// may be NULL). Valid while the handle (or an object in it) is open. For a
/// shmpi segment the data starts `SHMPI_SEGMENT_HEADER_SIZE` (128) bytes
/// into the object, after the header, and is 128-byte aligned; for one
/// opened with `shmpi_segment_open_raw` it is the whole object.
///
/// # Safety
///
/// `seg` is NULL or a live handle; `data` and `len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_segment_data(
    seg: *const SegmentHandle,
    data: *mut *mut c_void,
    len: *mut usize,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let seg = unsafe { arg_ref(seg, "segment")? };
        // SAFETY: NULL or writable (caller's contract).
        unsafe {
            write_opt(data, seg.0.as_ptr().cast());
            write_opt(len, seg.0.len());
        }
        Ok(())
    })
}

/// The segment's data length in bytes, through `len`.
///
/// # Safety
///
/// `seg` is NULL or a live handle; `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_segment_size(seg: *const SegmentHandle, len: *mut usize) -> c_int {
    call(|| {
        // SAFETY: NULL or live (caller's contract).
        let seg = unsafe { arg_ref(seg, "segment")? };
        // SAFETY: NULL-checked; writable (caller's contract).
        unsafe { super::out(len, "len", seg.0.len()) }
    })
}

/// Keeps the name after the creator closes the segment.
///
/// # Safety
///
/// `seg` is NULL or a live handle used by no other thread now.
#[no_mangle]
pub unsafe extern "C" fn shmpi_segment_persist(seg: *mut SegmentHandle) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let seg = unsafe { arg(seg, "segment")? };
        match Arc::get_mut(&mut seg.0) {
            Some(s) => {
                s.persist();
                Ok(())
            }
            None => Err(super::Failure::new(
                super::SHMPI_E_BUSY,
                "objects in the segment are still open",
            )),
        }
    })
}

/// Unmaps the segment and frees the handle (NULL: nothing). The creator's
/// close also removes the name (unless persisted). Objects placed in the
/// segment keep the mapping alive until they are freed.
///
/// # Safety
///
/// `seg` is NULL or a live handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn shmpi_segment_free(seg: *mut SegmentHandle) -> c_int {
    // SAFETY: the caller's contract.
    drop(unsafe { take(seg) });
    super::SHMPI_OK
}

/// Removes the name `name` (mapped handles stay valid).
///
/// # Safety
///
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn shmpi_segment_unlink(name: *const c_char) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let name = unsafe { string_arg(name, "name")? };
        let name = SegmentName::new(name).map_err(|source| shmpi::SegmentError::InvalidName {
            name: name.to_owned(),
            source,
        })?;
        Segment::remove(&name)?;
        Ok(())
    })
}
