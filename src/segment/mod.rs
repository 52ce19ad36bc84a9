//! Named POSIX shared-memory segments (`shm_open(3)` + `mmap(2)`).
//!
//! A [`Segment`] is a POSIX shared-memory object mapped into this process.
//! Segments made by shmpi start with a validated [header](HeaderFields):
//! the creator makes the object exclusively (`O_CREAT | O_EXCL`, mode 0600
//! unless asked otherwise), reserves its pages with `posix_fallocate` (so a
//! full `/dev/shm` is an error at creation, not a `SIGBUS` later), writes the
//! header and sets its `ready` word last; an opener validates the header
//! before it trusts anything. [`Segment::open_raw`] maps any object without a
//! header (one made by C code or another library).
//!
//! Every process that maps a segment holds a shared OFD lock on its
//! presence byte ([`lock`]), so tools can tell whether anyone alive has it
//! open. The creator unlinks the name on drop unless told to
//! [persist](SegmentBuilder::persist); openers never unlink.
//!
//! # Trust
//!
//! The memory may be written at any time by any process that can open the
//! object. Data is reached only through raw pointers, atomics and
//! copy-in/copy-out [`SharedSlice`]s. One hazard remains that no mapping can
//! prevent: a process with write access that shrinks the object
//! (`ftruncate`) makes later accesses past the new end raise `SIGBUS`. The
//! default mode 0600 limits that power to the same user.

pub(crate) mod epoch;
mod error;
mod header;
pub mod lock;
mod name;
mod view;

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::{fchmod, fstat, Mode};

pub use epoch::{EpochArray, SegmentEpoch};
pub use error::{NameError, PlacementError, SegmentError, SpaceResource};
pub(crate) use header::RawHeader;
pub use header::{
    HeaderError, HeaderFields, SegmentKind, HEADER_SIZE, LAYOUT_VERSION, MAGIC, READY,
};
pub use name::{SegmentName, MAX_NAME_LEN, UNIQUE_PREFIX};
pub use view::SharedSlice;

use crate::sync::wait::{Waiter, SETUP_POLL};

/// Default permission bits of a new segment: owner read/write only.
pub const DEFAULT_MODE: u32 = 0o600;

/// Default time an opener waits for a creator to mark a segment ready.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Options for creating or opening a segment; see [`Segment::builder`].
#[derive(Debug, Clone)]
pub struct SegmentBuilder {
    name: String,
    size: usize,
    mode: u32,
    kind: SegmentKind,
    persist: bool,
    allow_foreign_owner: bool,
    expected_kind: Option<SegmentKind>,
    ready_timeout: Duration,
}

impl SegmentBuilder {
    /// Size of the data region in bytes (the header comes on top).
    pub fn size(mut self, bytes: usize) -> Self {
        self.size = bytes;
        self
    }

    /// Permission bits for a new object (default [`DEFAULT_MODE`], 0600).
    /// Applied with `fchmod`, so the process umask does not narrow it.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// What the new segment holds (default [`SegmentKind::DATA`]).
    pub fn kind(mut self, kind: SegmentKind) -> Self {
        self.kind = kind;
        self
    }

    /// Keep the name after the creator drops the segment (default: the
    /// creator unlinks on drop).
    pub fn persist(mut self, persist: bool) -> Self {
        self.persist = persist;
        self
    }

    /// Trust an object owned by another uid when opening (default: refuse
    /// with [`SegmentError::ForeignOwner`], since a planted object is not to
    /// be trusted).
    pub fn allow_foreign_owner(mut self, allow: bool) -> Self {
        self.allow_foreign_owner = allow;
        self
    }

    /// Refuse to open a segment of another kind
    /// ([`HeaderError::WrongKind`]).
    pub fn expect_kind(mut self, kind: SegmentKind) -> Self {
        self.expected_kind = Some(kind);
        self
    }

    /// How long [`open`](Self::open) waits for a creator to finish
    /// (default [`DEFAULT_READY_TIMEOUT`]).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Creates the segment exclusively; see [`Segment::create`].
    ///
    /// # Errors
    ///
    /// As [`Segment::create`].
    pub fn create(self) -> Result<Segment, SegmentError> {
        let name = validated(&self.name)?;
        Segment::create_with(name, &self, |_| Ok::<(), SegmentError>(()))
    }

    /// Creates the segment and runs `init` on it BEFORE marking it ready:
    /// an opener waits (up to its ready timeout) until `init` has finished,
    /// so it never sees a half-built layout (the creator lays out its
    /// objects, then opens the segment up). When `init` fails the name is
    /// removed and its error returned.
    ///
    /// # Errors
    ///
    /// As [`Segment::create`] (converted into `init`'s error type), or
    /// `init`'s error.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmpi::segment::{Segment, SegmentName};
    /// use shmpi::sync::Semaphore;
    ///
    /// let seg = Segment::builder(SegmentName::unique("doc-init").as_str())
    ///     .size(Semaphore::SIZE)
    ///     .create_init(|seg| -> shmpi::Result<()> {
    ///         Semaphore::create_in(seg, 0, 1)?;
    ///         Ok(())
    ///     })?;
    /// assert_eq!(Semaphore::open_in(&seg, 0)?.value()?, 1);
    /// # Ok::<(), shmpi::Error>(())
    /// ```
    pub fn create_init<E: From<SegmentError>>(
        self,
        init: impl FnMut(&Segment) -> Result<(), E>,
    ) -> Result<Segment, E> {
        let name = validated(&self.name)?;
        Segment::create_with(name, &self, init)
    }

    /// Opens a shmpi segment; see [`Segment::open`].
    ///
    /// # Errors
    ///
    /// As [`Segment::open`].
    pub fn open(self) -> Result<Segment, SegmentError> {
        let name = validated(&self.name)?;
        Segment::open_with(name, &self)
    }

    /// Maps an object without a shmpi header; see [`Segment::open_raw`].
    ///
    /// # Errors
    ///
    /// As [`Segment::open_raw`].
    pub fn open_raw(self) -> Result<Segment, SegmentError> {
        let name = validated(&self.name)?;
        Segment::open_raw_with(name, &self)
    }
}

fn validated(name: &str) -> Result<SegmentName, SegmentError> {
    SegmentName::new(name).map_err(|source| SegmentError::InvalidName {
        name: name.to_owned(),
        source,
    })
}

/// A mapped POSIX shared-memory object.
///
/// # Examples
///
/// ```
/// use shmpi::segment::{Segment, SegmentName};
///
/// let name = SegmentName::unique("doc");
/// let owner = Segment::create(&name, 4096)?;          // mode 0600, exclusive
/// owner.slice::<f64>(0, 4)?.copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
///
/// let other = Segment::open(&name)?;                   // validates the header
/// assert_eq!(other.slice::<f64>(0, 4)?.to_vec(), [1.0, 2.0, 3.0, 4.0]);
/// drop(other);
/// drop(owner);                                         // the creator unlinks
/// assert!(Segment::open(&name).is_err());
/// # Ok::<(), shmpi::Error>(())
/// ```
pub struct Segment {
    name: SegmentName,
    file: File,
    map: MmapRaw,
    data_offset: usize,
    data_len: usize,
    header: Option<HeaderFields>,
    unlink_on_drop: bool,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("len", &self.data_len)
            .field("kind", &self.kind())
            .field("creator", &self.unlink_on_drop)
            .finish()
    }
}

impl Segment {
    /// Starts a builder for `name` (validated when the builder finishes).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmpi::segment::{Segment, SegmentName};
    ///
    /// let seg = Segment::builder(SegmentName::unique("doc-builder").as_str())
    ///     .size(1 << 16)
    ///     .mode(0o600)
    ///     .create()?;
    /// assert_eq!(seg.len(), 1 << 16);
    /// # Ok::<(), shmpi::Error>(())
    /// ```
    pub fn builder(name: &str) -> SegmentBuilder {
        SegmentBuilder {
            name: name.to_owned(),
            size: 0,
            mode: DEFAULT_MODE,
            kind: SegmentKind::DATA,
            persist: false,
            allow_foreign_owner: false,
            expected_kind: None,
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    /// Creates a segment with `size` data bytes, exclusively and with mode
    /// 0600. The creator unlinks the name when the segment is dropped.
    ///
    /// # Errors
    ///
    /// [`SegmentError::ZeroSize`], [`SegmentError::TooLarge`],
    /// [`SegmentError::NoSpace`] (checked against `/dev/shm`'s free space and
    /// available memory first, then by `posix_fallocate`; nothing is left
    /// behind), [`SegmentError::AlreadyExists`],
    /// [`SegmentError::PermissionDenied`], [`SegmentError::Os`].
    pub fn create(name: &SegmentName, size: usize) -> Result<Segment, SegmentError> {
        Segment::builder(name.as_str()).size(size).create()
    }

    /// Opens a segment made by shmpi and validates its header, waiting up to
    /// [`DEFAULT_READY_TIMEOUT`] for a creator that is still initialising.
    ///
    /// # Errors
    ///
    /// [`SegmentError::NotFound`], [`SegmentError::PermissionDenied`],
    /// [`SegmentError::ForeignOwner`], [`SegmentError::Truncated`],
    /// [`SegmentError::Header`] (bad magic, version, kind, size),
    /// [`SegmentError::NotReady`], [`SegmentError::Os`].
    pub fn open(name: &SegmentName) -> Result<Segment, SegmentError> {
        Segment::builder(name.as_str()).open()
    }

    /// Maps any POSIX shared-memory object, without a shmpi header: the whole
    /// object is the data region. Used for objects made by C programs or
    /// other libraries. Never unlinks.
    ///
    /// # Errors
    ///
    /// [`SegmentError::NotFound`], [`SegmentError::PermissionDenied`],
    /// [`SegmentError::ForeignOwner`], [`SegmentError::Truncated`] for an
    /// empty object, [`SegmentError::Os`].
    pub fn open_raw(name: &SegmentName) -> Result<Segment, SegmentError> {
        Segment::builder(name.as_str()).open_raw()
    }

    /// Removes a name (`shm_unlink`). Processes that have it mapped keep
    /// their memory.
    ///
    /// # Errors
    ///
    /// [`SegmentError::NotFound`], [`SegmentError::PermissionDenied`],
    /// [`SegmentError::Os`].
    pub fn remove(name: &SegmentName) -> Result<(), SegmentError> {
        shm_unlink(name.as_str()).map_err(|e| os_error(name, "shm_unlink", e))
    }

    /// True when some process (this one included) has the segment open
    /// through shmpi: its presence byte is locked. Takes no lock itself.
    ///
    /// # Errors
    ///
    /// [`SegmentError::NotFound`] and other open errors.
    pub fn in_use(name: &SegmentName) -> Result<bool, SegmentError> {
        let fd = shm_open(
            name.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| os_error(name, "shm_open", e))?;
        lock::is_held_by_other(&fd, lock::LockKind::Exclusive, lock::PRESENCE_BYTE)
            .map_err(|e| os_error(name, "fcntl(F_OFD_GETLK)", e))
    }

    /// Removes `name` if no process has it open through shmpi (what
    /// `shmpi gc` does for each candidate): takes the presence byte
    /// EXCLUSIVELY — so nobody can open it meanwhile, and nobody who has
    /// it open lets us — checks that the name still refers to the object
    /// it locked, then unlinks. Returns false, removing nothing, when the
    /// segment is in use, or the name went away or now names another
    /// object.
    ///
    /// Races: creators publish complete objects (an unnamed file linked
    /// under the name last), so a segment being created is never seen
    /// here; an opener that finds the byte taken retries, then finds the
    /// name gone.
    ///
    /// # Errors
    ///
    /// [`SegmentError::NotFound`], [`SegmentError::PermissionDenied`] (an
    /// object this process cannot open for writing), [`SegmentError::Os`].
    ///
    /// # Examples
    ///
    /// ```
    /// use shmpi::segment::{Segment, SegmentName};
    ///
    /// let name = SegmentName::unique("doc-gc");
    /// let seg = Segment::builder(name.as_str()).size(64).persist(true).create()?;
    /// assert!(!Segment::remove_if_unused(&name)?, "its creator has it open");
    /// drop(seg);
    /// assert!(Segment::remove_if_unused(&name)?);
    /// # Ok::<(), shmpi::Error>(())
    /// ```
    pub fn remove_if_unused(name: &SegmentName) -> Result<bool, SegmentError> {
        let fd = shm_open(
            name.as_str(),
            OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| os_error(name, "shm_open", e))?;
        let locked = lock::try_lock(&fd, lock::LockKind::Exclusive, lock::PRESENCE_BYTE)
            .map_err(|e| os_error(name, "fcntl(F_OFD_SETLK)", e))?;
        if !locked {
            return Ok(false);
        }
        let held = fstat(&fd).map_err(|e| os_error(name, "fstat", e))?;
        match nix::sys::stat::stat(&shm_path(name)) {
            Ok(now) if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino) => {}
            Ok(_) | Err(Errno::ENOENT) => return Ok(false),
            Err(e) => return Err(os_error(name, "stat", e)),
        }
        // `fd` (and with it the exclusive lock) lives until after the unlink.
        let removed = match shm_unlink(name.as_str()) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(os_error(name, "shm_unlink", e)),
        };
        drop(fd);
        removed
    }

    fn create_with<E: From<SegmentError>>(
        name: SegmentName,
        opts: &SegmentBuilder,
        mut init: impl FnMut(&Segment) -> Result<(), E>,
    ) -> Result<Segment, E> {
        if opts.size == 0 {
            return Err(SegmentError::ZeroSize.into());
        }
        let limit = isize::MAX as u64 - HEADER_SIZE as u64;
        let requested = opts.size as u64;
        if requested > limit {
            return Err(SegmentError::TooLarge { requested, limit }.into());
        }
        let total = requested + HEADER_SIZE as u64;
        // A cheap early answer for the common race (symmetric processes
        // that create-or-join); `publish` is the exclusive check.
        if shm_path(&name).exists() {
            return Err(SegmentError::AlreadyExists {
                name: name.to_string(),
            }
            .into());
        }
        check_space(total)?;

        // Built unnamed, published complete: nobody — an opener, `shmpi gc`
        // — ever sees a half-made object under the name, and a failure at
        // any step leaves nothing behind.
        let fd = create_unnamed(&name, opts.mode)?;
        fchmod(&fd, Mode::from_bits_truncate(opts.mode))
            .map_err(|e| os_error(&name, "fchmod", e))?;
        take_presence_lock(&name, &fd)?;
        reserve(&name, &fd, total)?;
        let file = File::from(fd);
        let map = map(&name, &file, total)?;
        let header = HeaderFields::new_ready(
            opts.kind,
            total,
            std::process::id(),
            nix::unistd::geteuid().as_raw(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        );
        // SAFETY: the mapping is `total >= HEADER_SIZE` bytes long and page
        // aligned, so a RawHeader (atomics only, align 8) fits at its start;
        // the reference lives no longer than `map`.
        let raw = unsafe { &*map.as_ptr().cast::<RawHeader>() };
        raw.write_fields(&header);
        let mut seg = Segment {
            name,
            file,
            map,
            data_offset: HEADER_SIZE,
            data_len: opts.size,
            header: Some(header),
            unlink_on_drop: false,
        };
        init(&seg)?;
        // SAFETY: as above; the mapping is still the one the header is in.
        unsafe { &*seg.map.as_ptr().cast::<RawHeader>() }.set_ready();
        publish(&seg.name, &seg.file)?;
        seg.unlink_on_drop = !opts.persist;
        Ok(seg)
    }

    fn open_with(name: SegmentName, opts: &SegmentBuilder) -> Result<Segment, SegmentError> {
        let fd = open_present(&name, opts)?;
        let file = File::from(fd);
        let start = Instant::now();
        let mut waiter = Waiter::new(&SETUP_POLL, None);
        let mut wait = |last: Option<u64>| -> Result<(), SegmentError> {
            if start.elapsed() >= opts.ready_timeout {
                return Err(match last {
                    Some(actual) => SegmentError::Truncated {
                        name: name.to_string(),
                        actual,
                        needed: HEADER_SIZE as u64,
                    },
                    None => SegmentError::NotReady {
                        name: name.to_string(),
                        waited: opts.ready_timeout,
                    },
                });
            }
            waiter.idle();
            Ok(())
        };
        // shmpi publishes whole objects, another program may not: wait for
        // the object to hold at least a header.
        let actual = loop {
            let size = object_size(&name, &file)?;
            if size >= HEADER_SIZE as u64 {
                break size;
            }
            wait(Some(size))?;
        };
        let map = map(&name, &file, actual)?;
        // SAFETY: the mapping holds at least HEADER_SIZE bytes and is page
        // aligned; RawHeader is atomics only, valid for any bit pattern.
        let raw = unsafe { &*map.as_ptr().cast::<RawHeader>() };
        let header = loop {
            let h = raw.snapshot();
            if h.ready == READY || !h.may_become_ready() {
                break h;
            }
            wait(None)?;
        };
        let (data_offset, data_len) =
            header
                .validate(actual, opts.expected_kind)
                .map_err(|source| SegmentError::Header {
                    name: name.to_string(),
                    source,
                })?;
        Ok(Segment {
            name,
            file,
            map,
            data_offset,
            data_len,
            header: Some(header),
            unlink_on_drop: false,
        })
    }

    fn open_raw_with(name: SegmentName, opts: &SegmentBuilder) -> Result<Segment, SegmentError> {
        let fd = open_present(&name, opts)?;
        let file = File::from(fd);
        let actual = object_size(&name, &file)?;
        if actual == 0 {
            return Err(SegmentError::Truncated {
                name: name.to_string(),
                actual,
                needed: 1,
            });
        }
        let map = map(&name, &file, actual)?;
        Ok(Segment {
            name,
            file,
            data_offset: 0,
            data_len: map.len(),
            map,
            header: None,
            unlink_on_drop: false,
        })
    }

    /// The segment's name.
    pub fn name(&self) -> &SegmentName {
        &self.name
    }

    /// Bytes in the data region (after the header).
    pub fn len(&self) -> usize {
        self.data_len
    }

    /// True when the data region is empty (never, for a valid segment).
    pub fn is_empty(&self) -> bool {
        self.data_len == 0
    }

    /// The header read when the segment was created or opened (`None` for
    /// [`open_raw`](Self::open_raw)).
    pub fn header(&self) -> Option<&HeaderFields> {
        self.header.as_ref()
    }

    /// What the segment holds (`None` for a raw mapping).
    pub fn kind(&self) -> Option<SegmentKind> {
        self.header.map(|h| SegmentKind(h.kind))
    }

    /// True when this handle created the segment and will unlink it on drop.
    pub fn unlinks_on_drop(&self) -> bool {
        self.unlink_on_drop
    }

    /// Keep the name when this handle is dropped.
    pub fn persist(&mut self) {
        self.unlink_on_drop = false;
    }

    /// Removes the name now; the memory stays mapped for everyone who has
    /// it (the "ephemeral" mode: nothing can leak once all have attached).
    ///
    /// # Errors
    ///
    /// As [`Segment::remove`].
    pub fn unlink(&mut self) -> Result<(), SegmentError> {
        self.unlink_on_drop = false;
        Segment::remove(&self.name)
    }

    /// The first byte of the data region. Reading and writing through it is
    /// the caller's responsibility (another process may write concurrently).
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: data_offset <= mapping length (validated or set by us).
        unsafe { self.map.as_mut_ptr().add(self.data_offset) }
    }

    /// The open descriptor (for OFD locks and `fstat`).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Checks that `size` bytes aligned to `align` fit at `offset` of the
    /// data region and returns their address.
    ///
    /// # Errors
    ///
    /// [`PlacementError`] when they do not.
    pub fn place(
        &self,
        what: &'static str,
        offset: usize,
        size: usize,
        align: usize,
    ) -> Result<NonNull<u8>, PlacementError> {
        let err = PlacementError {
            what,
            offset,
            size,
            align,
            segment_len: self.data_len,
        };
        let end = offset.checked_add(size).ok_or(err)?;
        if end > self.data_len || !align.is_power_of_two() {
            return Err(err);
        }
        // SAFETY: offset + size <= data_len, so the address is inside the
        // mapping (or one past its end when size is 0).
        let ptr = unsafe { self.as_ptr().add(offset) };
        if !(ptr as usize).is_multiple_of(align) {
            return Err(err);
        }
        NonNull::new(ptr).ok_or(err)
    }

    /// A typed view of `len` elements of `T` at byte `offset` of the data.
    ///
    /// # Errors
    ///
    /// [`PlacementError`] when the view does not fit or `offset` is not
    /// aligned for `T`.
    pub fn slice<T: bytemuck::Pod>(
        &self,
        offset: usize,
        len: usize,
    ) -> Result<SharedSlice<'_, T>, PlacementError> {
        let size = len
            .checked_mul(std::mem::size_of::<T>())
            .ok_or(PlacementError {
                what: "typed slice",
                offset,
                size: usize::MAX,
                align: std::mem::align_of::<T>(),
                segment_len: self.data_len,
            })?;
        let ptr = self.place("typed slice", offset, size, std::mem::align_of::<T>())?;
        // SAFETY: `place` checked bounds and alignment; the view borrows
        // `self`, so the mapping outlives it.
        Ok(unsafe { SharedSlice::from_raw(ptr.cast(), len) })
    }

    /// A shared atomic `u32` at byte `offset` of the data region.
    ///
    /// # Errors
    ///
    /// [`PlacementError`] when it does not fit or is misaligned.
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32, PlacementError> {
        let ptr = self.place("AtomicU32", offset, 4, 4)?;
        // SAFETY: in bounds and aligned (checked); atomics are valid for any
        // bit pattern and may be shared with other processes.
        Ok(unsafe { &*ptr.as_ptr().cast::<AtomicU32>() })
    }

    /// A shared atomic `u64` at byte `offset` of the data region.
    ///
    /// # Errors
    ///
    /// [`PlacementError`] when it does not fit or is misaligned.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::Ordering;
    /// use shmpi::segment::{Segment, SegmentName};
    ///
    /// let seg = Segment::create(&SegmentName::unique("doc-atomic"), 64)?;
    /// let counter = seg.atomic_u64(8)?;
    /// counter.fetch_add(5, Ordering::AcqRel);
    /// assert_eq!(counter.load(Ordering::Acquire), 5);
    /// assert!(seg.atomic_u64(60).is_err()); // does not fit
    /// # Ok::<(), shmpi::Error>(())
    /// ```
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64, PlacementError> {
        let ptr = self.place("AtomicU64", offset, 8, 8)?;
        // SAFETY: as in `atomic_u32`.
        Ok(unsafe { &*ptr.as_ptr().cast::<AtomicU64>() })
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.unlink_on_drop {
            // Nothing useful can be done about a failure here: the name may
            // already be gone (removed by a tool).
            let _ = shm_unlink(self.name.as_str());
        }
    }
}

fn os_error(name: &SegmentName, op: &'static str, errno: Errno) -> SegmentError {
    let name = name.to_string();
    match errno {
        Errno::ENOENT => SegmentError::NotFound { name },
        Errno::EEXIST => SegmentError::AlreadyExists { name },
        Errno::EACCES | Errno::EPERM => SegmentError::PermissionDenied { name },
        errno => SegmentError::Os { name, op, errno },
    }
}

fn open_checked(name: &SegmentName, opts: &SegmentBuilder) -> Result<OwnedFd, SegmentError> {
    let fd = shm_open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| os_error(name, "shm_open", e))?;
    let st = fstat(&fd).map_err(|e| os_error(name, "fstat", e))?;
    let me = nix::unistd::geteuid().as_raw();
    if st.st_uid != me && !opts.allow_foreign_owner {
        return Err(SegmentError::ForeignOwner {
            name: name.to_string(),
            owner: st.st_uid,
            expected: me,
        });
    }
    Ok(fd)
}

/// `/dev/shm/NAME`: where Linux keeps the object `shm_open` names.
fn shm_path(name: &SegmentName) -> std::path::PathBuf {
    std::path::Path::new(SHM_DIR).join(name.file_name())
}

/// A new, unnamed object in `/dev/shm` (`O_TMPFILE`): invisible until
/// [`publish`]ed, and gone with its last descriptor if never published.
fn create_unnamed(name: &SegmentName, mode: u32) -> Result<OwnedFd, SegmentError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(mode)
        .custom_flags(libc::O_TMPFILE)
        .open(SHM_DIR)
        .map_err(|e| {
            let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
            os_error(name, "open(/dev/shm, O_TMPFILE)", errno)
        })?;
    Ok(OwnedFd::from(file))
}

/// Gives a complete unnamed object its name, exclusively: `linkat` fails
/// with `EEXIST` when the name is taken, as `shm_open(O_CREAT | O_EXCL)`
/// would.
fn publish(name: &SegmentName, file: &File) -> Result<(), SegmentError> {
    use std::os::fd::AsRawFd;
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .expect("no NUL in a path of digits");
    let to = std::ffi::CString::new(shm_path(name).into_os_string().into_encoded_bytes())
        .expect("validated names hold no NUL");
    // SAFETY: both paths are NUL-terminated C strings that outlive the
    // call; linkat only reads them.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    Errno::result(rc)
        .map(drop)
        .map_err(|e| os_error(name, "linkat", e))
}

/// Opens `name` and takes a shared lock on its presence byte. The byte is
/// held exclusively only by a remover that found the object unused
/// ([`Segment::remove_if_unused`]): retry until the name is gone (the next
/// open says `NotFound`), or report `EBUSY` at the ready timeout.
fn open_present(name: &SegmentName, opts: &SegmentBuilder) -> Result<OwnedFd, SegmentError> {
    let start = Instant::now();
    let mut waiter = Waiter::new(&SETUP_POLL, None);
    loop {
        let fd = open_checked(name, opts)?;
        match take_presence_lock(name, &fd) {
            Err(SegmentError::Os {
                errno: Errno::EBUSY,
                ..
            }) if start.elapsed() < opts.ready_timeout => {
                drop(fd);
                waiter.idle();
            }
            other => return other.map(|()| fd),
        }
    }
}

fn take_presence_lock(name: &SegmentName, fd: &OwnedFd) -> Result<(), SegmentError> {
    match lock::try_lock(fd, lock::LockKind::Shared, lock::PRESENCE_BYTE) {
        Ok(true) => Ok(()),
        // Only a tool removing the segment (`shmpi gc`) holds it exclusively.
        Ok(false) => Err(SegmentError::Os {
            name: name.to_string(),
            op: "fcntl(F_OFD_SETLK): segment is being removed",
            errno: Errno::EBUSY,
        }),
        Err(e) => Err(os_error(name, "fcntl(F_OFD_SETLK)", e)),
    }
}

fn object_size(name: &SegmentName, file: &File) -> Result<u64, SegmentError> {
    let st = fstat(file).map_err(|e| os_error(name, "fstat", e))?;
    Ok(st.st_size.max(0) as u64)
}

fn map(name: &SegmentName, file: &File, len: u64) -> Result<MmapRaw, SegmentError> {
    let len = usize::try_from(len).map_err(|_| SegmentError::TooLarge {
        requested: len,
        limit: isize::MAX as u64,
    })?;
    MmapOptions::new()
        .len(len)
        .map_raw(file)
        .map_err(|e| SegmentError::Os {
            name: name.to_string(),
            op: "mmap",
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(0)),
        })
}

/// Reserves `total` bytes so that a full file system fails here, not with a
/// SIGBUS on first touch.
fn reserve(name: &SegmentName, fd: &OwnedFd, total: u64) -> Result<(), SegmentError> {
    let len = libc::off_t::try_from(total).map_err(|_| SegmentError::TooLarge {
        requested: total,
        limit: libc::off_t::MAX as u64,
    })?;
    loop {
        match nix::fcntl::posix_fallocate(fd, 0, len) {
            Ok(()) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(Errno::ENOSPC) => {
                return Err(SegmentError::NoSpace {
                    requested: total,
                    available: shm_free_bytes().unwrap_or(0),
                    resource: SpaceResource::Filesystem,
                })
            }
            // File systems without fallocate: size it sparsely instead.
            Err(Errno::EOPNOTSUPP | Errno::EINVAL) => {
                return nix::unistd::ftruncate(fd, len).map_err(|e| os_error(name, "ftruncate", e))
            }
            Err(e) => return Err(os_error(name, "posix_fallocate", e)),
        }
    }
}

/// Where POSIX shared memory lives on Linux.
const SHM_DIR: &str = "/dev/shm";

fn shm_free_bytes() -> Option<u64> {
    let st = nix::sys::statvfs::statvfs(SHM_DIR).ok()?;
    Some((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// RAM the kernel can give without swapping out the working set, plus free
/// swap (tmpfs pages can be swapped).
fn available_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |key: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(key))?;
        let kib: u64 = line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some(field("MemAvailable:")? + field("SwapFree:").unwrap_or(0))
}

fn check_space(total: u64) -> Result<(), SegmentError> {
    for (resource, available) in [
        (SpaceResource::Filesystem, shm_free_bytes()),
        (SpaceResource::Memory, available_memory_bytes()),
    ] {
        if let Some(available) = available {
            if total > available {
                return Err(SegmentError::NoSpace {
                    requested: total,
                    available,
                    resource,
                });
            }
        }
    }
    Ok(())
}
