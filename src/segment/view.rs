//! Typed views of a segment's data: copy-in/copy-out, never a safe slice.
//!
//! Another process may write the memory at any moment, so a `&[T]` over it
//! would let the compiler assume values that can change under it. A
//! [`SharedSlice`] reads and writes single elements with volatile accesses
//! and copies whole ranges in and out; for synchronisation use atomics
//! ([`crate::segment::Segment::atomic_u64`]) or the primitives of
//! [`crate::sync`]. Element types are bytemuck `Pod`: every bit pattern is a
//! valid value, so whatever another process wrote can be read safely.

use std::marker::PhantomData;
use std::ptr::NonNull;

use bytemuck::Pod;

/// A typed window of `len` elements of `T` inside a segment.
///
/// # Examples
///
/// ```
/// use shmpi::segment::{Segment, SegmentName};
///
/// let seg = Segment::create(&SegmentName::unique("doc-slice"), 1024)?;
/// let v = seg.slice::<u32>(0, 16)?;
/// v.copy_from_slice(&[7; 16]);
/// v.set(3, 42);
/// assert_eq!(v.get(3), Some(42));
/// assert_eq!(v.to_vec().iter().sum::<u32>(), 7 * 15 + 42);
/// assert_eq!(v.get(16), None);
/// # Ok::<(), shmpi::Error>(())
/// ```
pub struct SharedSlice<'a, T: Pod> {
    ptr: NonNull<T>,
    len: usize,
    _segment: PhantomData<&'a T>,
}

impl<'a, T: Pod> SharedSlice<'a, T> {
    /// # Safety
    ///
    /// `ptr` must be aligned for `T` and valid for reads and writes of `len`
    /// elements for `'a` (inside a live mapping).
    pub(crate) unsafe fn from_raw(ptr: NonNull<T>, len: usize) -> Self {
        SharedSlice {
            ptr,
            len,
            _segment: PhantomData,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the view has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads element `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<T> {
        (i < self.len).then(|| {
            // SAFETY: i < len, so the element is inside the mapping
            // (constructor contract); T is Pod, so any bits are a valid T.
            unsafe { self.ptr.as_ptr().add(i).read_volatile() }
        })
    }

    /// Writes element `i`; returns false (and writes nothing) past the end.
    pub fn set(&self, i: usize, value: T) -> bool {
        if i >= self.len {
            return false;
        }
        // SAFETY: i < len, inside the mapping (constructor contract).
        unsafe { self.ptr.as_ptr().add(i).write_volatile(value) };
        true
    }

    /// Copies the whole view into `dst`.
    ///
    /// # Panics
    ///
    /// When `dst.len() != self.len()`, like `<[T]>::copy_from_slice`.
    pub fn copy_to_slice(&self, dst: &mut [T]) {
        assert_eq!(
            dst.len(),
            self.len,
            "SharedSlice::copy_to_slice: length mismatch"
        );
        // SAFETY: source valid for len reads (constructor contract), dst is a
        // distinct local buffer of len elements; T is Pod (Copy, any bits).
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), dst.as_mut_ptr(), self.len) };
    }

    /// Copies `src` over the whole view.
    ///
    /// # Panics
    ///
    /// When `src.len() != self.len()`.
    pub fn copy_from_slice(&self, src: &[T]) {
        assert_eq!(
            src.len(),
            self.len,
            "SharedSlice::copy_from_slice: length mismatch"
        );
        // SAFETY: destination valid for len writes (constructor contract);
        // src is caller memory, not inside the mapping's exclusive borrow.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr(), self.len) };
    }

    /// Copies the view into a new vector.
    pub fn to_vec(&self) -> Vec<T> {
        let mut v = vec![T::zeroed(); self.len];
        self.copy_to_slice(&mut v);
        v
    }

    /// Sets every element to `value`.
    pub fn fill(&self, value: T) {
        for i in 0..self.len {
            self.set(i, value);
        }
    }

    /// The first element's address, for code that must hand the memory to
    /// C or to MPI. Reads and writes through it are the caller's
    /// responsibility.
    pub fn as_ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for SharedSlice<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSlice")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}
