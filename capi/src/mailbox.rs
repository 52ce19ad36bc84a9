//! Mailbox groups through the C API, with zero-copy loans and received
//! references.

use std::ffi::{c_char, c_int, c_void};
use std::ptr::addr_of_mut;

use super::collective;
use super::{
    arg, buffer_arg, bytes_arg, call, finish_recv_into, give, millis, string_arg, take,
    write_envelope, write_opt, Failure, SHMPI_E_BUSY, SHMPI_E_INVALID,
};
use shmpi::mailbox::{Loan, MailboxGroup, MailboxOptions, RecvRef};
use shmpi::segment::SegmentName;
use shmpi::transport::{Source, Status, TagMatch, Wait};

/// Pass as a source to receive from any member.
pub const SHMPI_ANY_SOURCE: c_int = -1;
/// Pass as a tag to receive any (non-negative) tag.
pub const SHMPI_ANY_TAG: c_int = -1;

/// This process's endpoint of a mailbox group (opaque). Freed by
/// `shmpi_mailbox_free`, which leaves the group; the last member to leave
/// removes its name.
pub struct MailboxHandle {
    group: MailboxGroup,
    /// A loan or received reference borrows the group.
    busy: bool,
}

/// Space lent in a receiver's ring (opaque): write the message into the
/// buffer `shmpi_mailbox_loan` returned, then `shmpi_loan_commit` (sends)
/// or `shmpi_loan_abandon` (sends nothing) — exactly one of them, which
/// frees the handle. Until then the mailbox is busy (`SHMPI_E_BUSY`).
pub struct LoanHandle {
    loan: Loan<'static>,
    busy: *mut bool,
}

/// A message received by reference, possibly still in the sender's ring
/// (opaque). `shmpi_recvref_free` frees it and the ring space. Until then
/// the mailbox is busy (`SHMPI_E_BUSY`).
pub struct RecvRefHandle {
    msg: RecvRef<'static>,
    busy: *mut bool,
}

/// The group behind `mb`, unless a loan or reference borrows it.
///
/// # Safety
///
/// `mb` is NULL or a live handle; the returned borrow is the only use of
/// the group until it ends.
unsafe fn group<'a>(mb: *mut MailboxHandle) -> Result<&'a mut MailboxGroup, Failure> {
    if mb.is_null() {
        return Err(Failure::new(super::SHMPI_E_NULL, "mailbox is NULL"));
    }
    // SAFETY: live handle; only the `busy` field is read, through a raw
    // pointer, so an outstanding loan's borrow of `group` stays valid.
    if unsafe { *addr_of_mut!((*mb).busy) } {
        return Err(Failure::new(
            SHMPI_E_BUSY,
            "a loan or received reference on this mailbox is outstanding",
        ));
    }
    // SAFETY: live, and nothing else borrows the group (not busy).
    Ok(unsafe { &mut *addr_of_mut!((*mb).group) })
}

/// Marks the mailbox busy (a loan or reference now borrows its group) and
/// returns the flag, which the loan or reference clears when it ends.
///
/// # Safety
///
/// `mb` is a live handle.
unsafe fn mark_busy(mb: *mut MailboxHandle) -> *mut bool {
    // SAFETY: live handle; only the `busy` field is touched, through a raw
    // pointer, leaving the group's borrow intact.
    unsafe {
        let busy = addr_of_mut!((*mb).busy);
        *busy = true;
        busy
    }
}

pub(super) fn source_of(source: c_int) -> Result<Source, Failure> {
    match source {
        SHMPI_ANY_SOURCE => Ok(Source::Any),
        s if s >= 0 => Ok(Source::Rank(s as usize)),
        s => Err(Failure::new(SHMPI_E_INVALID, format!("source {s}"))),
    }
}

pub(super) fn tag_of(tag: c_int) -> Result<TagMatch, Failure> {
    match tag {
        SHMPI_ANY_TAG => Ok(TagMatch::Any),
        t if t >= 0 => Ok(TagMatch::Tag(t)),
        t => Err(Failure::new(SHMPI_E_INVALID, format!("tag {t}"))),
    }
}

/// Creates group `name` of `members` members, or joins it if it exists,
/// as member `id`. `pool`: bytes of each member's outgoing message pool,
/// its memory budget (0: 3 MiB; else at least one 128 KiB fragment, at most
/// 512): each member reserves `pool` plus about 2.1 KiB per other member.
/// `ephemeral`: the name is removed as soon as every member has joined.
///
/// `SHMPI_E_INVALID` for the caller's mistakes — an invalid name, `id`
/// not below `members`, 0 or more than 1024 members, a bad pool size, or a
/// member count other than the existing group's — with the argument named
/// in `shmpi_last_error()`; `SHMPI_E_CORRUPT` only for invalid bytes read
/// from shared memory. A call that fails leaves nothing in `/dev/shm`.
///
/// # Safety
///
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_create(
    name: *const c_char,
    id: usize,
    members: usize,
    pool: usize,
    ephemeral: c_int,
    out: *mut *mut MailboxHandle,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (name, out) = unsafe { (string_arg(name, "name")?, arg(out, "out")?) };
        let mut options = MailboxOptions {
            ephemeral: ephemeral != 0,
            ..MailboxOptions::default()
        };
        if pool != 0 {
            options.pool = pool;
        }
        let group = MailboxGroup::create_or_join(&parse_name(name)?, id, members, &options)?;
        give(out, MailboxHandle { group, busy: false });
        Ok(())
    })
}

fn parse_name(name: &str) -> Result<SegmentName, Failure> {
    SegmentName::new(name).map_err(|source| {
        shmpi::SegmentError::InvalidName {
            name: name.to_owned(),
            source,
        }
        .into()
    })
}

/// Joins the existing group `name` as member `id` (waits up to the join
/// timeout for its creator).
///
/// # Safety
///
/// As [`shmpi_mailbox_create`].
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_join(
    name: *const c_char,
    id: usize,
    out: *mut *mut MailboxHandle,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (name, out) = unsafe { (string_arg(name, "name")?, arg(out, "out")?) };
        let group = MailboxGroup::join(&parse_name(name)?, id, &MailboxOptions::default())?;
        give(out, MailboxHandle { group, busy: false });
        Ok(())
    })
}

/// Joins the group `shmpi run` (or a `GroupLaunch`) started this process
/// in: `SHMPI_GROUP`, `SHMPI_RANK`, `SHMPI_SIZE`.
///
/// # Safety
///
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_from_env(out: *mut *mut MailboxHandle) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { arg(out, "out")? };
        give(
            out,
            MailboxHandle {
                group: MailboxGroup::from_env()?,
                busy: false,
            },
        );
        Ok(())
    })
}

/// This member's id (`*id`) and the group's size (`*members`); either
/// out-pointer may be NULL.
///
/// # Safety
///
/// `mb` is NULL or a live handle; the out-pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_rank(
    mb: *mut MailboxHandle,
    id: *mut usize,
    members: *mut usize,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let g = unsafe { group(mb)? };
        // SAFETY: NULL or writable.
        unsafe {
            write_opt(id, g.rank());
            write_opt(members, g.members());
        }
        Ok(())
    })
}

/// Sends `len` bytes to member `dest` with `tag` (≥ 0), waiting while the
/// ring is full; messages larger than the ring stream through it.
///
/// # Safety
///
/// `mb` is NULL or a live handle; `data` is NULL (with `len` 0) or readable
/// for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_send(
    mb: *mut MailboxHandle,
    dest: usize,
    tag: c_int,
    data: *const c_void,
    len: usize,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { send(mb, dest, tag, data, len, None) }
}

/// `shmpi_mailbox_send` giving up after `timeout_ms` milliseconds
/// (`SHMPI_E_TIMEOUT`; nothing of the message was sent).
///
/// # Safety
///
/// As [`shmpi_mailbox_send`].
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_send_timeout(
    mb: *mut MailboxHandle,
    dest: usize,
    tag: c_int,
    data: *const c_void,
    len: usize,
    timeout_ms: u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { send(mb, dest, tag, data, len, Some(timeout_ms)) }
}

/// # Safety
///
/// As [`shmpi_mailbox_send`].
unsafe fn send(
    mb: *mut MailboxHandle,
    dest: usize,
    tag: c_int,
    data: *const c_void,
    len: usize,
    timeout_ms: Option<u64>,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (g, data) = unsafe { (group(mb)?, bytes_arg(data.cast(), len, "data")?) };
        match timeout_ms {
            None => g.send(dest, tag, data)?,
            Some(ms) => g.send_timeout(dest, tag, data, millis(ms))?,
        }
        Ok(())
    })
}

/// Receives the first message from `source` (or `SHMPI_ANY_SOURCE`) with
/// `tag` (or `SHMPI_ANY_TAG`) into `buf` (`cap` bytes). Writes its length,
/// source and tag through the out-pointers that are not NULL. A message
/// longer than `cap` is `SHMPI_E_TOO_LONG`, with `*len` set to its length,
/// and is kept for the next receive.
///
/// # Safety
///
/// `mb` is NULL or a live handle; `buf` is NULL (with `cap` 0) or writable
/// for `cap` bytes; the out-pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_recv(
    mb: *mut MailboxHandle,
    source: c_int,
    tag: c_int,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    from: *mut c_int,
    got_tag: *mut c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { recv(mb, (source, tag), (buf, cap), (len, from, got_tag), None) }
}

/// `shmpi_mailbox_recv` giving up after `timeout_ms` milliseconds
/// (`SHMPI_E_TIMEOUT`; nothing is consumed).
///
/// # Safety
///
/// As [`shmpi_mailbox_recv`].
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_recv_timeout(
    mb: *mut MailboxHandle,
    source: c_int,
    tag: c_int,
    buf: *mut c_void,
    cap: usize,
    len: *mut usize,
    from: *mut c_int,
    got_tag: *mut c_int,
    timeout_ms: u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe {
        recv(
            mb,
            (source, tag),
            (buf, cap),
            (len, from, got_tag),
            Some(timeout_ms),
        )
    }
}

/// # Safety
///
/// As [`shmpi_mailbox_recv`].
unsafe fn recv(
    mb: *mut MailboxHandle,
    (source, tag): (c_int, c_int),
    (buf, cap): (*mut c_void, usize),
    (len, from, got_tag): (*mut usize, *mut c_int, *mut c_int),
    timeout_ms: Option<u64>,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (g, buf) = unsafe { (group(mb)?, buffer_arg(buf.cast(), cap, "buffer")?) };
        let (source, tag) = (source_of(source)?, tag_of(tag)?);
        let result = match timeout_ms {
            None => g.recv_into(source, tag, buf, Wait::Forever),
            Some(ms) => g.recv_into(source, tag, buf, millis(ms)),
        };
        let received = result.map(|(source, tag, len)| Status { source, tag, len });
        // SAFETY: the out-pointers are NULL or writable (caller's contract).
        unsafe { finish_recv_into(received, (len, from, got_tag)) }
    })
}

/// Waits until a message from `source` (or `SHMPI_ANY_SOURCE`) with `tag`
/// (or `SHMPI_ANY_TAG`) has arrived and reports its length, source and tag
/// through the out-pointers that are not NULL, without receiving it: the
/// next receive that matches it gets it. Size a buffer with it.
///
/// # Safety
///
/// `mb` is NULL or a live handle; the out-pointers are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_probe(
    mb: *mut MailboxHandle,
    source: c_int,
    tag: c_int,
    len: *mut usize,
    from: *mut c_int,
    got_tag: *mut c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { probe(mb, (source, tag), (len, from, got_tag), Wait::Forever) }
}

/// `shmpi_mailbox_probe` giving up after `timeout_ms` milliseconds
/// (`SHMPI_E_TIMEOUT`); 0 looks once without waiting
/// (`SHMPI_E_WOULD_BLOCK` when nothing is there).
///
/// # Safety
///
/// As [`shmpi_mailbox_probe`].
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_probe_timeout(
    mb: *mut MailboxHandle,
    source: c_int,
    tag: c_int,
    len: *mut usize,
    from: *mut c_int,
    got_tag: *mut c_int,
    timeout_ms: u64,
) -> c_int {
    let wait = match timeout_ms {
        0 => Wait::Now,
        ms => Wait::For(millis(ms)),
    };
    // SAFETY: forwarded contract.
    unsafe { probe(mb, (source, tag), (len, from, got_tag), wait) }
}

/// # Safety
///
/// As [`shmpi_mailbox_probe`].
unsafe fn probe(
    mb: *mut MailboxHandle,
    (source, tag): (c_int, c_int),
    (len, from, got_tag): (*mut usize, *mut c_int, *mut c_int),
    wait: Wait,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let g = unsafe { group(mb)? };
        let st = g.probe(source_of(source)?, tag_of(tag)?, wait)?;
        // SAFETY: NULL or writable.
        unsafe { write_envelope((len, from, got_tag), st) };
        Ok(())
    })
}

/// Lends `len` bytes in member `dest`'s ring for a message with `tag`,
/// written in place (zero copy): `*buf` is where to write (up to
/// `shmpi_mailbox_max_loan` bytes). Then `shmpi_loan_commit` or
/// `shmpi_loan_abandon`.
///
/// # Safety
///
/// `mb` is NULL or a live handle; `buf` and `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_loan(
    mb: *mut MailboxHandle,
    dest: usize,
    tag: c_int,
    len: usize,
    buf: *mut *mut c_void,
    out: *mut *mut LoanHandle,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (buf, out) = unsafe { (arg(buf, "buf")?, arg(out, "out")?) };
        // SAFETY: as above.
        let g = unsafe { group(mb)? };
        let mut loan = g.loan(dest, tag, len)?;
        *buf = loan.as_mut_ptr().cast();
        // SAFETY: the loan borrows the group inside the heap-allocated
        // handle `mb`, which the C contract keeps alive until the loan ends
        // (commit/abandon); `busy` refuses every other use of the group
        // meanwhile, so the borrow is exclusive as Loan assumes.
        let loan = unsafe { std::mem::transmute::<Loan<'_>, Loan<'static>>(loan) };
        // SAFETY: a live handle (checked by `group` above).
        let busy = unsafe { mark_busy(mb) };
        give(out, LoanHandle { loan, busy });
        Ok(())
    })
}

/// The largest message a loan can hold on this group, through `len`.
///
/// # Safety
///
/// `mb` is NULL or a live handle; `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_max_loan(mb: *mut MailboxHandle, len: *mut usize) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let g = unsafe { group(mb)? };
        // SAFETY: NULL-checked; writable (caller's contract).
        unsafe { super::out(len, "len", g.max_record_payload()) }
    })
}

/// Sends the loaned message and frees the loan.
///
/// # Safety
///
/// `loan` is NULL or a live loan, not used again.
#[no_mangle]
pub unsafe extern "C" fn shmpi_loan_commit(loan: *mut LoanHandle) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let h = unsafe { take(loan) }
            .ok_or_else(|| Failure::new(super::SHMPI_E_NULL, "loan is NULL"))?;
        let LoanHandle { loan, busy } = *h;
        loan.commit();
        // SAFETY: the mailbox outlives its loans (C contract); the loan's
        // borrow ended with commit.
        unsafe { *busy = false };
        Ok(())
    })
}

/// Abandons the loan: nothing is sent. Frees the loan (NULL: nothing).
///
/// # Safety
///
/// `loan` is NULL or a live loan, not used again.
#[no_mangle]
pub unsafe extern "C" fn shmpi_loan_abandon(loan: *mut LoanHandle) -> c_int {
    // SAFETY: the caller's contract.
    if let Some(h) = unsafe { take(loan) } {
        // The reserved space is never published: nothing is sent.
        let LoanHandle { loan: _, busy } = *h;
        // SAFETY: as in shmpi_loan_commit.
        unsafe { *busy = false };
    }
    super::SHMPI_OK
}

/// Receives by reference: `*data` and `*len` describe the message, in
/// place in the sender's ring when it fits one record. `shmpi_recvref_free`
/// frees the space. Source and tag as in `shmpi_mailbox_recv`.
///
/// # Safety
///
/// `mb` is NULL or a live handle; the out-pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_recv_ref(
    mb: *mut MailboxHandle,
    source: c_int,
    tag: c_int,
    data: *mut *const c_void,
    len: *mut usize,
    from: *mut c_int,
    got_tag: *mut c_int,
    out: *mut *mut RecvRefHandle,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        let (data, out) = unsafe { (arg(data, "data")?, arg(out, "out")?) };
        // SAFETY: as above.
        let g = unsafe { group(mb)? };
        let msg = g.recv_ref(source_of(source)?, tag_of(tag)?, Wait::Forever)?;
        *data = msg.as_ptr().cast();
        let status = Status {
            source: msg.source(),
            tag: msg.tag(),
            len: msg.len(),
        };
        // SAFETY: NULL or writable.
        unsafe { write_envelope((len, from, got_tag), status) };
        // SAFETY: as for loans: the handle outlives the reference and
        // `busy` keeps the borrow exclusive.
        let msg = unsafe { std::mem::transmute::<RecvRef<'_>, RecvRef<'static>>(msg) };
        // SAFETY: a live handle (checked by `group` above).
        let busy = unsafe { mark_busy(mb) };
        give(out, RecvRefHandle { msg, busy });
        Ok(())
    })
}

/// Frees a received reference and releases its ring space. NULL: nothing.
///
/// # Safety
///
/// `r` is NULL or a live reference, not used again (nor its data).
#[no_mangle]
pub unsafe extern "C" fn shmpi_recvref_free(r: *mut RecvRefHandle) -> c_int {
    // SAFETY: the caller's contract.
    if let Some(h) = unsafe { take(r) } {
        let RecvRefHandle { msg, busy } = *h;
        drop(msg);
        // SAFETY: as in shmpi_loan_commit.
        unsafe { *busy = false };
    }
    super::SHMPI_OK
}

/// Leaves the group and frees the handle (NULL: nothing). A loan or
/// reference still outstanding is `SHMPI_E_BUSY` and nothing is freed.
///
/// # Safety
///
/// `mb` is NULL or a live handle, not used again after success.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_free(mb: *mut MailboxHandle) -> c_int {
    call(|| {
        if mb.is_null() {
            return Ok(());
        }
        // SAFETY: checks `busy` only (see `group`).
        unsafe { group(mb)? };
        // SAFETY: live, not busy; freed once.
        drop(unsafe { take(mb) });
        Ok(())
    })
}

/// A barrier of every member of the group. Collective.
///
/// # Safety
///
/// `mb` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_barrier(mb: *mut MailboxHandle) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        collective::barrier(unsafe { group(mb)? })
    })
}

/// Makes every member's `len` bytes at `buf` equal to member `root`'s.
/// Every member passes the same `len` (one whose `len` differs from the
/// root's gets `SHMPI_E_INVALID`, its buffer unchanged). Collective.
///
/// # Safety
///
/// `mb` is NULL or a live handle; `buf` NULL (with `len` 0) or writable
/// for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_broadcast(
    mb: *mut MailboxHandle,
    root: c_int,
    buf: *mut c_void,
    len: usize,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        unsafe { collective::broadcast(group(mb)?, root, buf, len) }
    })
}

/// Combines every member's `count` elements of type `elem_type` (`SHMPI_INT8`
/// … `SHMPI_DOUBLE`) at `input` element-wise with `op` (`SHMPI_SUM` …
/// `SHMPI_BXOR`, in rank order); every member gets the result at `output`,
/// which may be `input`. Collective.
///
/// # Safety
///
/// `mb` is NULL or a live handle; `input` readable and `output` writable
/// for `count` elements (NULL only with `count` 0).
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_allreduce(
    mb: *mut MailboxHandle,
    input: *const c_void,
    output: *mut c_void,
    count: usize,
    elem_type: c_int,
    op: c_int,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        unsafe { collective::allreduce(group(mb)?, input, output, count, elem_type, op) }
    })
}

/// Collects every member's `len` bytes at `input` at member `root`, in
/// rank order, into `output` (`members × len` bytes at the root; ignored,
/// and may be NULL, elsewhere). Collective.
///
/// # Safety
///
/// `mb` is NULL or a live handle; `input` readable for `len` bytes; at
/// the root `output` writable for `members × len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shmpi_mailbox_gather(
    mb: *mut MailboxHandle,
    root: c_int,
    input: *const c_void,
    len: usize,
    output: *mut c_void,
) -> c_int {
    call(|| {
        // SAFETY: the caller's contract.
        unsafe { collective::gather(group(mb)?, root, input, len, output) }
    })
}
