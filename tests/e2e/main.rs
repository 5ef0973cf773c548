//! The end-to-end tests: attestd's real binary (or its server in-process)
//! driven through its public API, one module per area, all in one test
//! binary so that the shared fixtures (`common`: a server per test, a
//! provisioned fleet, PKI, PostgreSQL databases) are compiled and linked
//! once. nextest runs every test in its own process, as before.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

mod appraisal;
mod audit;
mod authorization;
mod backup;
mod binary;
mod consistency;
mod dashboard;
mod durability;
mod enroll;
mod fleet;
mod gate_failure;
mod health;
mod health_probe;
mod http;
mod lifecycle;
mod logs;
mod model_fleet;
mod observability;
mod records;
mod rejections;
mod release;
mod replica_faults;
mod replicas;
mod results;
mod tls;
mod watch_lag;
