//! Segments in one process: creation, opening, bad input, foreign objects.
//! Every segment made here is unlinked by its creating handle's drop, also
//! when an assertion fails (the handle is dropped during unwinding); raw
//! objects made with `shm_open` directly are held by [`RawObject`], which
//! unlinks on drop.

use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::mman::{shm_open, shm_unlink};
use nix::sys::stat::{fstat, Mode};
use shmpi::segment::{HeaderError, HeaderFields, Segment, SegmentKind, SegmentName, HEADER_SIZE};
use shmpi::{NameError, SegmentError, SpaceResource};

/// A POSIX shm object made without shmpi; unlinked on drop.
struct RawObject {
    name: SegmentName,
}

impl RawObject {
    fn new(tag: &str, len: i64) -> RawObject {
        let name = SegmentName::unique(tag);
        let fd = shm_open(
            name.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            Mode::from_bits_truncate(0o600),
        )
        .expect("shm_open");
        nix::unistd::ftruncate(&fd, len).expect("ftruncate");
        RawObject { name }
    }
}

impl Drop for RawObject {
    fn drop(&mut self) {
        let _ = shm_unlink(self.name.as_str());
    }
}

fn quick_open(name: &SegmentName) -> Result<Segment, SegmentError> {
    Segment::builder(name.as_str())
        .ready_timeout(Duration::from_millis(50))
        .open()
}

#[test]
fn create_then_open_shares_memory_and_creator_unlinks() {
    let name = SegmentName::unique("seg-basic");
    let a = Segment::create(&name, 4096).unwrap();
    assert_eq!(a.len(), 4096);
    assert_eq!(a.kind(), Some(SegmentKind::DATA));
    assert!(a.unlinks_on_drop());
    let b = Segment::open(&name).unwrap();
    assert!(!b.unlinks_on_drop());
    a.slice::<u32>(0, 1024).unwrap().fill(7);
    b.atomic_u32(4).unwrap().store(9, Ordering::Release);
    let v = a.slice::<u32>(0, 1024).unwrap().to_vec();
    assert_eq!(v[0], 7);
    assert_eq!(v[1], 9);
    assert_eq!(b.header().unwrap().creator_pid, std::process::id());
    drop(b);
    drop(a);
    assert!(matches!(
        Segment::open(&name),
        Err(SegmentError::NotFound { .. })
    ));
}

#[test]
fn default_mode_is_0600_and_mode_is_not_narrowed_by_umask() {
    let a = Segment::create(&SegmentName::unique("seg-mode"), 64).unwrap();
    assert_eq!(fstat(a.fd()).unwrap().st_mode & 0o777, 0o600);
    let b = Segment::builder(SegmentName::unique("seg-mode").as_str())
        .size(64)
        .mode(0o666)
        .create()
        .unwrap();
    assert_eq!(fstat(b.fd()).unwrap().st_mode & 0o777, 0o666);
}

#[test]
fn invalid_names_are_rejected_with_the_reason() {
    let cases: [(&str, NameError); 5] = [
        ("", NameError::Empty),
        (&"n".repeat(300), NameError::TooLong { len: 300, max: 255 }),
        (
            "a/b",
            NameError::InvalidByte {
                byte: b'/',
                position: 1,
            },
        ),
        (
            "a\0b",
            NameError::InvalidByte {
                byte: 0,
                position: 1,
            },
        ),
        ("..", NameError::LeadingDot),
    ];
    for (name, want) in cases {
        for result in [
            Segment::builder(name).size(64).create(),
            Segment::builder(name).open(),
            Segment::builder(name).open_raw(),
        ] {
            match result {
                Err(SegmentError::InvalidName { source, .. }) => assert_eq!(source, want),
                other => panic!("{name:?}: expected InvalidName, got {other:?}"),
            }
        }
    }
}

#[test]
fn zero_and_absurd_sizes_are_errors_and_leave_nothing() {
    let name = SegmentName::unique("seg-size");
    assert_eq!(
        Segment::create(&name, 0).unwrap_err(),
        SegmentError::ZeroSize
    );
    assert!(matches!(
        Segment::create(&name, usize::MAX),
        Err(SegmentError::TooLarge { .. })
    ));
    // More than /dev/shm or memory can hold (1 PiB): refused before reserving.
    match Segment::create(&name, 1 << 50) {
        Err(SegmentError::NoSpace {
            requested,
            available,
            resource: SpaceResource::Filesystem | SpaceResource::Memory,
        }) => assert!(requested > available),
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert!(matches!(
        Segment::open(&name),
        Err(SegmentError::NotFound { .. })
    ));
}

#[test]
fn missing_and_existing_names() {
    let name = SegmentName::unique("seg-exists");
    assert!(matches!(
        Segment::open(&name),
        Err(SegmentError::NotFound { .. })
    ));
    assert!(matches!(
        Segment::open_raw(&name),
        Err(SegmentError::NotFound { .. })
    ));
    assert!(matches!(
        Segment::remove(&name),
        Err(SegmentError::NotFound { .. })
    ));
    let _a = Segment::create(&name, 64).unwrap();
    assert!(matches!(
        Segment::create(&name, 64),
        Err(SegmentError::AlreadyExists { .. })
    ));
}

#[test]
fn garbage_header_is_bad_magic_without_waiting() {
    let name = SegmentName::unique("seg-garbage");
    let a = Segment::create(&name, 256).unwrap();
    let raw = Segment::open_raw(&name).unwrap();
    raw.slice::<u8>(0, HEADER_SIZE).unwrap().fill(0xA5);
    let t = std::time::Instant::now();
    let err = Segment::open(&name).unwrap_err();
    assert!(
        matches!(
            err,
            SegmentError::Header {
                source: HeaderError::BadMagic {
                    found: 0xA5A5_A5A5_A5A5_A5A5
                },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "garbage must not be waited on"
    );
    drop(a);
}

#[test]
fn each_header_field_is_checked() {
    let name = SegmentName::unique("seg-fields");
    let a = Segment::create(&name, 256).unwrap();
    let raw = Segment::open_raw(&name).unwrap();
    let header = raw.slice::<u8>(0, HEADER_SIZE).unwrap();
    let good = header.to_vec();
    let patch = |edit: &dyn Fn(&mut HeaderFields)| {
        let mut h = HeaderFields::from_bytes(&good).unwrap();
        edit(&mut h);
        header.copy_from_slice(&h.to_bytes());
        quick_open(&name).unwrap_err()
    };
    assert!(matches!(
        patch(&|h| h.version = 99),
        SegmentError::Header {
            source: HeaderError::UnsupportedVersion { found: 99 },
            ..
        }
    ));
    assert!(matches!(
        patch(&|h| h.total_size += 4096),
        SegmentError::Header {
            source: HeaderError::SizeMismatch { .. },
            ..
        }
    ));
    assert!(matches!(
        patch(&|h| h.data_offset = 3),
        SegmentError::Header {
            source: HeaderError::BadDataOffset { offset: 3, .. },
            ..
        }
    ));
    assert!(matches!(
        patch(&|h| h.ready = 0),
        SegmentError::NotReady { .. }
    ));
    header.copy_from_slice(&good);
    assert!(quick_open(&name).is_ok());
    let wrong_kind = Segment::builder(name.as_str())
        .expect_kind(SegmentKind::MAILBOX_GROUP)
        .open()
        .unwrap_err();
    assert!(matches!(
        wrong_kind,
        SegmentError::Header {
            source: HeaderError::WrongKind {
                found: 1,
                expected: 2
            },
            ..
        }
    ));
    drop(a);
}

#[test]
fn truncated_and_never_ready_objects() {
    let tiny = RawObject::new("seg-tiny", 16);
    assert!(matches!(
        quick_open(&tiny.name),
        Err(SegmentError::Truncated { actual: 16, needed, .. }) if needed == HEADER_SIZE as u64
    ));
    let empty = RawObject::new("seg-empty", 0);
    assert!(matches!(
        Segment::open_raw(&empty.name),
        Err(SegmentError::Truncated { actual: 0, .. })
    ));
    // All zeros: looks like a creator that never finished.
    let zeros = RawObject::new("seg-zeros", 4096);
    assert!(matches!(
        quick_open(&zeros.name),
        Err(SegmentError::NotReady { .. })
    ));
    // A shmpi header whose object was grown behind its back.
    let name = SegmentName::unique("seg-grown");
    let a = Segment::create(&name, 128).unwrap();
    nix::unistd::ftruncate(a.fd(), 8192).unwrap();
    assert!(matches!(
        quick_open(&name),
        Err(SegmentError::Header {
            source: HeaderError::SizeMismatch {
                header: 256,
                actual: 8192
            },
            ..
        })
    ));
}

#[test]
fn open_raw_maps_an_object_made_by_the_shared_memory_crate() {
    let name = SegmentName::unique("seg-foreign");
    let foreign = shared_memory::ShmemConf::new()
        .size(4096)
        .os_id(name.as_str())
        .create()
        .expect("shared_memory create");
    let ours = Segment::open_raw(&name).unwrap();
    assert_eq!(ours.len(), 4096);
    assert_eq!(ours.kind(), None);
    // SAFETY: the crate's mapping is 4096 bytes; we write 8 of them.
    unsafe { foreign.as_ptr().cast::<u64>().write_volatile(0xDEAD_BEEF) };
    assert_eq!(ours.slice::<u64>(0, 1).unwrap().get(0), Some(0xDEAD_BEEF));
    ours.slice::<u64>(8, 1).unwrap().set(0, 77);
    // SAFETY: in bounds of the 4096-byte mapping.
    assert_eq!(
        unsafe { foreign.as_ptr().add(8).cast::<u64>().read_volatile() },
        77
    );
    // The same object opened with `open` is not a shmpi segment.
    assert!(matches!(
        quick_open(&name),
        Err(SegmentError::Header {
            source: HeaderError::BadMagic { .. },
            ..
        }) | Err(SegmentError::NotReady { .. })
    ));
    drop(ours);
    drop(foreign); // the crate's owner unlinks
}

#[test]
fn views_are_bounds_and_alignment_checked() {
    let seg = Segment::create(&SegmentName::unique("seg-views"), 100).unwrap();
    assert!(seg.slice::<u8>(0, 100).is_ok());
    assert!(seg.slice::<u8>(1, 100).is_err());
    assert!(seg.slice::<u64>(4, 1).is_err(), "misaligned");
    assert!(
        seg.slice::<u64>(0, usize::MAX / 4).is_err(),
        "overflowing length"
    );
    assert!(seg.atomic_u64(96).is_err());
    assert!(seg.atomic_u32(96).is_ok());
    let v = seg.slice::<u16>(0, 50).unwrap();
    assert!(!v.set(50, 1));
    assert_eq!(v.get(50), None);
}

#[test]
fn presence_lock_tells_whether_anyone_has_it_open() {
    let name = SegmentName::unique("seg-presence");
    let mut a = Segment::create(&name, 64).unwrap();
    assert!(Segment::in_use(&name).unwrap());
    a.persist();
    drop(a);
    assert!(!Segment::in_use(&name).unwrap(), "nobody maps it any more");
    let b = Segment::open(&name).unwrap();
    assert!(Segment::in_use(&name).unwrap());
    drop(b);
    Segment::remove(&name).unwrap();
}

#[test]
fn ephemeral_unlink_keeps_the_memory() {
    let name = SegmentName::unique("seg-ephemeral");
    let mut a = Segment::create(&name, 64).unwrap();
    let b = Segment::open(&name).unwrap();
    a.unlink().unwrap();
    assert!(matches!(
        Segment::open(&name),
        Err(SegmentError::NotFound { .. })
    ));
    a.atomic_u64(0).unwrap().store(5, Ordering::Release);
    assert_eq!(b.atomic_u64(0).unwrap().load(Ordering::Acquire), 5);
}

/// Issue 12, defect 5: garbage collection beside a create loop. Before the
/// fix a creator's name existed, empty and unlocked, before its presence
/// lock, and `gc` removed it (167 of 312,866 segments). Now a creator
/// publishes a complete, locked object, and the collector takes the
/// presence byte exclusively before it unlinks: no live segment is ever
/// removed, and dead ones still are.
#[test]
fn garbage_collection_beside_a_create_loop_removes_only_the_dead() {
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::AtomicBool;
    const ROUNDS: usize = 4000;
    // This process's names only: other tests run beside this one.
    let ours = || {
        let pid = format!(".{}.", std::process::id());
        std::fs::read_dir("/dev/shm")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(move |f| f.starts_with("shmpi.gc-race.") && f.contains(&pid))
            .map(|f| SegmentName::new(&f).unwrap())
    };
    let done = AtomicBool::new(false);
    let mut removed = 0usize;
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                for name in ours() {
                    if Segment::remove_if_unused(&name).unwrap_or(false) {
                        removed += 1;
                    }
                }
            }
        });
        let result = std::panic::catch_unwind(|| {
            for round in 0..ROUNDS {
                let name = SegmentName::unique("gc-race");
                // Every tenth is left behind, dead: the collector's work.
                let seg = Segment::builder(name.as_str())
                    .size(64)
                    .persist(round % 10 == 0)
                    .create()
                    .unwrap();
                let path = std::path::Path::new("/dev/shm").join(name.file_name());
                let meta = std::fs::metadata(&path)
                    .unwrap_or_else(|e| panic!("round {round}: {path:?} removed while alive: {e}"));
                let held = fstat(seg.fd()).unwrap();
                assert_eq!(
                    meta.ino(),
                    held.st_ino,
                    "round {round}: the name names another object"
                );
                assert!(Segment::in_use(&name).unwrap());
            }
        });
        done.store(true, Ordering::Release);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
    // What the collector had not reached yet.
    for name in ours() {
        if Segment::remove_if_unused(&name).unwrap() {
            removed += 1;
        }
    }
    assert_eq!(
        removed,
        ROUNDS / 10,
        "every dead segment collected, no live one"
    );
}

/// Epochs on a segment: parties computing in place; an overlapping claim
/// (debug builds) fails on both parties, at the later claim and at the
/// epoch's end, and the array stays usable; a wrong party count is refused.
#[test]
fn epoch_array_borrows_in_place_and_catches_overlapping_claims() {
    use shmpi::segment::EpochArray;
    use shmpi::SyncError;
    let name = SegmentName::unique("test-epochs");
    let seg = Segment::create(&name, EpochArray::<u64>::size_for(64, 2)).unwrap();
    EpochArray::<u64>::create_in(&seg, 0, 64, 2, 0).unwrap();
    assert!(matches!(
        EpochArray::<u64>::open_in(&seg, 0, 64, 3, 0),
        Err(SyncError::Mismatch { .. })
    ));
    assert!(EpochArray::<u64>::open_in(&seg, 0, 64, 2, 2).is_err());
    assert!(
        EpochArray::<u64>::open_in(&seg, 0, 65, 2, 0).is_err(),
        "does not fit"
    );
    std::thread::scope(|s| {
        for party in 0..2usize {
            let seg = &seg;
            s.spawn(move || {
                let mut a = EpochArray::<u64>::open_in(seg, 0, 64, 2, party).unwrap();
                let mine = a.part();
                let mut epoch = a.epoch();
                // SAFETY: disjoint parts.
                let (_, out) = unsafe { epoch.borrow(0..0, mine.clone()) }.unwrap();
                out.fill(party as u64 + 1);
                let mut epoch = epoch.next().unwrap();
                // SAFETY: nobody writes in this epoch.
                let (all, _) = unsafe { epoch.borrow(0..64, 0..0) }.unwrap();
                assert_eq!(all.iter().sum::<u64>(), 32 + 32 * 2);
                let mut epoch = epoch.next().unwrap();
                if cfg!(debug_assertions) {
                    let number = epoch.number();
                    // SAFETY: a deliberately broken promise; never used.
                    let _ = unsafe { epoch.borrow(0..0, party * 5..party * 5 + 10) };
                    match epoch.next() {
                        Err(SyncError::OverlappingClaim { epoch, other }) => {
                            assert_eq!((epoch, other), (number, 1 - party));
                        }
                        other => panic!("party {party}: {other:?}"),
                    }
                    let mut epoch = a.epoch();
                    // SAFETY: disjoint parts again.
                    unsafe { epoch.borrow(0..0, mine) }.unwrap();
                    epoch.next().unwrap();
                }
            });
        }
    });
}
