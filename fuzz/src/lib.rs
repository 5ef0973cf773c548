//! Shared pieces of attestd's fuzz targets: an independent CBOR writer for
//! decoded values, fixtures taken from the test vectors and the documented
//! examples, the appraisal invariants, and small oracles written from the
//! format rules (not from the code they check).
//!
//! Every target asserts properties of what the decoders return, not only
//! that they return: see fuzz/README.md for the list.

#![forbid(unsafe_code)]

pub mod appraisal;
pub mod cbor;
pub mod docs;
pub mod fixtures;
pub mod oracle;

use attestd_core::{Reason, Rejection};

/// Asserts that a rejection carries one of the reasons its decoder may give;
/// a reason outside the set would reach clients as the wrong status code.
#[track_caller]
pub fn assert_reason_in(e: &Rejection, allowed: &[Reason]) {
    assert!(
        allowed.contains(&e.reason),
        "unexpected reason {} (allowed {allowed:?}): {}",
        e.reason,
        e.message
    );
    assert!(!e.message.is_empty(), "a rejection says why");
}

/// A small cursor over fuzz input for the structured targets: each read
/// takes what is left when the input runs short, so every input means
/// something and seeds stay readable.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data }
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8();
        }
        u64::from_be_bytes(b)
    }

    /// Up to `n` bytes.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (a, b) = self.data.split_at(n);
        self.data = b;
        a
    }

    /// A byte string of a length read first (u16).
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.take(n)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}
