//! RFC 3339 timestamps (UnixTime::parse_rfc3339 and its Display).
//!
//! Asserts:
//! - the parser accepts exactly the timestamps of docs/formats.md §4
//!   (UTC `Z`, 1..9 fraction digits dropped, real calendar dates, no leap
//!   second) and gives the instant an independent count gives
//!   (fuzz/src/oracle.rs);
//! - parse → format → parse is the same instant, and the formatted text is
//!   the canonical form of the input;
//! - formatting never panics for any i64, and what it writes parses back
//!   exactly for the instants of years 0000..9999 and is refused outside
//!   them.

#![no_main]

use attestd_core::time::UnixTime;
use attestd_fuzz::oracle::{rfc3339_canonical, rfc3339_seconds};
use libfuzzer_sys::fuzz_target;

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const FIRST: i64 = -62_167_219_200;
const LAST: i64 = 253_402_300_799;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let parsed = UnixTime::parse_rfc3339(s);
        assert_eq!(parsed.map(|t| t.0), rfc3339_seconds(s), "{s:?}");
        if let Some(t) = parsed {
            let text = t.to_string();
            assert_eq!(text, rfc3339_canonical(s));
            assert_eq!(UnixTime::parse_rfc3339(&text), Some(t));
        }
    }

    // Any instant formats; the four-digit years read back.
    let mut b = [0u8; 8];
    for (i, x) in data.iter().take(8).enumerate() {
        b[i] = *x;
    }
    for secs in [i64::from_le_bytes(b), i64::from_le_bytes(b) % (LAST + 1)] {
        let t = UnixTime(secs);
        let text = t.to_string();
        let back = UnixTime::parse_rfc3339(&text);
        if (FIRST..=LAST).contains(&secs) {
            assert_eq!(back, Some(t), "{text}");
            assert_eq!(text.len(), 20);
        } else {
            assert_eq!(
                back, None,
                "{secs} formats as {text}, a timestamp of another instant"
            );
        }
    }
});
