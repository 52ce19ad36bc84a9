//! Code shared by the integration tests.
#![allow(dead_code)]

pub mod transport_suite;

/// `Ok` when `cond` holds, else a test failure with `msg()`: for roles that
/// run in child processes and report through their exit status.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), libtest_mimic::Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg().into())
    }
}
pub mod dsm_suite;
