//! loom model checks of the mailbox's two concurrent algorithms, on the
//! very code that runs on shared memory: the SPSC ring (push, pop, full,
//! empty, pad and wrap-around) and the doorbell protocol (no lost wake-up).
//!
//! loom cannot model mmapped memory or `sem_t` (DESIGN.md): the ring runs
//! here on heap words with loom's atomics, and a loom mutex and condition
//! variable stand in for the doorbell semaphore. A lost wake-up would block
//! the sleeper forever, which loom reports as a deadlock.

use std::cell::UnsafeCell;
use std::sync::atomic::Ordering;

use loom::sync::atomic::{AtomicU32, AtomicU64};
use loom::sync::{Arc, Condvar, Mutex};
use shmpi::mailbox::ring::{Consumer, Geometry, Producer, RingMemory, RingWord};
use shmpi::mailbox::wake::{notify, sleep, Slept, WakeFlag};

struct Word(AtomicU64);

impl RingWord for Word {
    fn load(&self, order: Ordering) -> u64 {
        self.0.load(order)
    }
    fn store(&self, value: u64, order: Ordering) {
        self.0.store(value, order)
    }
}

struct Flag(AtomicU32);

impl WakeFlag for Flag {
    fn load(&self, order: Ordering) -> u32 {
        self.0.load(order)
    }
    fn store(&self, value: u32, order: Ordering) {
        self.0.store(value, order)
    }
    fn swap(&self, value: u32, order: Ordering) -> u32 {
        self.0.swap(value, order)
    }
}

/// A ring whose stamps are loom atomics and whose bytes are a heap buffer.
struct LoomRing {
    geometry: Geometry,
    head: Word,
    tail: Word,
    stamps: Vec<Word>,
    bytes: UnsafeCell<Vec<u8>>,
}

// SAFETY: the byte buffer is only touched through the ring protocol, whose
// release/acquire on the stamps and the head orders every access.
unsafe impl Sync for LoomRing {}
// SAFETY: as above.
unsafe impl Send for LoomRing {}

// SAFETY: `bytes()` is `capacity` bytes; `stamp(o)` is a separate word per
// granule standing for bytes o..o+8, which the ring never reads through
// `bytes()`.
unsafe impl RingMemory for LoomRing {
    type Word = Word;
    fn geometry(&self) -> Geometry {
        self.geometry
    }
    fn head(&self) -> &Word {
        &self.head
    }
    fn tail(&self) -> &Word {
        &self.tail
    }
    fn stamp(&self, offset: usize) -> &Word {
        &self.stamps[offset / self.geometry.granularity()]
    }
    fn bytes(&self) -> *mut u8 {
        // SAFETY: the Vec is never resized; we hand out its buffer pointer.
        unsafe { (*self.bytes.get()).as_mut_ptr() }
    }
}

fn loom_ring() -> LoomRing {
    let geometry = Geometry::new(1024, 64).unwrap();
    LoomRing {
        geometry,
        head: Word(AtomicU64::new(0)),
        tail: Word(AtomicU64::new(0)),
        stamps: (0..1024 / 64).map(|_| Word(AtomicU64::new(0))).collect(),
        bytes: UnsafeCell::new(vec![0; 1024]),
    }
}

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b
}

/// Three 400-byte messages through a 1 KiB ring: the third needs a pad and
/// a wrap, and must wait for the consumer (full ring).
#[test]
fn ring_push_pop_full_wrap() {
    const MESSAGES: u8 = 3;
    const LEN: usize = 400;
    builder().check(|| {
        let ring = Arc::new(loom_ring());
        let producer_ring = ring.clone();
        let producer = loom::thread::spawn(move || {
            let ring = &*producer_ring;
            let mut p = Producer::recover(ring).unwrap();
            for i in 0..MESSAGES {
                let r = loop {
                    match p.try_reserve(ring, LEN).unwrap() {
                        Some(r) => break r,
                        None => loom::thread::yield_now(),
                    }
                };
                let dst = Producer::payload_ptr(ring, &r);
                // SAFETY: the reservation holds LEN bytes.
                unsafe { std::ptr::write_bytes(dst, i + 1, LEN) };
                p.commit(ring, r, 0, u32::from(i));
            }
        });
        let mut c = Consumer::recover(&*ring).unwrap();
        let mut got = 0u8;
        while got < MESSAGES {
            match c.peek(&*ring).unwrap() {
                Some(rec) => {
                    assert_eq!((rec.tag(), rec.len()), (u32::from(got), LEN));
                    let src = Consumer::payload_ptr(&*ring, &rec);
                    // SAFETY: the record has LEN payload bytes.
                    let first_last = unsafe { (*src, *src.add(LEN - 1)) };
                    assert_eq!(
                        first_last,
                        (got + 1, got + 1),
                        "payload seen before it was published"
                    );
                    c.release(&*ring, rec);
                    got += 1;
                }
                None => loom::thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert!(c.peek(&*ring).unwrap().is_none(), "nothing consumed twice");
    });
}

/// The doorbell protocol: the sleeper never sleeps on work that is there,
/// and the item is taken exactly once.
#[test]
fn doorbell_never_loses_a_wakeup() {
    builder().check(|| {
        let sleeping = Arc::new(Flag(AtomicU32::new(0)));
        let work = Arc::new(AtomicU32::new(0));
        let bell = Arc::new((Mutex::new(false), Condvar::new()));

        let (s2, w2, b2) = (sleeping.clone(), work.clone(), bell.clone());
        let waker = loom::thread::spawn(move || {
            w2.store(1, Ordering::Release);
            notify(&*s2, || {
                *b2.0.lock().unwrap() = true;
                b2.1.notify_one();
            });
        });

        // The consumer checks for work with a load, as the mailbox checks a
        // record's stamp; it consumes it (once) when it sees it.
        let take = || (work.load(Ordering::Acquire) == 1).then_some(());
        let mut taken = 0;
        while taken == 0 {
            if take().is_some() {
                taken += 1;
                break;
            }
            let found = sleep(
                &*sleeping,
                || {},
                take,
                || {
                    let mut rung = bell.0.lock().unwrap();
                    while !*rung {
                        rung = bell.1.wait(rung).unwrap();
                    }
                    *rung = false;
                    true
                },
                || false,
            );
            // The wait returns only when rung: a lost wake-up would hang
            // the model (loom reports a deadlock), never reach `Lost`.
            assert!(!matches!(found, Slept::Lost(_) | Slept::Unrung));
            taken += usize::from(matches!(found, Slept::Found(_)));
        }
        waker.join().unwrap();
        assert_eq!(taken, 1);
    });
}
