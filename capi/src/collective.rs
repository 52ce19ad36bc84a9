//! Collectives through the C API, one implementation for every path that
//! has them (a mailbox group, a hybrid world): barrier, broadcast,
//! allreduce over typed elements, gather of equal contributions.
//! Every member calls each collective, in the same order.

use std::ffi::{c_int, c_void};

use bytemuck::Pod;
use shmpi::transport::{ReduceOp, Reducible, Transport};

use super::{buffer_arg, bytes_arg, Failure, SHMPI_E_INVALID};

/// `SHMPI_INT8` … `SHMPI_DOUBLE`: element types of an allreduce.
pub const SHMPI_INT8: c_int = 1;
/// 16-bit signed integers.
pub const SHMPI_INT16: c_int = 2;
/// 32-bit signed integers.
pub const SHMPI_INT32: c_int = 3;
/// 64-bit signed integers.
pub const SHMPI_INT64: c_int = 4;
/// 8-bit unsigned integers.
pub const SHMPI_UINT8: c_int = 5;
/// 16-bit unsigned integers.
pub const SHMPI_UINT16: c_int = 6;
/// 32-bit unsigned integers.
pub const SHMPI_UINT32: c_int = 7;
/// 64-bit unsigned integers.
pub const SHMPI_UINT64: c_int = 8;
/// `float`.
pub const SHMPI_FLOAT: c_int = 9;
/// `double`.
pub const SHMPI_DOUBLE: c_int = 10;

/// Reduction operations of an allreduce (`MPI_SUM` … `MPI_BXOR`); the
/// bitwise ones are for integers only. Results are combined in rank
/// order, so floating-point sums are the same on every run.
pub const SHMPI_SUM: c_int = 1;
/// Product.
pub const SHMPI_PROD: c_int = 2;
/// Minimum.
pub const SHMPI_MIN: c_int = 3;
/// Maximum.
pub const SHMPI_MAX: c_int = 4;
/// Bitwise and (integers).
pub const SHMPI_BAND: c_int = 5;
/// Bitwise or (integers).
pub const SHMPI_BOR: c_int = 6;
/// Bitwise exclusive or (integers).
pub const SHMPI_BXOR: c_int = 7;

fn op_of(op: c_int) -> Result<ReduceOp, Failure> {
    Ok(match op {
        SHMPI_SUM => ReduceOp::Sum,
        SHMPI_PROD => ReduceOp::Prod,
        SHMPI_MIN => ReduceOp::Min,
        SHMPI_MAX => ReduceOp::Max,
        SHMPI_BAND => ReduceOp::BitAnd,
        SHMPI_BOR => ReduceOp::BitOr,
        SHMPI_BXOR => ReduceOp::BitXor,
        other => {
            return Err(Failure::new(
                SHMPI_E_INVALID,
                format!("{other} is not a reduction operation (SHMPI_SUM … SHMPI_BXOR)"),
            ))
        }
    })
}

fn root_of<T: Transport>(t: &T, root: c_int) -> Result<usize, Failure> {
    usize::try_from(root)
        .ok()
        .filter(|&r| r < t.size())
        .ok_or_else(|| {
            Failure::new(
                SHMPI_E_INVALID,
                format!("root {root} is outside the {} ranks", t.size()),
            )
        })
}

/// A barrier of every member.
pub(crate) fn barrier<T: Transport>(t: &mut T) -> Result<(), Failure> {
    Ok(t.barrier()?)
}

/// Makes every member's `len` bytes at `buf` equal to `root`'s. Every
/// member passes the same `len`; a member whose `len` differs from the
/// root's gets `SHMPI_E_INVALID` and its buffer is left as it was.
///
/// # Safety
///
/// `buf` is NULL (with `len` 0) or writable for `len` bytes.
pub(crate) unsafe fn broadcast<T: Transport>(
    t: &mut T,
    root: c_int,
    buf: *mut c_void,
    len: usize,
) -> Result<(), Failure> {
    let root = root_of(t, root)?;
    // SAFETY: the caller's contract.
    let buf = unsafe { buffer_arg(buf.cast(), len, "buffer")? };
    let mut data = buf.to_vec();
    t.broadcast(root, &mut data)?;
    if data.len() != buf.len() {
        return Err(Failure::new(
            SHMPI_E_INVALID,
            format!(
                "broadcast: the root sent {} bytes, this member's buffer holds {}",
                data.len(),
                buf.len()
            ),
        ));
    }
    buf.copy_from_slice(&data);
    Ok(())
}

/// Combines every member's `count` elements of type `ty` at `input`
/// element-wise with `op`; every member gets the result at `output`
/// (which may be `input`).
///
/// # Safety
///
/// `input` is readable and `output` writable for `count` elements of
/// `ty` (NULL only with `count` 0).
pub(crate) unsafe fn allreduce<T: Transport>(
    t: &mut T,
    input: *const c_void,
    output: *mut c_void,
    count: usize,
    ty: c_int,
    op: c_int,
) -> Result<(), Failure> {
    let op = op_of(op)?;
    // SAFETY: forwarded contract, for the element type `ty` names.
    unsafe {
        match ty {
            SHMPI_INT8 => typed::<i8, T>(t, input, output, count, op),
            SHMPI_INT16 => typed::<i16, T>(t, input, output, count, op),
            SHMPI_INT32 => typed::<i32, T>(t, input, output, count, op),
            SHMPI_INT64 => typed::<i64, T>(t, input, output, count, op),
            SHMPI_UINT8 => typed::<u8, T>(t, input, output, count, op),
            SHMPI_UINT16 => typed::<u16, T>(t, input, output, count, op),
            SHMPI_UINT32 => typed::<u32, T>(t, input, output, count, op),
            SHMPI_UINT64 => typed::<u64, T>(t, input, output, count, op),
            SHMPI_FLOAT => typed::<f32, T>(t, input, output, count, op),
            SHMPI_DOUBLE => typed::<f64, T>(t, input, output, count, op),
            other => Err(Failure::new(
                SHMPI_E_INVALID,
                format!("{other} is not an element type (SHMPI_INT8 … SHMPI_DOUBLE)"),
            )),
        }
    }
}

/// [`allreduce`] for elements of type `E`.
///
/// # Safety
///
/// As [`allreduce`], for `E`.
unsafe fn typed<E: Reducible, T: Transport>(
    t: &mut T,
    input: *const c_void,
    output: *mut c_void,
    count: usize,
    op: ReduceOp,
) -> Result<(), Failure> {
    let bytes = count.checked_mul(size_of::<E>()).ok_or_else(|| {
        Failure::new(SHMPI_E_INVALID, format!("{count} elements overflow a size"))
    })?;
    // SAFETY: the caller's contract: `bytes` readable bytes (unaligned
    // reads: the values are copied out, never borrowed as `E`).
    let values: Vec<E> = unsafe { elements(input, bytes)? };
    let result = t.allreduce(&values, op)?;
    // SAFETY: the caller's contract: `bytes` writable bytes; read after
    // the input was copied, so `output` may be `input`.
    let out = unsafe { buffer_arg(output.cast(), bytes, "output")? };
    out.copy_from_slice(bytemuck::cast_slice(&result));
    Ok(())
}

/// `bytes` bytes at `ptr` as owned elements (any alignment).
///
/// # Safety
///
/// `ptr` is NULL (with `bytes` 0) or readable for `bytes` bytes.
unsafe fn elements<E: Pod>(ptr: *const c_void, bytes: usize) -> Result<Vec<E>, Failure> {
    // SAFETY: the caller's contract.
    let raw = unsafe { bytes_arg(ptr.cast(), bytes, "input")? };
    Ok(raw
        .chunks_exact(size_of::<E>())
        .map(bytemuck::pod_read_unaligned)
        .collect())
}

/// Collects every member's `len` bytes at `input` at `root`, in rank
/// order, into `output` (`size × len` bytes; only the root's is used and
/// may be NULL elsewhere). Every member passes the same `len`; the root
/// reports `SHMPI_E_INVALID` for a contribution of another length.
///
/// # Safety
///
/// `input` is readable for `len` bytes; at the root, `output` writable
/// for `size × len` bytes.
pub(crate) unsafe fn gather<T: Transport>(
    t: &mut T,
    root: c_int,
    input: *const c_void,
    len: usize,
    output: *mut c_void,
) -> Result<(), Failure> {
    let root = root_of(t, root)?;
    // SAFETY: the caller's contract.
    let input = unsafe { bytes_arg(input.cast(), len, "input")? };
    let Some(parts) = t.gather(root, input)? else {
        return Ok(());
    };
    let total = len
        .checked_mul(parts.len())
        .ok_or_else(|| Failure::new(SHMPI_E_INVALID, "the gathered bytes overflow a size"))?;
    if let Some((rank, part)) = parts.iter().enumerate().find(|(_, p)| p.len() != len) {
        return Err(Failure::new(
            SHMPI_E_INVALID,
            format!(
                "gather: rank {rank} gave {} bytes, {len} expected",
                part.len()
            ),
        ));
    }
    // SAFETY: the caller's contract at the root.
    let out = unsafe { buffer_arg(output.cast(), total, "output")? };
    if len > 0 {
        for (part, slot) in parts.iter().zip(out.chunks_exact_mut(len)) {
            slot.copy_from_slice(part);
        }
    }
    Ok(())
}
