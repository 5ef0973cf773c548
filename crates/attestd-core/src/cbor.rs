//! A strict, bounded CBOR (RFC 8949) decoder and a minimal encoder.
//!
//! Evidence arrives from devices that attestd does not yet trust, so every
//! byte is parsed under hard limits, before any other work: nesting depth,
//! string and container lengths, total size. Indefinite-length items and
//! duplicate map keys are rejected, as docs/formats.md requires. General-purpose
//! CBOR crates accept both, which is why attestd carries its own decoder.

use crate::error::{Reason, Rejection};

/// A decoded CBOR data item borrowing its strings from the input.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// Major type 0.
    Unsigned(u64),
    /// Major type 1: the value is `-1 - n`.
    Negative(u64),
    /// Major type 2: a byte string.
    Bytes(&'a [u8]),
    /// Major type 3: a UTF-8 text string.
    Text(&'a str),
    /// Major type 4: an array.
    Array(Vec<Value<'a>>),
    /// Entries in encoded order; keys are unique.
    Map(Vec<(Value<'a>, Value<'a>)>),
    /// Major type 6: a tag and the item it wraps.
    Tag(u64, Box<Value<'a>>),
    /// Simple values `false` and `true`.
    Bool(bool),
    /// Simple value `null`.
    Null,
    /// Simple value `undefined`.
    Undefined,
    /// A half, single or double float, widened.
    Float(f64),
}

impl<'a> Value<'a> {
    /// The value as an i128 if it is an integer.
    pub fn as_int(&self) -> Option<i128> {
        match *self {
            Value::Unsigned(n) => Some(n as i128),
            Value::Negative(n) => Some(-1 - n as i128),
            _ => None,
        }
    }

    /// Looks up a map entry by integer key.
    pub fn map_get_int(&self, key: i128) -> Option<&Value<'a>> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_int() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Looks up a map entry by text key.
    pub fn map_get_text(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Text(t) if *t == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short name of the item's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Unsigned(_) => "uint",
            Value::Negative(_) => "negative int",
            Value::Bytes(_) => "bstr",
            Value::Text(_) => "tstr",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Tag(..) => "tag",
            Value::Bool(_) => "bool",
            Value::Null => "null",
            Value::Undefined => "undefined",
            Value::Float(_) => "float",
        }
    }
}

/// Limits applied while decoding.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Maximum nesting of arrays, maps and tags (the top item is depth 1).
    pub max_depth: usize,
    /// Maximum length of a byte or text string.
    pub max_string: usize,
    /// Maximum number of items in an array or entries in a map.
    pub max_items: usize,
}

impl Limits {
    /// The limits of docs/formats.md for an evidence claims set.
    pub const CLAIMS: Limits = Limits {
        max_depth: 8,
        max_string: 256,
        max_items: 64,
    };
}

/// Decodes exactly one item from `input`; trailing bytes are an error.
pub fn decode<'a>(input: &'a [u8], limits: Limits) -> Result<Value<'a>, Rejection> {
    let mut d = Decoder {
        input,
        pos: 0,
        limits,
    };
    let v = d.item(1)?;
    if d.pos != input.len() {
        return Err(d.err(format!(
            "{} trailing bytes after the data item",
            input.len() - d.pos
        )));
    }
    Ok(v)
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    limits: Limits,
}

impl<'a> Decoder<'a> {
    fn err(&self, msg: String) -> Rejection {
        Rejection::new(
            Reason::MalformedCbor,
            format!("at byte {}: {msg}", self.pos),
        )
    }

    fn byte(&mut self) -> Result<u8, Rejection> {
        let b = *self
            .input
            .get(self.pos)
            .ok_or_else(|| self.err("unexpected end of input".into()))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], Rejection> {
        let remaining = (self.input.len() - self.pos) as u64;
        if n > remaining {
            return Err(self.err(format!(
                "length {n} exceeds the {remaining} bytes remaining"
            )));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.input[start..self.pos])
    }

    /// Reads the argument of an initial byte with additional info `info`.
    fn argument(&mut self, info: u8) -> Result<u64, Rejection> {
        Ok(match info {
            0..=23 => info as u64,
            24 => self.byte()? as u64,
            25 => u16::from_be_bytes(self.fixed::<2>()?) as u64,
            26 => u32::from_be_bytes(self.fixed::<4>()?) as u64,
            27 => u64::from_be_bytes(self.fixed::<8>()?),
            31 => return Err(self.err("indefinite-length items are not allowed".into())),
            _ => return Err(self.err(format!("reserved additional information {info}"))),
        })
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Rejection> {
        let s = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn string_len(&mut self, info: u8) -> Result<u64, Rejection> {
        let len = self.argument(info)?;
        if len > self.limits.max_string as u64 {
            return Err(self.err(format!(
                "string of {len} bytes exceeds the limit of {}",
                self.limits.max_string
            )));
        }
        Ok(len)
    }

    fn count(&mut self, info: u8, per_item: u64) -> Result<usize, Rejection> {
        let n = self.argument(info)?;
        if n > self.limits.max_items as u64 {
            return Err(self.err(format!(
                "container of {n} items exceeds the limit of {}",
                self.limits.max_items
            )));
        }
        // Every item takes at least one byte: refuse counts the input cannot hold.
        let remaining = (self.input.len() - self.pos) as u64;
        if n.saturating_mul(per_item) > remaining {
            return Err(self.err(format!("container of {n} items is longer than the input")));
        }
        Ok(n as usize)
    }

    fn item(&mut self, depth: usize) -> Result<Value<'a>, Rejection> {
        let ib = self.byte()?;
        let (major, info) = (ib >> 5, ib & 0x1f);
        let nested = |s: &Self| -> Result<(), Rejection> {
            if depth > s.limits.max_depth {
                Err(s.err(format!("nesting deeper than {}", s.limits.max_depth)))
            } else {
                Ok(())
            }
        };
        match major {
            0 => Ok(Value::Unsigned(self.argument(info)?)),
            1 => Ok(Value::Negative(self.argument(info)?)),
            2 => {
                let n = self.string_len(info)?;
                Ok(Value::Bytes(self.take(n)?))
            }
            3 => {
                let n = self.string_len(info)?;
                let at = self.pos;
                let raw = self.take(n)?;
                std::str::from_utf8(raw).map(Value::Text).map_err(|_| {
                    Rejection::new(
                        Reason::MalformedCbor,
                        format!("at byte {at}: text string is not valid UTF-8"),
                    )
                })
            }
            4 => {
                nested(self)?;
                let n = self.count(info, 1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            5 => {
                nested(self)?;
                let n = self.count(info, 2)?;
                let mut entries: Vec<(Value<'a>, Value<'a>)> = Vec::with_capacity(n);
                // Keys are compared by their canonical encoding, not with
                // `==`: NaN never equals itself, so two NaN keys passed an
                // equality check, and 0.0 == -0.0 although they are
                // different CBOR values. A canonical key is never longer
                // than the key as encoded, so this holds at most the input.
                let mut keys: Vec<Vec<u8>> = Vec::with_capacity(n);
                for _ in 0..n {
                    let at = self.pos;
                    let k = self.item(depth + 1)?;
                    let mut canonical = Vec::new();
                    canonical_key(&k, &mut canonical);
                    if keys.contains(&canonical) {
                        return Err(Rejection::new(
                            Reason::MalformedCbor,
                            format!("at byte {at}: duplicate map key"),
                        ));
                    }
                    keys.push(canonical);
                    let v = self.item(depth + 1)?;
                    entries.push((k, v));
                }
                Ok(Value::Map(entries))
            }
            6 => {
                nested(self)?;
                let tag = self.argument(info)?;
                Ok(Value::Tag(tag, Box::new(self.item(depth + 1)?)))
            }
            _ => match info {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 => Ok(Value::Null),
                23 => Ok(Value::Undefined),
                25 => Ok(Value::Float(f16_to_f64(u16::from_be_bytes(self.fixed()?)))),
                26 => Ok(Value::Float(f32::from_be_bytes(self.fixed()?) as f64)),
                27 => Ok(Value::Float(f64::from_be_bytes(self.fixed()?))),
                31 => Err(self.err("unexpected break code".into())),
                _ => Err(self.err(format!("unsupported simple value {info}"))),
            },
        }
    }
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    let mag = match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    };
    sign * mag
}

/// Appends the canonical encoding of a decoded item to `out`: the
/// deterministic encoding of RFC 8949 §4.2 (shortest heads, floats in the
/// shortest width that keeps their value, map entries sorted by their
/// encoded keys). Two map keys are the same key exactly when their
/// canonical encodings are equal, so `1` written as `01` or `18 01` is one
/// key, as is 1.0 in half, single or double precision.
///
/// Decisions, for keys (docs/formats.md rejects duplicates):
/// - Every NaN is the same key, encoded `f9 7e 00`: the decoder does not keep
///   NaN payloads, and RFC 8949 §4.2.2 encodes every NaN that way.
/// - 0.0 (`f9 00 00`) and -0.0 (`f9 80 00`) are different keys: they are
///   different CBOR values with different encodings.
/// - An integer and a float of the same number (1 and 1.0) are different
///   keys, as in the CBOR data model.
fn canonical_key(v: &Value<'_>, out: &mut Vec<u8>) {
    let mut e = Encoder {
        buf: std::mem::take(out),
    };
    match v {
        Value::Unsigned(n) => {
            e.head(0, *n);
        }
        Value::Negative(n) => {
            e.head(1, *n);
        }
        Value::Bytes(b) => {
            e.bytes(b);
        }
        Value::Text(t) => {
            e.text(t);
        }
        Value::Array(items) => {
            e.array(items.len());
            for i in items {
                canonical_key(i, &mut e.buf);
            }
        }
        Value::Map(entries) => {
            let mut encoded: Vec<(Vec<u8>, Vec<u8>)> = entries
                .iter()
                .map(|(k, v)| {
                    let (mut ke, mut ve) = (Vec::new(), Vec::new());
                    canonical_key(k, &mut ke);
                    canonical_key(v, &mut ve);
                    (ke, ve)
                })
                .collect();
            encoded.sort();
            e.map(encoded.len());
            for (k, v) in encoded {
                e.raw(&k).raw(&v);
            }
        }
        Value::Tag(t, inner) => {
            e.tag(*t);
            canonical_key(inner, &mut e.buf);
        }
        Value::Bool(b) => {
            e.bool(*b);
        }
        Value::Null => {
            e.buf.push(0xf6);
        }
        Value::Undefined => {
            e.buf.push(0xf7);
        }
        Value::Float(f) => canonical_float(*f, &mut e.buf),
    }
    *out = e.buf;
}

/// The shortest of half, single and double precision that holds `f`
/// exactly (sign of zero included); every NaN as `f9 7e 00`.
fn canonical_float(f: f64, out: &mut Vec<u8>) {
    if f.is_nan() {
        out.extend_from_slice(&[0xf9, 0x7e, 0x00]);
    } else if let Some(h) = f64_to_f16_exact(f) {
        out.push(0xf9);
        out.extend_from_slice(&h.to_be_bytes());
    } else if (f as f32) as f64 == f {
        out.push(0xfa);
        out.extend_from_slice(&(f as f32).to_be_bytes());
    } else {
        out.push(0xfb);
        out.extend_from_slice(&f.to_be_bytes());
    }
}

/// The half-precision bits of `f` if it has an exact one (not for NaN).
fn f64_to_f16_exact(f: f64) -> Option<u16> {
    let sign: u16 = if f.is_sign_negative() { 0x8000 } else { 0 };
    let a = f.abs();
    let candidate = if a == 0.0 {
        0
    } else if a.is_infinite() {
        0x7c00
    } else if a < 2f64.powi(-14) {
        // Subnormal: a multiple of 2^-24 below 2^-14 (scaling by a power of
        // two is exact here).
        let k = a * 2f64.powi(24);
        if k.fract() != 0.0 || k >= 1024.0 {
            return None;
        }
        k as u16
    } else {
        let bits = a.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
        let mant = bits & ((1u64 << 52) - 1);
        if exp > 15 || mant & ((1u64 << 42) - 1) != 0 {
            return None;
        }
        (((exp + 15) as u16) << 10) | (mant >> 42) as u16
    };
    let h = sign | candidate;
    (f16_to_f64(h).to_bits() == f.to_bits()).then_some(h)
}

/// A minimal CBOR encoder producing preferred (shortest) encodings.
#[derive(Default, Debug)]
pub struct Encoder {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Writes an initial byte with its argument in the shortest form.
    pub fn head(&mut self, major: u8, arg: u64) -> &mut Self {
        let m = major << 5;
        if arg < 24 {
            self.buf.push(m | arg as u8);
        } else if arg <= u8::MAX as u64 {
            self.buf.extend_from_slice(&[m | 24, arg as u8]);
        } else if arg <= u16::MAX as u64 {
            self.buf.push(m | 25);
            self.buf.extend_from_slice(&(arg as u16).to_be_bytes());
        } else if arg <= u32::MAX as u64 {
            self.buf.push(m | 26);
            self.buf.extend_from_slice(&(arg as u32).to_be_bytes());
        } else {
            self.buf.push(m | 27);
            self.buf.extend_from_slice(&arg.to_be_bytes());
        }
        self
    }

    /// Writes an unsigned integer.
    pub fn uint(&mut self, n: u64) -> &mut Self {
        self.head(0, n)
    }

    /// Writes an integer, negative ones as major type 1.
    pub fn int(&mut self, n: i64) -> &mut Self {
        if n >= 0 {
            self.head(0, n as u64)
        } else {
            self.head(1, (-1 - n) as u64)
        }
    }

    /// Writes a byte string.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.head(2, b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    /// Writes a text string.
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.head(3, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
        self
    }

    /// Writes the head of an array of `len` items; the items follow.
    pub fn array(&mut self, len: usize) -> &mut Self {
        self.head(4, len as u64)
    }

    /// Writes the head of a map of `len` entries; keys and values follow.
    pub fn map(&mut self, len: usize) -> &mut Self {
        self.head(5, len as u64)
    }

    /// Writes a tag; the tagged item follows.
    pub fn tag(&mut self, tag: u64) -> &mut Self {
        self.head(6, tag)
    }

    /// Writes `true` or `false`.
    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.buf.push(if b { 0xf5 } else { 0xf4 });
        self
    }

    /// Appends bytes that are already a CBOR item.
    pub fn raw(&mut self, item: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(item);
        self
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const L: Limits = Limits::CLAIMS;

    fn reason(input: &[u8]) -> String {
        decode(input, L).unwrap_err().message
    }

    #[test]
    fn decodes_rfc8949_examples() {
        assert_eq!(decode(&[0x00], L).unwrap(), Value::Unsigned(0));
        assert_eq!(decode(&[0x18, 0x64], L).unwrap(), Value::Unsigned(100));
        assert_eq!(decode(&[0x38, 0x63], L).unwrap(), Value::Negative(99));
        assert_eq!(decode(&[0x38, 0x63], L).unwrap().as_int(), Some(-100));
        assert_eq!(decode(&[0xf9, 0x3c, 0x00], L).unwrap(), Value::Float(1.0));
        assert_eq!(
            decode(&[0x82, 0x61, 0x61, 0xa1, 0x61, 0x62, 0x61, 0x63], L).unwrap(),
            Value::Array(vec![
                Value::Text("a"),
                Value::Map(vec![(Value::Text("b"), Value::Text("c"))])
            ])
        );
    }

    #[test]
    fn rejects_what_formats_md_forbids() {
        assert!(reason(&[0x9f, 0x01, 0xff]).contains("indefinite"));
        assert!(reason(&[0x5f, 0x41, 0x00, 0xff]).contains("indefinite"));
        assert!(reason(&[0xa2, 0x01, 0x02, 0x01, 0x03]).contains("duplicate map key"));
        // 1 encoded two ways is still the same key.
        assert!(reason(&[0xa2, 0x01, 0x02, 0x18, 0x01, 0x03]).contains("duplicate"));
        assert!(reason(&[0x01, 0x02]).contains("trailing"));
        assert!(reason(&[0x62, 0xff, 0xfe]).contains("UTF-8"));
        assert!(
            reason(&[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).contains("exceeds")
        );
        assert!(reason(&[0x98, 0x48]).contains("limit"));
        assert!(reason(&[0x98, 0x30]).contains("longer than the input"));
        let long = [&[0x59, 0x01, 0x01][..], &[0u8; 257]].concat();
        assert!(reason(&long).contains("limit of 256"));
        // 8 nested arrays are fine, 9 are not.
        let ok = [vec![0x81u8; 7], vec![0x80]].concat();
        assert!(decode(&ok, L).is_ok());
        let deep = [vec![0x81u8; 8], vec![0x80]].concat();
        assert!(reason(&deep).contains("nesting"));
        assert!(reason(&[]).contains("end of input"));
        assert!(reason(&[0xff]).contains("break"));
        assert_eq!(
            decode(&[0x1c], L).unwrap_err().reason,
            Reason::MalformedCbor
        );
    }

    #[test]
    fn map_keys_are_duplicates_when_their_canonical_encodings_are_equal() {
        let dup = |input: &[u8]| reason(input).contains("duplicate map key");
        // Two NaN keys (half precision 0x7e00): NaN != NaN, but the same key.
        assert!(dup(&[0xa2, 0xf9, 0x7e, 0x00, 0x01, 0xf9, 0x7e, 0x00, 0x02]));
        // NaN in half and double precision, and with another payload.
        let nan64 = [0xfb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0];
        assert!(dup(
            &[&[0xa2, 0xf9, 0x7e, 0x00, 0x01][..], &nan64, &[0x02]].concat()
        ));
        assert!(dup(&[0xa2, 0xf9, 0x7e, 0x00, 0x01, 0xf9, 0x7e, 0x01, 0x02]));
        // 1.0 in half, single and double precision is one key.
        let one32 = [0xfa, 0x3f, 0x80, 0x00, 0x00];
        let one64 = [0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0];
        assert!(dup(
            &[&[0xa2, 0xf9, 0x3c, 0x00, 0x01][..], &one32, &[0x02]].concat()
        ));
        assert!(dup(
            &[&[0xa2][..], &one32, &[0x01], &one64, &[0x02]].concat()
        ));
        // Two -0.0 keys are one key; -0.0 and 0.0 are two (different values,
        // different encodings), as are 1 and 1.0.
        assert!(dup(&[0xa2, 0xf9, 0x80, 0x00, 0x01, 0xf9, 0x80, 0x00, 0x02]));
        assert!(decode(&[0xa2, 0xf9, 0x80, 0x00, 0x01, 0xf9, 0x00, 0x00, 0x02], L).is_ok());
        assert!(decode(&[0xa2, 0x01, 0x01, 0xf9, 0x3c, 0x00, 0x02], L).is_ok());
        // Infinity, a subnormal half and a value only a double holds.
        assert!(dup(&[
            0xa2, 0xf9, 0x7c, 0x00, 0x01, 0xfa, 0x7f, 0x80, 0x00, 0x00, 0x02
        ]));
        assert!(dup(&[
            0xa2, 0xf9, 0x00, 0x01, 0x01, 0xfa, 0x33, 0x80, 0x00, 0x00, 0x02
        ]));
        let tenth = [0xfb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a];
        assert!(dup(
            &[&[0xa2][..], &tenth, &[0x01], &tenth, &[0x02]].concat()
        ));
        // Container keys: the same map with its entries in another order.
        assert!(dup(&[
            0xa2, 0xa2, 0x01, 0x02, 0x03, 0x04, 0x00, 0xa2, 0x03, 0x04, 0x18, 0x01, 0x02, 0x00
        ]));
        assert!(decode(&[0xa2, 0x81, 0x01, 0x00, 0x81, 0x02, 0x00], L).is_ok());
    }

    #[test]
    fn canonical_floats_use_the_shortest_exact_width() {
        let enc = |f: f64| {
            let mut v = Vec::new();
            canonical_float(f, &mut v);
            v
        };
        // RFC 8949 appendix A.
        assert_eq!(enc(0.0), [0xf9, 0x00, 0x00]);
        assert_eq!(enc(-0.0), [0xf9, 0x80, 0x00]);
        assert_eq!(enc(1.5), [0xf9, 0x3e, 0x00]);
        assert_eq!(enc(65504.0), [0xf9, 0x7b, 0xff]);
        assert_eq!(enc(5.960464477539063e-8), [0xf9, 0x00, 0x01]);
        assert_eq!(enc(0.00006103515625), [0xf9, 0x04, 0x00]);
        assert_eq!(enc(-4.0), [0xf9, 0xc4, 0x00]);
        assert_eq!(enc(100000.0), [0xfa, 0x47, 0xc3, 0x50, 0x00]);
        assert_eq!(enc(3.4028234663852886e38), [0xfa, 0x7f, 0x7f, 0xff, 0xff]);
        assert_eq!(
            enc(1.1),
            [0xfb, 0x3f, 0xf1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a]
        );
        assert_eq!(enc(f64::INFINITY), [0xf9, 0x7c, 0x00]);
        assert_eq!(enc(f64::NEG_INFINITY), [0xf9, 0xfc, 0x00]);
        assert_eq!(enc(f64::NAN), [0xf9, 0x7e, 0x00]);
    }

    #[test]
    fn encoder_uses_shortest_heads() {
        let mut e = Encoder::new();
        e.uint(23)
            .uint(24)
            .uint(256)
            .int(-1)
            .int(-500)
            .text("hi")
            .bytes(&[1]);
        assert_eq!(
            e.into_bytes(),
            vec![
                0x17, 0x18, 0x18, 0x19, 0x01, 0x00, 0x20, 0x39, 0x01, 0xf3, 0x62, b'h', b'i', 0x41,
                1
            ]
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&data, L);
        }

        /// Any float key written twice, in any width that holds it, is a
        /// duplicate; two floats with different bits (other than NaNs) are not.
        #[test]
        fn float_keys_are_compared_by_encoding(a in any::<f64>(), b in any::<f64>()) {
            let map = |x: &[u8], y: &[u8]| [&[0xa2][..], x, &[0x00], y, &[0x00]].concat();
            let f64_item = |f: f64| [&[0xfb][..], &f.to_be_bytes()].concat();
            let mut short = Vec::new();
            canonical_float(a, &mut short);
            prop_assert!(reason(&map(&f64_item(a), &f64_item(a))).contains("duplicate"));
            prop_assert!(reason(&map(&short, &f64_item(a))).contains("duplicate"));
            let same = a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
            prop_assert_eq!(decode(&map(&f64_item(a), &f64_item(b)), L).is_err(), same);
        }
    }
}
