//! A CBOR writer for decoded [`Value`]s, written from RFC 8949 and not from
//! attestd's decoder, so the two check each other: a decoded value written
//! back must decode to the same value, never longer than it came in.
//!
//! The library's own encoder only writes heads and strings (what the SDK
//! needs); it has no writer for a whole `Value`, hence this one.

use std::sync::OnceLock;

use attestd_core::cbor::{Limits, Value};

/// The head of an item: major type and argument in the shortest form
/// (RFC 8949 §4.2.1, "preferred serialization").
fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
    let m = major << 5;
    match arg {
        0..=23 => out.push(m | arg as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, arg as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(arg as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(arg as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

/// The value of a half-precision float, from IEEE 754's definition.
pub fn half_value(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let mant = f64::from(h & 0x3ff);
    match exp {
        0 => sign * mant / 16_777_216.0, // mant * 2^-24
        31 if mant == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        e => sign * (1024.0 + mant) * 2f64.powi(e - 25),
    }
}

/// Every half-precision value that is a number, by the bits of its f64
/// value: the shortest-width lookup needs no conversion arithmetic.
fn halves() -> &'static [(u64, u16)] {
    static TABLE: OnceLock<Vec<(u64, u16)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t: Vec<(u64, u16)> = (0..=u16::MAX)
            .filter(|&h| !half_value(h).is_nan())
            .map(|h| (half_value(h).to_bits(), h))
            .collect();
        t.sort_unstable();
        t
    })
}

/// A float in the shortest of half, single and double precision that keeps
/// its value exactly (the sign of zero included); NaN as `f9 7e 00`.
fn float(out: &mut Vec<u8>, f: f64) {
    if f.is_nan() {
        out.extend_from_slice(&[0xf9, 0x7e, 0x00]);
        return;
    }
    let bits = f.to_bits();
    if let Ok(i) = halves().binary_search_by_key(&bits, |&(b, _)| b) {
        out.push(0xf9);
        out.extend_from_slice(&halves()[i].1.to_be_bytes());
    } else if f64::from(f as f32).to_bits() == bits {
        out.push(0xfa);
        out.extend_from_slice(&(f as f32).to_bits().to_be_bytes());
    } else {
        out.push(0xfb);
        out.extend_from_slice(&bits.to_be_bytes());
    }
}

fn write(out: &mut Vec<u8>, v: &Value<'_>, sort_maps: bool) {
    match v {
        Value::Unsigned(n) => head(out, 0, *n),
        Value::Negative(n) => head(out, 1, *n),
        Value::Bytes(b) => {
            head(out, 2, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Text(t) => {
            head(out, 3, t.len() as u64);
            out.extend_from_slice(t.as_bytes());
        }
        Value::Array(items) => {
            head(out, 4, items.len() as u64);
            for i in items {
                write(out, i, sort_maps);
            }
        }
        Value::Map(entries) => {
            head(out, 5, entries.len() as u64);
            let mut encoded: Vec<Vec<u8>> = entries
                .iter()
                .map(|(k, v)| {
                    let mut e = Vec::new();
                    write(&mut e, k, sort_maps);
                    write(&mut e, v, sort_maps);
                    e
                })
                .collect();
            if sort_maps {
                // Keys are unique, so sorting whole entries sorts by key.
                encoded.sort();
            }
            for e in encoded {
                out.extend_from_slice(&e);
            }
        }
        Value::Tag(t, inner) => {
            head(out, 6, *t);
            write(out, inner, sort_maps);
        }
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
        Value::Undefined => out.push(0xf7),
        Value::Float(f) => float(out, *f),
    }
}

/// The preferred serialization of `v`, map entries in their decoded order.
pub fn encode(v: &Value<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, v, false);
    out
}

/// The deterministic encoding of RFC 8949 §4.2.1 (map entries sorted by
/// their encoded keys): two map keys are the same key exactly when these
/// are equal (docs/formats.md forbids duplicate keys).
pub fn canonical(v: &Value<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, v, true);
    out
}

/// Equality of decoded values where every NaN equals every NaN and floats
/// are otherwise compared by their bits (so 0.0 and -0.0 differ).
pub fn same(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => {
            (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k1, v1), (k2, v2))| same(k1, k2) && same(v1, v2))
        }
        (Value::Tag(t1, x), Value::Tag(t2, y)) => t1 == t2 && same(x, y),
        _ => a == b,
    }
}

/// Nesting of containers (arrays, maps, tags): 0 for a scalar.
pub fn container_depth(v: &Value<'_>) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(container_depth).max().unwrap_or(0),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| container_depth(k).max(container_depth(v)))
                .max()
                .unwrap_or(0)
        }
        Value::Tag(_, inner) => 1 + container_depth(inner),
        _ => 0,
    }
}

/// Which of `limits` the value breaks, if any (for the assertion message).
pub fn breaks(v: &Value<'_>, limits: &Limits) -> Option<String> {
    if container_depth(v) > limits.max_depth {
        return Some(format!(
            "containers nest {} deep, limit {}",
            container_depth(v),
            limits.max_depth
        ));
    }
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Bytes(b) if b.len() > limits.max_string => {
                return Some(format!("bstr of {} bytes", b.len()))
            }
            Value::Text(t) if t.len() > limits.max_string => {
                return Some(format!("tstr of {} bytes", t.len()))
            }
            Value::Array(items) => {
                if items.len() > limits.max_items {
                    return Some(format!("array of {} items", items.len()));
                }
                stack.extend(items);
            }
            Value::Map(entries) => {
                if entries.len() > limits.max_items {
                    return Some(format!("map of {} entries", entries.len()));
                }
                for (k, v) in entries {
                    stack.push(k);
                    stack.push(v);
                }
            }
            Value::Tag(_, inner) => stack.push(inner),
            _ => {}
        }
    }
    None
}

/// Whether every map in `v` has keys with distinct canonical encodings.
pub fn keys_unique(v: &Value<'_>) -> bool {
    match v {
        Value::Array(items) => items.iter().all(keys_unique),
        Value::Map(entries) => {
            let mut keys: Vec<Vec<u8>> = entries.iter().map(|(k, _)| canonical(k)).collect();
            keys.sort();
            let n = keys.len();
            keys.dedup();
            keys.len() == n
                && entries
                    .iter()
                    .all(|(k, v)| keys_unique(k) && keys_unique(v))
        }
        Value::Tag(_, inner) => keys_unique(inner),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_take_the_shortest_exact_width() {
        let enc = |f: f64| {
            let mut v = Vec::new();
            float(&mut v, f);
            v
        };
        // RFC 8949 appendix A.
        assert_eq!(enc(0.0), [0xf9, 0x00, 0x00]);
        assert_eq!(enc(-0.0), [0xf9, 0x80, 0x00]);
        assert_eq!(enc(1.5), [0xf9, 0x3e, 0x00]);
        assert_eq!(enc(65504.0), [0xf9, 0x7b, 0xff]);
        assert_eq!(enc(5.960464477539063e-8), [0xf9, 0x00, 0x01]);
        assert_eq!(enc(100000.0), [0xfa, 0x47, 0xc3, 0x50, 0x00]);
        assert_eq!(enc(1.1)[0], 0xfb);
        assert_eq!(enc(f64::NEG_INFINITY), [0xf9, 0xfc, 0x00]);
    }

    #[test]
    fn heads_are_shortest() {
        let mut v = Vec::new();
        for n in [0, 23, 24, 255, 256, 65535, 65536, u32::MAX as u64, u64::MAX] {
            head(&mut v, 0, n);
        }
        assert_eq!(v.len(), 1 + 1 + 2 + 2 + 3 + 3 + 5 + 5 + 9);
    }
}
