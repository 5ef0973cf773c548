//! Strict JSON for the signed payloads of stations and release engineering
//! (docs/formats.md §2): an object wherever the format has an object, unknown and
//! duplicate fields refused, numbers read exactly (serde_json's
//! `float_roundtrip`, enabled in the workspace), and errors that name the
//! field path and say what the format expects, never a Rust type.

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::Rejection;
use crate::reject;

/// Parses a payload into `T`, which must be written as a JSON object. The
/// error names the field path (`parameters[2].as_left: expected a number,
/// got a string`).
pub fn parse_json<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Rejection> {
    if std::str::from_utf8(payload).is_err() {
        return Err(reject!(MalformedJson, "payload is not UTF-8"));
    }
    let mut de = serde_json::Deserializer::from_slice(payload);
    let value: Object<T> = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let msg = in_format_terms(&strip_position(&e.into_inner().to_string()));
        if path == "." || path.is_empty() {
            reject!(MalformedJson, "{msg}")
        } else {
            reject!(MalformedJson, "{path}: {msg}")
        }
    })?;
    de.end().map_err(|e| {
        reject!(
            MalformedJson,
            "{}",
            in_format_terms(&strip_position(&e.to_string()))
        )
    })?;
    Ok(value.0)
}

// Why hand-written: serde's derived `Deserialize` for a struct accepts a JSON
// array as well as an object, reading the fields by position (it always
// generates `visit_seq`, and no attribute turns that off). A calibration
// parameter written `["spo2_offset", "%", 0.0, -0.5, 0.5, 0.04, 0.31]` was
// read with as_found and as_left swapped against what the writer meant, and
// `deny_unknown_fields` does not apply to arrays. These helpers ask the
// deserializer for a map only (`deserialize_map`), so anything but an object
// is refused, and then hand that map to the derived impl through
// `MapAccessDeserializer`, which keeps `deny_unknown_fields`, duplicate-field
// detection and serde_path_to_error's field paths working. Every struct-typed
// field of a payload document goes through one of them
// (`#[serde(deserialize_with = ...)]`), and `parse_json` applies `object` to
// the top level.

/// Deserializes a struct from a JSON object only.
pub fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(V(PhantomData))
}

/// Deserializes a list of structs, each from a JSON object only.
pub fn objects<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            // No capacity from a size hint: the input decides how much is
            // allocated, and the payload is at most 64 KiB.
            let mut out = Vec::new();
            while let Some(Object(t)) = seq.next_element::<Object<T>>()? {
                out.push(t);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V(PhantomData))
}

/// Reads a whole number in `min..=max`, saying so when it is not ("expected a
/// whole number 0..4, got 7"); for fields whose range is narrower than their
/// Rust type's. Use it from a one-line function per range for
/// `#[serde(deserialize_with = ...)]`.
pub fn whole_number<'de, D: Deserializer<'de>>(d: D, min: u64, max: u64) -> Result<u64, D::Error> {
    struct V(u64, u64);
    impl<'de> Visitor<'de> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a whole number {}..{}", self.0, self.1)
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<u64, E> {
            if (self.0..=self.1).contains(&n) {
                Ok(n)
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
            }
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<u64, E> {
            match u64::try_from(n) {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(n), &self)),
            }
        }
    }
    d.deserialize_u64(V(min, max))
}

/// A `T` that was written as a JSON object.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object(d).map(Object)
    }
}

/// serde_json appends " at line L column C"; the path already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// Rewrites serde's "invalid type: floating point `1.5`, expected u64" into
/// the format's terms: "expected a whole number 0..2^64-1, got 1.5". serde
/// builds these messages from the Rust type being filled in, which a station
/// team writing JSON neither knows nor should need to; doing it here, in the
/// one place every payload is parsed, covers every field, including ones
/// added later. Messages of other shapes pass through unchanged.
fn in_format_terms(msg: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            // The expectation is ours (never user text), so the last
            // ", expected " is the separator even if a string had one.
            if let Some(i) = rest.rfind(", expected ") {
                let got = got(&rest[..i]);
                let expected = expected(&rest[i + ", expected ".len()..]);
                return format!("expected {expected}, got {got}");
            }
        }
    }
    msg.to_owned()
}

/// What was expected, from serde's `expecting` text.
fn expected(e: &str) -> String {
    match e {
        "u64" | "usize" => "a whole number 0..2^64-1",
        "u32" => "a whole number 0..4294967295",
        "u16" => "a whole number 0..65535",
        "u8" => "a whole number 0..255",
        "i64" | "isize" => "a whole number -2^63..2^63-1",
        "i32" => "a whole number -2147483648..2147483647",
        "f64" | "f32" => "a number",
        "a boolean" => "true or false",
        "a sequence" => "an array",
        "a map" => "an object",
        s if s.starts_with("struct ") => "an object",
        s => return s.to_owned(),
    }
    .to_owned()
}

/// What was found, from serde's `Unexpected` text. Strings are not echoed:
/// they may be long, and the path already says which field.
fn got(u: &str) -> String {
    let quoted = |kind: &str| {
        u.strip_prefix(kind)
            .and_then(|r| r.strip_prefix(" `"))
            .and_then(|r| r.strip_suffix('`'))
            .map(str::to_owned)
    };
    if let Some(v) = quoted("floating point")
        .or_else(|| quoted("integer"))
        .or_else(|| quoted("boolean"))
    {
        return v;
    }
    match u {
        "null" | "unit value" => "null",
        "sequence" => "an array",
        "map" => "an object",
        s if s.starts_with("string ") => "a string",
        s => s,
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: u64,
        b: f64,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(deserialize_with = "object")]
        one: Inner,
        #[serde(deserialize_with = "objects")]
        many: Vec<Inner>,
    }

    fn parse(s: &str) -> Result<Outer, String> {
        parse_json::<Outer>(s.as_bytes()).map_err(|e| e.message)
    }

    const I: Inner = Inner { a: 1, b: 2.5 };

    #[test]
    fn objects_are_accepted_at_every_level() {
        let o = parse(r#"{"one":{"a":1,"b":2.5},"many":[{"b":2.5,"a":1}]}"#);
        assert_eq!(
            o.unwrap(),
            Outer {
                one: I,
                many: vec![I],
            }
        );
    }

    #[test]
    fn arrays_in_place_of_objects_are_refused_with_the_path() {
        let cases = [
            (
                r#"[{"a":1,"b":2.5},[],null]"#,
                "expected an object, got an array",
            ),
            (
                r#"{"one":[1,2.5],"many":[]}"#,
                "one: expected an object, got an array",
            ),
            (
                r#"{"one":{"a":1,"b":2.5},"many":[{"a":1,"b":2.5},[1,2.5]]}"#,
                "many[1]: expected an object, got an array",
            ),
            (
                r#"{"one":{"a":1,"b":2.5},"many":{"a":1,"b":2.5}}"#,
                "many: expected an array of objects, got an object",
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(parse(doc).unwrap_err(), want, "{doc}");
        }
    }

    #[test]
    fn derived_checks_still_apply_inside_objects() {
        let e = parse(r#"{"one":{"a":1,"b":2.5,"c":0},"many":[]}"#).unwrap_err();
        assert_eq!(e, "one.c: unknown field `c`, expected `a` or `b`");
        let e = parse(r#"{"one":{"a":1,"a":1,"b":2.5},"many":[]}"#).unwrap_err();
        assert_eq!(e, "one: duplicate field `a`");
        let e = parse(r#"{"one":{"a":1,"b":2.5},"many":[{"a":1}]}"#).unwrap_err();
        assert_eq!(e, "many[0]: missing field `b`");
        let e = parse(r#"{"one":{"a":1,"b":2.5},"many":[{"a":1.5,"b":1}]}"#).unwrap_err();
        assert_eq!(e, "many[0].a: expected a whole number 0..2^64-1, got 1.5");
    }

    #[test]
    fn serde_messages_are_said_in_the_format_terms() {
        let cases = [
            (
                "invalid type: floating point `1.5`, expected u64",
                "expected a whole number 0..2^64-1, got 1.5",
            ),
            (
                "invalid value: integer `-1`, expected u64",
                "expected a whole number 0..2^64-1, got -1",
            ),
            (
                "invalid value: integer `300`, expected u8",
                "expected a whole number 0..255, got 300",
            ),
            (
                "invalid type: string \"x, expected u8\", expected f64",
                "expected a number, got a string",
            ),
            (
                "invalid type: boolean `true`, expected u32",
                "expected a whole number 0..4294967295, got true",
            ),
            (
                "invalid type: null, expected a boolean",
                "expected true or false, got null",
            ),
            (
                "invalid type: map, expected a sequence",
                "expected an array, got an object",
            ),
            (
                "invalid type: sequence, expected struct ProvisioningDoc",
                "expected an object, got an array",
            ),
            ("missing field `serial`", "missing field `serial`"),
        ];
        for (serde, ours) in cases {
            assert_eq!(in_format_terms(serde), ours);
        }
    }
}
