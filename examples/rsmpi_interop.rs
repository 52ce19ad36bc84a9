//! shmpi and rsmpi in one program: rsmpi initialises MPI; shmpi builds a
//! hybrid world on rsmpi's world communicator and a distributed array on
//! that; both APIs exchange messages; shmpi hands communicators back to
//! rsmpi (a duplicate rsmpi owns, and a borrow). Every exchange is checked.
//!
//! ```text
//! scripts/mpirun.sh -n 2 target/release/examples/rsmpi_interop
//! ```

use shmpi::transport::Wait;
use std::error::Error;
use std::process::ExitCode;

use shmpi::dsm::DistArray;
use shmpi::hybrid::HybridWorld;
use shmpi::mpi::Comm;
use shmpi::rsmpi::{self, collective::SystemOperation, traits::*};
use shmpi::transport::Transport;

fn check(ok: bool, what: &str) -> Result<(), Box<dyn Error>> {
    if ok {
        Ok(())
    } else {
        Err(what.into())
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    // rsmpi initialises MPI and finalises it when `universe` is dropped,
    // after every shmpi object below.
    let (universe, _threading) = rsmpi::initialize_with_threading(rsmpi::Threading::Multiple)
        .ok_or("MPI was already initialised")?;
    let world = universe.world();
    let (me, n) = (world.rank() as usize, world.size() as usize);
    let (right, left) = ((me + 1) % n, (me + n - 1) % n);

    // 1. rsmpi: a token around the ring.
    let mine = me as u64;
    let from_left = rsmpi::request::scope(|scope| {
        let sent = world
            .process_at_rank(right as i32)
            .immediate_send(scope, &mine);
        let (v, _) = world.process_at_rank(left as i32).receive::<u64>();
        sent.wait();
        v
    });
    check(from_left == left as u64, "rsmpi ring")?;

    // 2. shmpi on rsmpi's world (collective: a duplicate of it).
    let mut hybrid = HybridWorld::from_comm(Comm::dup_from(&world)?)?;
    hybrid.send(right, 7, format!("hello from {me}").as_bytes())?;
    let m = hybrid.recv(left, 7, Wait::Forever)?;
    check(
        m.data == format!("hello from {left}").as_bytes(),
        "shmpi ring",
    )?;

    // 3. A distributed array on the hybrid world.
    let mut array = DistArray::<u64, _>::owner(hybrid.dup()?, 4 * n)?;
    array.fetch_add(0, me as u64 + 1)?;
    array.barrier()?;
    check(
        array.get(0)? == (n * (n + 1) / 2) as u64,
        "distributed array sum",
    )?;
    array.barrier()?;

    // 4. Back to rsmpi: a duplicate it owns (collective) and a borrow.
    let ours = Comm::dup_from(&world)?;
    let theirs = ours.dup_to_rsmpi()?;
    let mut sum = 0u64;
    theirs.all_reduce_into(&(me as u64), &mut sum, SystemOperation::sum());
    check(
        sum == (n * (n - 1) / 2) as u64,
        "rsmpi allreduce on shmpi's communicator",
    )?;
    let mut max = 0u64;
    ours.as_rsmpi()
        .all_reduce_into(&(me as u64), &mut max, SystemOperation::max());
    check(
        max == n as u64 - 1,
        "rsmpi on a borrowed shmpi communicator",
    )?;

    // shmpi's objects go before rsmpi finalises MPI.
    drop(array);
    drop(hybrid);
    drop(theirs);
    drop(ours);
    if me == 0 {
        println!("rsmpi_interop: {n} ranks; rsmpi ring, shmpi ring, distributed array, rsmpi collectives on shmpi communicators: all checked");
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rsmpi_interop: {e}");
            ExitCode::FAILURE
        }
    }
}
