//! The owner protocol's messages, and the owner's side of it: applying a
//! request to its block. Pure code over bytes — a request from a buggy or
//! hostile peer gets an error reply, never a panic (proptested, fuzzed).
//!
//! ```text
//! request: op u8 | 7 zero bytes | at u64 | count u64 | payload
//!   GET  count elements from `at`         payload: none
//!   PUT  count elements at `at`           payload: count × element
//!   FADD 1 element, wrapping add          payload: the addend
//!   CAS  1 element, compare and swap      payload: current, new
//! reply:   status u8 | 7 zero bytes | payload (GET: the elements;
//!          FADD, CAS: the previous value)
//! ```
//! Integers are little-endian; elements travel as their own bytes (all
//! ranks run one build on one architecture). FADD and CAS treat an element
//! of 1, 2, 4 or 8 bytes as a native-endian integer: two's-complement
//! addition is the same for signed and unsigned types.

/// Request operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Read elements.
    Get = 1,
    /// Write elements.
    Put = 2,
    /// Add to one integer element, returning its previous value.
    FetchAdd = 3,
    /// Compare one element and swap it if equal, returning the previous.
    CompareSwap = 4,
}

/// Reply statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Applied; the payload follows.
    Ok = 0,
    /// The range is outside the owner's block.
    OutOfRange = 1,
    /// The request is malformed (unknown op, wrong payload length).
    Malformed = 2,
    /// An integer operation on an element that is not 1, 2, 4 or 8 bytes.
    NotAnInteger = 3,
}

impl Status {
    /// The status of a reply's first byte (`None`: not a status).
    pub fn from_byte(b: u8) -> Option<Status> {
        [
            Status::Ok,
            Status::OutOfRange,
            Status::Malformed,
            Status::NotAnInteger,
        ]
        .into_iter()
        .find(|s| *s as u8 == b)
    }
}

/// Bytes before a request's payload.
pub const REQUEST_HEADER: usize = 24;
/// Bytes before a reply's payload.
pub const REPLY_HEADER: usize = 8;

/// A request for `count` elements at the owner's local index `at`.
pub fn request(op: Op, at: usize, count: usize, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(REQUEST_HEADER + payload.len());
    out.push(op as u8);
    out.extend_from_slice(&[0; 7]);
    out.extend_from_slice(&(at as u64).to_le_bytes());
    out.extend_from_slice(&(count as u64).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn reply(status: Status, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(REPLY_HEADER + payload.len());
    out.push(status as u8);
    out.extend_from_slice(&[0; 7]);
    out.extend_from_slice(payload);
    out
}

/// Splits a reply into its status and payload (`None`: too short or an
/// unknown status).
pub fn parse_reply(reply: &[u8]) -> Option<(Status, &[u8])> {
    let status = Status::from_byte(*reply.first()?)?;
    Some((status, reply.get(REPLY_HEADER..)?))
}

/// Applies `request` to `block` (`elem` bytes per element, `block.len()` a
/// multiple of it) and returns the reply. Never panics.
pub fn serve(block: &mut [u8], elem: usize, request: &[u8]) -> Vec<u8> {
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            request.get(at..at + 8)?.try_into().ok()?,
        ))
    };
    let (Some(&op), Some(at), Some(count)) = (request.first(), word(8), word(16)) else {
        return reply(Status::Malformed, &[]);
    };
    let payload = &request[REQUEST_HEADER.min(request.len())..];
    if elem == 0 {
        return reply(Status::Malformed, &[]);
    }
    // The byte range of `count` elements at `at`, if inside the block.
    let range = |count: u64| -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(at).ok()?.checked_mul(elem)?;
        let end = start.checked_add(usize::try_from(count).ok()?.checked_mul(elem)?)?;
        (end <= block.len()).then_some(start..end)
    };
    match op {
        op if op == Op::Get as u8 => match range(count) {
            Some(r) if payload.is_empty() => reply(Status::Ok, &block[r]),
            Some(_) => reply(Status::Malformed, &[]),
            None => reply(Status::OutOfRange, &[]),
        },
        op if op == Op::Put as u8 => match range(count) {
            Some(r) if payload.len() == r.len() => {
                block[r].copy_from_slice(payload);
                reply(Status::Ok, &[])
            }
            Some(_) => reply(Status::Malformed, &[]),
            None => reply(Status::OutOfRange, &[]),
        },
        op if op == Op::FetchAdd as u8 || op == Op::CompareSwap as u8 => {
            let operands = if op == Op::FetchAdd as u8 { 1 } else { 2 };
            if count != 1 || payload.len() != operands * elem {
                return reply(Status::Malformed, &[]);
            }
            if ![1, 2, 4, 8].contains(&elem) {
                return reply(Status::NotAnInteger, &[]);
            }
            let Some(r) = range(1) else {
                return reply(Status::OutOfRange, &[]);
            };
            let old = block[r.clone()].to_vec();
            if op == Op::FetchAdd as u8 {
                let new = wrapping_add_ne(&old, payload);
                block[r].copy_from_slice(&new[..elem]);
            } else if old == payload[..elem] {
                block[r].copy_from_slice(&payload[elem..]);
            }
            reply(Status::Ok, &old)
        }
        _ => reply(Status::Malformed, &[]),
    }
}

/// `a + b` for native-endian unsigned integers of `a.len()` (1, 2, 4 or 8)
/// bytes, wrapping; the sum's bytes.
fn wrapping_add_ne(a: &[u8], b: &[u8]) -> Vec<u8> {
    let widen = |x: &[u8]| {
        let mut w = [0u8; 8];
        if cfg!(target_endian = "little") {
            w[..x.len()].copy_from_slice(x);
        } else {
            w[8 - x.len()..].copy_from_slice(x);
        }
        u64::from_ne_bytes(w)
    };
    let sum = widen(a).wrapping_add(widen(b)).to_ne_bytes();
    if cfg!(target_endian = "little") {
        sum[..a.len()].to_vec()
    } else {
        sum[8 - a.len()..].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block_of(values: &[u64]) -> Vec<u8> {
        bytemuck::cast_slice(values).to_vec()
    }

    #[test]
    fn each_operation_applies_and_replies() {
        let mut b = block_of(&[10, 20, 30]);
        let r = serve(&mut b, 8, &request(Op::Get, 1, 2, &[]));
        assert_eq!(
            parse_reply(&r),
            Some((Status::Ok, &block_of(&[20, 30])[..]))
        );
        let r = serve(&mut b, 8, &request(Op::Put, 0, 1, &7u64.to_ne_bytes()));
        assert_eq!(parse_reply(&r), Some((Status::Ok, &[][..])));
        let r = serve(
            &mut b,
            8,
            &request(Op::FetchAdd, 2, 1, &u64::MAX.to_ne_bytes()),
        );
        assert_eq!(parse_reply(&r).unwrap().1, 30u64.to_ne_bytes());
        let cas = [29u64.to_ne_bytes(), 99u64.to_ne_bytes()].concat();
        let r = serve(&mut b, 8, &request(Op::CompareSwap, 2, 1, &cas));
        assert_eq!(parse_reply(&r).unwrap().1, 29u64.to_ne_bytes()); // swapped
        let r = serve(&mut b, 8, &request(Op::CompareSwap, 2, 1, &cas));
        assert_eq!(parse_reply(&r).unwrap().1, 99u64.to_ne_bytes()); // not swapped
        assert_eq!(b, block_of(&[7, 20, 99]));
    }

    #[test]
    fn small_integers_wrap_in_their_own_width() {
        let mut b = vec![0xFFu8, 0x01];
        let r = serve(&mut b, 1, &request(Op::FetchAdd, 0, 1, &[2]));
        assert_eq!(parse_reply(&r).unwrap().1, [0xFF]);
        assert_eq!(b, [0x01, 0x01]);
    }

    #[test]
    fn bad_requests_get_error_replies() {
        let mut b = block_of(&[1, 2]);
        let status = |b: &mut Vec<u8>, req: &[u8]| parse_reply(&serve(b, 8, req)).unwrap().0;
        assert_eq!(
            status(&mut b, &request(Op::Get, 1, 2, &[])),
            Status::OutOfRange
        );
        assert_eq!(
            status(&mut b, &request(Op::Get, u64::MAX as usize, 1, &[])),
            Status::OutOfRange
        );
        assert_eq!(
            status(&mut b, &request(Op::Put, 0, 1, &[1, 2, 3])),
            Status::Malformed
        );
        assert_eq!(status(&mut b, &[9; 30]), Status::Malformed);
        assert_eq!(status(&mut b, &[1, 0, 0]), Status::Malformed);
        let mut odd = vec![0u8; 6];
        let r = serve(&mut odd, 3, &request(Op::FetchAdd, 0, 1, &[1, 0, 0]));
        assert_eq!(parse_reply(&r).unwrap().0, Status::NotAnInteger);
        assert_eq!(b, block_of(&[1, 2]), "nothing changed");
    }

    proptest! {
        #[test]
        fn any_request_is_answered_without_panicking(
            elem in 0usize..10,
            len in 0usize..64,
            req in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut b = vec![0u8; len * elem.max(1)];
            let r = serve(&mut b, elem, &req);
            prop_assert!(parse_reply(&r).is_some());
        }

        #[test]
        fn get_returns_what_put_wrote(at in 0usize..16, vals in proptest::collection::vec(any::<u32>(), 0..16)) {
            let mut b = vec![0u8; 32 * 4];
            let bytes: Vec<u8> = bytemuck::cast_slice(&vals).to_vec();
            let r = serve(&mut b, 4, &request(Op::Put, at, vals.len(), &bytes));
            prop_assert_eq!(parse_reply(&r).unwrap().0, Status::Ok);
            let r = serve(&mut b, 4, &request(Op::Get, at, vals.len(), &[]));
            prop_assert_eq!(parse_reply(&r).unwrap().1, &bytes[..]);
        }
    }
}
