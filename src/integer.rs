//! The integers shmpi adds and compares remotely — in a distributed array
//! (`dsm`) and in MPI one-sided windows (`mpi::RmaWindow`). Below both, so
//! neither depends on the other for it.

use bytemuck::Pod;

/// Integers a distributed array can add and compare remotely: 1, 2, 4 or
/// 8 bytes, wrapping addition.
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
