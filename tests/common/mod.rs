//! Code shared by the integration tests.
#![allow(dead_code)]

pub mod transport_suite;
