//! All-to-all stress over a mailbox group: every member sends every other
//! member a stream of messages of random sizes (most small and inline in the
//! lanes, some in pool fragments, some up to twice a fragment, so they
//! stream in chunks), each identified by a sequence number
//! (the tag) and filled with a pattern derived from (sender, receiver,
//! sequence). Receivers recompute length and content: any message lost,
//! duplicated, reordered or corrupted fails the run.
//!
//! ```text
//! cargo run --release --example mailbox_stress -- [-n PROCS] [--messages TOTAL]
//!                                                 [--wait default|block|spin] [--fragment BYTES]
//! ```
//!
//! Without the launcher's environment it is the launcher: it creates the
//! group and starts PROCS copies of itself (`shmpi::mailbox::launch`).

use shmpi::transport::{Arrival, Wait};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use shmpi::mailbox::launch::GroupLaunch;
use shmpi::mailbox::{MailboxGroup, MailboxOptions, WaitStrategy};
use shmpi::transport::{Message, Source, TagMatch};

/// How members wait.
#[derive(Clone, Copy, clap::ValueEnum)]
enum WaitArg {
    /// Spin, then yield, then block (the default strategy).
    Default,
    /// Sleep at once.
    Block,
    /// Poll only.
    Spin,
}

/// All-to-all stress over a mailbox group, every message checked.
#[derive(clap::Parser)]
struct Args {
    /// Processes in the group (when this is the launcher).
    #[arg(short = 'n', default_value_t = 4, value_parser = at_least_two)]
    procs: usize,
    /// Messages in all.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// How members wait.
    #[arg(long, value_enum, default_value = "default")]
    wait: WaitArg,
    /// Pool fragment bytes (a power of two).
    #[arg(long, default_value_t = 16 << 10)]
    fragment: usize,
}

fn at_least_two(v: &str) -> Result<usize, String> {
    match v.parse() {
        Ok(n) if n >= 2 => Ok(n),
        _ => Err(format!("{v:?}: a group needs at least 2 processes")),
    }
}

impl Args {
    fn wait(&self) -> WaitStrategy {
        match self.wait {
            WaitArg::Default => WaitStrategy::SpinThenBlock,
            WaitArg::Block => WaitStrategy::Block,
            WaitArg::Spin => WaitStrategy::Spin,
        }
    }
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The length and content of message `seq` from `src` to `dst`.
fn message(src: usize, dst: usize, seq: u64, fragment: usize) -> Vec<u8> {
    let x = mix(((src as u64) << 44) ^ ((dst as u64) << 32) ^ seq);
    let r = x % 1000;
    let y = (x >> 20) as usize;
    let len = if r < 900 {
        y % 65
    } else if r < 990 {
        64 + y % 4032
    } else {
        4096 + y % (2 * fragment)
    };
    let mut state = x;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        state = mix(state);
        let take = (len - v.len()).min(8);
        v.extend_from_slice(&state.to_le_bytes()[..take]);
    }
    v
}

fn member(args: &Args) -> Result<(), String> {
    let options = MailboxOptions {
        wait: args.wait(),
        ..MailboxOptions::default()
    };
    let mut m = MailboxGroup::from_env_with(&options).map_err(|e| e.to_string())?;
    let (me, n) = (m.rank(), m.members());
    let fragment = m.max_record_payload();
    let per_peer = args.messages / (n * (n - 1)) as u64;
    let expected = per_peer * (n as u64 - 1);
    let mut next = vec![0u64; n];
    let mut received = 0u64;
    let verify = |msg: Message, next: &mut Vec<u64>| -> Result<(), String> {
        let seq = next[msg.source];
        if msg.tag as u64 != seq % (1 << 30) {
            return Err(format!(
                "member {me}: from {} expected sequence {seq}, got tag {} (lost, duplicated or reordered)",
                msg.source, msg.tag
            ));
        }
        if msg.data != message(msg.source, me, seq, fragment) {
            return Err(format!(
                "member {me}: message {seq} from {} is corrupt ({} bytes)",
                msg.source,
                msg.data.len()
            ));
        }
        next[msg.source] += 1;
        Ok(())
    };
    for seq in 0..per_peer {
        for k in 1..n {
            let dest = (me + k) % n;
            let tag = (seq % (1 << 30)) as i32;
            m.send(dest, tag, &message(me, dest, seq, fragment))
                .map_err(|e| e.to_string())?;
        }
        while let Some(msg) = m
            .recv(Source::Any, TagMatch::Any, Wait::Now)
            .arrived()
            .map_err(|e| e.to_string())?
        {
            verify(msg, &mut next)?;
            received += 1;
        }
    }
    while received < expected {
        let msg = m
            .recv(Source::Any, TagMatch::Any, Duration::from_secs(60))
            .map_err(|e| format!("member {me} after {received} of {expected}: {e}"))?;
        verify(msg, &mut next)?;
        received += 1;
    }
    // Keep the endpoint until everyone is done receiving from it.
    shmpi::transport::Transport::barrier(&mut m).map_err(|e| e.to_string())?;
    // Every sleep ended by a ring: none rescued late by the periodic check.
    match m.lost_wakeups() {
        0 if std::env::var_os(shmpi::mailbox::GROUP_ENV).is_none() => {
            // Started by srun, not by our own launcher: each task reports.
            println!(
                "mailbox_stress: member {me} of {n}: {received} messages received in order, intact"
            );
            Ok(())
        }
        0 => Ok(()),
        lost => Err(format!("member {me}: {lost} lost wake-ups")),
    }
}

fn launcher(args: &Args) -> Result<(), String> {
    // 16 fragments a member: the pool runs dry often, as it must be tested.
    let options = MailboxOptions {
        fragment: args.fragment,
        pool: 16 * args.fragment,
        ..MailboxOptions::default()
    };
    let per_peer = args.messages / (args.procs * (args.procs - 1)) as u64;
    let total = per_peer * (args.procs * (args.procs - 1)) as u64;
    let bytes: u64 = (0..args.procs)
        .flat_map(|s| {
            (0..args.procs)
                .filter(move |&d| d != s)
                .map(move |d| (s, d))
        })
        .map(|(s, d)| {
            (0..per_peer)
                .map(|q| message(s, d, q, args.fragment).len() as u64)
                .sum::<u64>()
        })
        .sum();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let start = Instant::now();
    let job = GroupLaunch::spawn(args.procs, &options, |_| {
        let mut c = Command::new(&exe);
        c.args(&argv);
        c
    })
    .map_err(|e| e.to_string())?;
    let statuses = job
        .wait(Duration::from_secs(600))
        .map_err(|e| e.to_string())?;
    let secs = start.elapsed().as_secs_f64();
    if let Some((rank, s)) = statuses.iter().enumerate().find(|(_, s)| !s.success()) {
        return Err(format!("member {rank} failed: {s}"));
    }
    println!(
        "mailbox_stress: {} processes, {:?}, {} doorbells, fragment {} KiB: {total} messages ({:.0} MB) all-to-all in {secs:.2} s \
         ({:.0} messages/s); none lost, duplicated, reordered or corrupted; no lost wake-up",
        args.procs,
        args.wait(),
        MailboxGroup::protocol_for_new_groups(),
        args.fragment >> 10,
        bytes as f64 / 1e6,
        total as f64 / secs
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Args = clap::Parser::parse();
    let result = if shmpi::mailbox::launch::is_member() {
        member(&args)
    } else {
        launcher(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mailbox_stress: {e}");
            ExitCode::FAILURE
        }
    }
}
