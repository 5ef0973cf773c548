//! CBOR diagnostic notation (RFC 8949 §8), the part the documents use, read
//! into a tree that can be encoded (preferred serialization, map entries in
//! the order written) or compared with decoded CBOR.

use attestd_client::core::cbor::{Encoder, Value};

// Integers, text, h'' byte strings, arrays, maps, tags, true/false/null,
// and /comments/. `...` inside h'' leaves bytes out (prefix...suffix).

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Diag {
    Int(i128),
    Bytes(Vec<u8>),
    /// Bytes shown only by their start and end.
    Elided(Vec<u8>, Vec<u8>),
    Text(String),
    Array(Vec<Diag>),
    Map(Vec<(Diag, Diag)>),
    Tag(u64, Box<Diag>),
    Bool(bool),
    Null,
}

pub(crate) struct DiagParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl DiagParser<'_> {
    pub(crate) fn parse(text: &str) -> Result<Diag, String> {
        let mut p = DiagParser {
            s: text.as_bytes(),
            pos: 0,
        };
        let v = p.item()?;
        p.skip();
        if p.pos != p.s.len() {
            return Err(format!(
                "diagnostic notation: trailing text at byte {}",
                p.pos
            ));
        }
        Ok(v)
    }

    fn skip(&mut self) {
        loop {
            while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            if self.pos < self.s.len() && self.s[self.pos] == b'/' {
                self.pos += 1;
                while self.pos < self.s.len() && self.s[self.pos] != b'/' {
                    self.pos += 1;
                }
                self.pos += 1;
                continue;
            }
            return;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip();
        self.s.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "diagnostic notation: expected '{}' at byte {}",
                c as char, self.pos
            ))
        }
    }

    fn word(&mut self) -> &str {
        let start = self.pos;
        while self.pos < self.s.len()
            && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'-')
        {
            self.pos += 1;
        }
        std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("")
    }

    /// Items separated by commas up to `close`.
    fn seq(
        &mut self,
        close: u8,
        mut one: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            one(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => {
                    return Err(format!(
                        "diagnostic notation: expected ',' at byte {}",
                        self.pos
                    ))
                }
            }
        }
    }

    fn item(&mut self) -> Result<Diag, String> {
        match self.peek().ok_or("diagnostic notation: unexpected end")? {
            b'[' => {
                self.pos += 1;
                let mut v = Vec::new();
                self.seq(b']', |p| {
                    v.push(p.item()?);
                    Ok(())
                })?;
                Ok(Diag::Array(v))
            }
            b'{' => {
                self.pos += 1;
                let mut v = Vec::new();
                self.seq(b'}', |p| {
                    let k = p.item()?;
                    p.expect(b':')?;
                    v.push((k, p.item()?));
                    Ok(())
                })?;
                Ok(Diag::Map(v))
            }
            b'"' => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.s.get(self.pos) {
                        None => return Err("diagnostic notation: unclosed text".into()),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            out.push(*self.s.get(self.pos + 1).ok_or("bad escape")?);
                            self.pos += 2;
                        }
                        Some(c) => {
                            out.push(*c);
                            self.pos += 1;
                        }
                    }
                }
                self.pos += 1;
                Ok(Diag::Text(
                    String::from_utf8(out).map_err(|e| e.to_string())?,
                ))
            }
            b'h' if self.s.get(self.pos + 1) == Some(&b'\'') => {
                self.pos += 2;
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos] != b'\'' {
                    self.pos += 1;
                }
                let hex_text: String = std::str::from_utf8(&self.s[start..self.pos])
                    .map_err(|e| e.to_string())?
                    .split_whitespace()
                    .collect();
                self.pos += 1;
                match hex_text.split_once("...") {
                    Some((a, b)) => Ok(Diag::Elided(unhex(a)?, unhex(b)?)),
                    None => Ok(Diag::Bytes(unhex(&hex_text)?)),
                }
            }
            b'-' | b'0'..=b'9' => {
                let w = self.word().to_owned();
                let n: i128 = w
                    .parse()
                    .map_err(|_| format!("diagnostic notation: not an integer: {w}"))?;
                if self.peek() == Some(b'(') {
                    self.pos += 1;
                    let inner = self.item()?;
                    self.expect(b')')?;
                    let tag = u64::try_from(n).map_err(|_| "negative tag")?;
                    return Ok(Diag::Tag(tag, Box::new(inner)));
                }
                Ok(Diag::Int(n))
            }
            _ => match self.word() {
                "true" => Ok(Diag::Bool(true)),
                "false" => Ok(Diag::Bool(false)),
                "null" => Ok(Diag::Null),
                w => Err(format!("diagnostic notation: unknown word {w:?}")),
            },
        }
    }
}

/// Encodes diagnostic notation in preferred (shortest) form, map entries in
/// the order written.
pub(crate) fn encode(d: &Diag, e: &mut Encoder) -> Result<(), String> {
    match d {
        Diag::Int(n) if *n >= 0 => {
            e.uint(u64::try_from(*n).map_err(|_| "integer too large")?);
        }
        Diag::Int(n) => {
            e.head(1, u64::try_from(-1 - *n).map_err(|_| "integer too small")?);
        }
        Diag::Bytes(b) => {
            e.bytes(b);
        }
        Diag::Elided(..) => return Err("bytes left out (...) cannot be encoded".into()),
        Diag::Text(t) => {
            e.text(t);
        }
        Diag::Array(v) => {
            e.array(v.len());
            for x in v {
                encode(x, e)?;
            }
        }
        Diag::Map(v) => {
            e.map(v.len());
            for (k, x) in v {
                encode(k, e)?;
                encode(x, e)?;
            }
        }
        Diag::Tag(t, x) => {
            e.tag(*t);
            encode(x, e)?;
        }
        Diag::Bool(b) => {
            e.bool(*b);
        }
        Diag::Null => {
            e.raw(&[0xf6]);
        }
    }
    Ok(())
}

/// Whether decoded CBOR is what the notation shows (`at` names the place).
pub(crate) fn matches(d: &Diag, v: &Value<'_>, at: &str) -> Result<(), String> {
    let differ = || {
        Err(format!(
            "{at}: the document shows {d:?}, the bytes hold {v:?}"
        ))
    };
    match (d, v) {
        (Diag::Int(n), _) if v.as_int() == Some(*n) => Ok(()),
        (Diag::Bytes(b), Value::Bytes(x)) if b.as_slice() == *x => Ok(()),
        (Diag::Elided(a, b), Value::Bytes(x))
            if x.starts_with(a) && x.ends_with(b) && x.len() >= a.len() + b.len() =>
        {
            Ok(())
        }
        (Diag::Text(t), Value::Text(x)) if t == x => Ok(()),
        (Diag::Bool(b), Value::Bool(x)) if b == x => Ok(()),
        (Diag::Null, Value::Null) => Ok(()),
        (Diag::Tag(t, i), Value::Tag(x, j)) if t == x => matches(i, j, &format!("{at}/tag {t}")),
        (Diag::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                matches(x, y, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (Diag::Map(a), Value::Map(b)) if a.len() == b.len() => {
            for (i, ((k, x), (l, y))) in a.iter().zip(b).enumerate() {
                matches(k, l, &format!("{at}{{key {i}}}"))?;
                matches(x, y, &format!("{at}{{{k:?}}}"))?;
            }
            Ok(())
        }
        _ => differ(),
    }
}

/// Bytes from hex (lowercase or not, no separators).
pub(crate) fn unhex(s: &str) -> Result<Vec<u8>, String> {
    s.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [_, _] => u8::from_str_radix(std::str::from_utf8(pair).map_err(|e| e.to_string())?, 16)
                .map_err(|e| format!("{s}: {e}")),
            _ => Err(format!("odd number of hex digits: {s}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use attestd_client::core::ids::hex;

    /// The reader reads what the documents need (and fails on
    /// what it does not know rather than guess).
    #[test]
    fn the_diagnostic_notation_reader_reads_the_documents_notation() {
        let d = DiagParser::parse("18([h'a1 01 26', {}, h'ab...cd', -7, \"x\\\"y\", true]) / c /")
            .unwrap();
        let Diag::Tag(18, inner) = d else {
            panic!("tag")
        };
        let Diag::Array(items) = *inner else {
            panic!("array")
        };
        assert_eq!(items[0], Diag::Bytes(vec![0xa1, 0x01, 0x26]));
        assert_eq!(items[1], Diag::Map(vec![]));
        assert_eq!(items[2], Diag::Elided(vec![0xab], vec![0xcd]));
        assert_eq!(items[3], Diag::Int(-7));
        assert_eq!(items[4], Diag::Text("x\"y".into()));
        let mut e = Encoder::new();
        encode(
            &DiagParser::parse("{1: -7, 265: [\"B\", 1]}").unwrap(),
            &mut e,
        )
        .unwrap();
        assert_eq!(hex(&e.into_bytes()), "a2012619010982614201");
        assert!(DiagParser::parse("[1, 2").is_err());
        assert!(DiagParser::parse("1.5").is_err());
        assert!(DiagParser::parse("[1] 2").is_err());
    }
}
