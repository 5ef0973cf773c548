//! Time as attestd reasons about it: whole seconds since the Unix epoch, UTC.
//! RFC 3339 parsing is strict: only UTC (`Z`) timestamps are accepted, as
//! docs/formats.md requires.

use std::fmt;

/// Seconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixTime(pub i64);

impl UnixTime {
    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction]Z`. The fraction is truncated.
    pub fn parse_rfc3339(s: &str) -> Option<UnixTime> {
        let b = s.as_bytes();
        if b.len() < 20 || !s.is_ascii() {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = &s[r];
            if part.bytes().all(|c| c.is_ascii_digit()) {
                part.parse().ok()
            } else {
                None
            }
        };
        if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't') {
            return None;
        }
        if b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let rest = &s[19..];
        let rest = match rest.strip_prefix('.') {
            Some(frac) => {
                let digits = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
                if digits == 0 || digits > 9 {
                    return None;
                }
                &frac[digits..]
            }
            None => rest,
        };
        if rest != "Z" && rest != "z" {
            return None;
        }
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        // 60 would be a leap second; attestd's clock has none.
        if hour > 23 || min > 59 || sec > 59 {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(UnixTime(days * 86_400 + hour * 3600 + min * 60 + sec))
    }

    /// Seconds since the Unix epoch.
    pub fn seconds(self) -> i64 {
        self.0
    }

    /// This time plus `s` seconds (saturating).
    pub fn plus_seconds(self, s: i64) -> UnixTime {
        UnixTime(self.0.saturating_add(s))
    }
}

impl fmt::Display for UnixTime {
    /// RFC 3339, e.g. `2026-11-28T09:14:03Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        )
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        assert_eq!(
            UnixTime::parse_rfc3339("1970-01-01T00:00:00Z"),
            Some(UnixTime(0))
        );
        let t = UnixTime::parse_rfc3339("2026-11-28T09:14:03Z").unwrap();
        assert_eq!(t, UnixTime(1_795_857_243));
        assert_eq!(t.to_string(), "2026-11-28T09:14:03Z");
        assert_eq!(
            UnixTime::parse_rfc3339("2024-02-29T23:59:59.123Z")
                .unwrap()
                .to_string(),
            "2024-02-29T23:59:59Z"
        );
    }

    #[test]
    fn rejects_non_utc_and_invalid_dates() {
        for bad in [
            "2026-11-28T09:14:03+01:00",
            "2026-11-28T09:14:03",
            "2026-11-28 09:14:03Z",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-28T24:00:00Z",
            "2026-11-28T09:14:60Z",
            "2026-11-28T09:14:03.Z",
            "+026-11-28T09:14:03Z",
            "",
        ] {
            assert_eq!(UnixTime::parse_rfc3339(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_then_parse_round_trips(secs in -62_135_596_800i64..253_402_300_799) {
            let t = UnixTime(secs);
            prop_assert_eq!(UnixTime::parse_rfc3339(&t.to_string()), Some(t));
        }
    }
}
