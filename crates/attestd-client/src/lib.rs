//! The attestd SDK: generate keys, build and sign device evidence and
//! station records, and call attestd through typed clients. The tests, the
//! CLI and the bench use it; device and station teams can use it as a
//! reference for their own implementations (see tests/vectors).

#![forbid(unsafe_code)]

pub mod audit;
pub mod client;
pub mod evidence;
pub mod keys;
pub mod record;
pub mod sample;

pub use attestd_core as core;
pub use attestd_proto::v1 as pb;
pub use client::{Client, TlsOptions};
pub use keys::SigningKey;
