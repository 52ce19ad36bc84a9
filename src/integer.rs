//! The integers shmpi adds and compares remotely — in a distributed array
//! (`dsm`) and in MPI one-sided windows (`mpi::RmaWindow`). Below both, so
//! neither depends on the other for it.

use bytemuck::Pod;

/// Integers a distributed array can add and compare remotely: 1, 2, 4 or
/// 8 bytes, wrapping addition.
///
/// Between hosts, Open MPI's one-sided transport (UCX) has atomics for 4-
/// and 8-byte integers only: a 1- or 2-byte `fetch_add` or
/// `compare_exchange` on an `Rma` array there fails inside UCX (it logs
/// `invalid atomic operation datatype` and does not return). Count in 4 or
/// 8 bytes across hosts; the owner protocol has no such limit.
pub trait DsmInteger: Pod + Eq {
    /// `self + other`, wrapping.
    fn wrapping_add(self, other: Self) -> Self;
}

macro_rules! dsm_integer {
    ($($t:ty),*) => {$(
        impl DsmInteger for $t {
            fn wrapping_add(self, other: Self) -> Self {
                <$t>::wrapping_add(self, other)
            }
        }
    )*};
}
dsm_integer!(u8, i8, u16, i16, u32, i32, u64, i64);
