//! Oracles written from the format rules of docs/formats.md, independently
//! of the parsers they check: what a parser accepts must be exactly what
//! these say, and mean the same.

/// docs/formats.md §4: an identifier is 1..64 characters of `[A-Za-z0-9._-]`.
pub fn is_ident(s: &str) -> bool {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-";
    (1..=64).contains(&s.chars().count()) && s.chars().all(|c| ALPHABET.contains(c))
}

/// Lowercase hex of any even length (signatures, digests).
pub fn is_lower_hex(s: &str) -> bool {
    s.len().is_multiple_of(2)
        && s.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// Lowercase hex to bytes, for strings [`is_lower_hex`] accepts.
pub fn unhex(s: &str) -> Vec<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        _ => c - b'a' + 10,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| digit(p[0]) * 16 + digit(p[1]))
        .collect()
}

/// A SHA-256 digest as text: exactly 64 lowercase hex characters.
pub fn is_digest_hex(s: &str) -> bool {
    s.len() == 64 && is_lower_hex(s)
}

/// An object id: the prefix, then 32 lowercase hex characters.
pub fn is_object_id(prefix: &str, s: &str) -> bool {
    s.len() == prefix.len() + 32
        && s.starts_with(prefix)
        && s.is_char_boundary(prefix.len())
        && is_lower_hex(&s[prefix.len()..])
}

/// A decimal integer as attestd writes it: an optional `-` (when `signed`),
/// then digits without a leading zero (except `0` itself); `-0` is not one.
pub fn is_decimal(s: &str, signed: bool) -> bool {
    let digits = match s.strip_prefix('-') {
        Some(d) if signed => d,
        Some(_) => return false,
        None => s,
    };
    let well_formed = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    well_formed && s != "-0"
}

/// docs/formats.md §4: `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, UTC only (`T` and
/// `Z` in either case, as RFC 3339 §5.6 allows), a fraction of 1..9 digits
/// that is dropped, no leap second. The seconds since the epoch, counted
/// year by year in a different way than the parser does.
pub fn rfc3339_seconds(s: &str) -> Option<i64> {
    let c: Vec<char> = s.chars().collect();
    if c.len() < 20 {
        return None;
    }
    let digits = |from: usize, n: usize| -> Option<i64> {
        let mut v = 0i64;
        for ch in &c[from..from + n] {
            v = v * 10 + i64::from(ch.to_digit(10).filter(|_| ch.is_ascii_digit())?);
        }
        Some(v)
    };
    let at = |i: usize, set: &[char]| set.contains(&c[i]);
    if !(at(4, &['-']) && at(7, &['-']) && at(10, &['T', 't']) && at(13, &[':']) && at(16, &[':']))
    {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let mut i = 19;
    if c[i] == '.' {
        let n = c[i + 1..]
            .iter()
            .take_while(|ch| ch.is_ascii_digit())
            .count();
        if !(1..=9).contains(&n) {
            return None;
        }
        i += 1 + n;
    }
    if i + 1 != c.len() || !at(i, &['Z', 'z']) {
        return None;
    }
    let leap = |y: i64| y % 400 == 0 || (y % 4 == 0 && y % 100 != 0);
    let month_days = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[(month - 1) as usize] {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Leap days strictly before `y`, counted from year 0 (a leap year).
    let leaps_before = |y: i64| {
        if y <= 0 {
            0
        } else {
            (y - 1) / 4 - (y - 1) / 100 + (y - 1) / 400 + 1
        }
    };
    let days_before_year = |y: i64| 365 * y + leaps_before(y);
    let day_of_year: i64 = month_days[..(month - 1) as usize].iter().sum::<i64>() + day - 1;
    let days = days_before_year(year) - days_before_year(1970) + day_of_year;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// The canonical form of a timestamp [`rfc3339_seconds`] accepts: what
/// attestd writes back (uppercase `T` and `Z`, no fraction).
pub fn rfc3339_canonical(s: &str) -> String {
    format!("{}T{}Z", &s[..10], &s[11..19])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_seconds("2026-11-28T09:14:03Z"), Some(1_795_857_243));
        assert_eq!(rfc3339_seconds("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(
            rfc3339_seconds("0000-01-01T00:00:00Z"),
            Some(-62_167_219_200)
        );
        assert_eq!(
            rfc3339_seconds("9999-12-31t23:59:59.5z"),
            Some(253_402_300_799)
        );
        assert_eq!(rfc3339_seconds("1900-02-29T00:00:00Z"), None);
        assert_eq!(rfc3339_seconds("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(rfc3339_seconds("2026-11-28T09:14:03.Z"), None);
    }

    #[test]
    fn decimals() {
        assert!(is_decimal("0", false) && is_decimal("-12", true) && is_decimal("10", false));
        assert!(!is_decimal("+1", true) && !is_decimal("01", false) && !is_decimal("-0", true));
        assert!(!is_decimal("-1", false) && !is_decimal("", true) && !is_decimal("-", true));
    }
}
