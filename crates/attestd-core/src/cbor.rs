//! A strict, bounded CBOR (RFC 8949) decoder and a minimal encoder.
//!
//! Evidence arrives from devices that attestd does not yet trust, so every
//! byte is parsed under hard limits, before any other work: nesting depth,
//! string and container lengths, total size. Indefinite-length items and
//! duplicate map keys are rejected, as formats.md requires. General-purpose
//! CBOR crates accept both, which is why attestd carries its own decoder.

use crate::error::{Reason, Rejection};

/// A decoded CBOR data item borrowing its strings from the input.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// Major type 0.
    Unsigned(u64),
    /// Major type 1: the value is `-1 - n`.
    Negative(u64),
    Bytes(&'a [u8]),
    Text(&'a str),
    Array(Vec<Value<'a>>),
    /// Entries in encoded order; keys are unique.
    Map(Vec<(Value<'a>, Value<'a>)>),
    Tag(u64, Box<Value<'a>>),
    Bool(bool),
    Null,
    Undefined,
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
    /// The limits of formats.md for an evidence claims set.
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
                for _ in 0..n {
                    let at = self.pos;
                    let k = self.item(depth + 1)?;
                    if entries.iter().any(|(existing, _)| *existing == k) {
                        return Err(Rejection::new(
                            Reason::MalformedCbor,
                            format!("at byte {at}: duplicate map key"),
                        ));
                    }
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

/// A minimal CBOR encoder producing preferred (shortest) encodings.
#[derive(Default, Debug)]
pub struct Encoder {
    pub buf: Vec<u8>,
}

impl Encoder {
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

    pub fn uint(&mut self, n: u64) -> &mut Self {
        self.head(0, n)
    }

    pub fn int(&mut self, n: i64) -> &mut Self {
        if n >= 0 {
            self.head(0, n as u64)
        } else {
            self.head(1, (-1 - n) as u64)
        }
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.head(2, b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    pub fn text(&mut self, s: &str) -> &mut Self {
        self.head(3, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
        self
    }

    pub fn array(&mut self, len: usize) -> &mut Self {
        self.head(4, len as u64)
    }

    pub fn map(&mut self, len: usize) -> &mut Self {
        self.head(5, len as u64)
    }

    pub fn tag(&mut self, tag: u64) -> &mut Self {
        self.head(6, tag)
    }

    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.buf.push(if b { 0xf5 } else { 0xf4 });
        self
    }

    /// Appends bytes that are already a CBOR item.
    pub fn raw(&mut self, item: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(item);
        self
    }

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
    }
}
