//! attestd's domain: decoding and checking device evidence and station
//! records, signature verification, and appraisal. Pure: no I/O, no async,
//! no storage, so every rule here is testable with plain values.

#![forbid(unsafe_code)]

pub mod appraisal;
pub mod audit;
pub mod baseline;
pub mod cbor;
pub mod cose;
pub mod dsse;
pub mod ear;
pub mod error;
pub mod evidence;
pub mod ids;
pub mod json;
pub mod keys;
pub mod record;
pub mod release;
pub mod time;

pub use error::{Class, Reason, Rejection};
