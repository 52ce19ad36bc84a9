//! Splitting work evenly: one home for the block partition every layer
//! uses (team threads, node ranks, distributed arrays, epoch arrays).

use std::ops::Range;

/// `len` items split into `parts` nearly equal ranges; the range of part
/// `index` (the first `len % parts` parts get one more item).
///
/// # Examples
///
/// ```
/// use shmpi::partition::split_range;
///
/// assert_eq!(split_range(10, 3, 0), 0..4);
/// assert_eq!(split_range(10, 3, 1), 4..7);
/// assert_eq!(split_range(10, 3, 2), 7..10);
/// assert_eq!(split_range(2, 4, 3), 2..2);
/// ```
pub fn split_range(len: usize, parts: usize, index: usize) -> Range<usize> {
    let parts = parts.max(1);
    let (base, extra) = (len / parts, len % parts);
    let start = index * base + index.min(extra);
    let end = start + base + usize::from(index < extra);
    start.min(len)..end.min(len)
}
