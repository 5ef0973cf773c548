//! The proto3 JSON mapping of the API, checked against its descriptors:
//! that attestctl's `--json` output is a whole message, every field written.

use std::collections::HashMap;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use serde_json::Value;

/// The API's messages by full name (".attestd.v1.Device"), from the
/// descriptor set the server serves by reflection.
pub(crate) struct Schema(HashMap<String, DescriptorProto>);

impl Schema {
    pub(crate) fn load() -> Schema {
        fn add(map: &mut HashMap<String, DescriptorProto>, scope: &str, m: DescriptorProto) {
            let name = format!("{scope}.{}", m.name());
            for n in &m.nested_type {
                add(map, &name, n.clone());
            }
            map.insert(name, m);
        }
        let fds = FileDescriptorSet::decode(attestd_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut map = HashMap::new();
        for f in fds.file {
            let scope = format!(".{}", f.package());
            for m in f.message_type {
                add(&mut map, &scope, m);
            }
        }
        Schema(map)
    }

    /// Everything in `v` that is not message `ty` in the proto3 JSON mapping
    /// with every field written: a field missing (only an unset message
    /// field or an unset oneof may be absent), a key that is no field, or a
    /// value of the wrong JSON type.
    pub(crate) fn problems(&self, ty: &str, v: &Value) -> Vec<String> {
        let mut out = Vec::new();
        self.check_message(ty, v, ty, &mut out);
        out
    }

    fn check_message(&self, ty: &str, v: &Value, at: &str, out: &mut Vec<String>) {
        let Some(m) = self.0.get(ty) else {
            out.push(format!("{at}: unknown message {ty}"));
            return;
        };
        let Some(obj) = v.as_object() else {
            out.push(format!("{at}: {ty} is not a JSON object"));
            return;
        };
        let names: Vec<String> = m.field.iter().map(json_name).collect();
        for k in obj.keys() {
            if !names.contains(k) {
                out.push(format!("{at}.{k}: no field of {ty}"));
            }
        }
        let mut oneofs_seen = HashMap::new();
        for (f, name) in m.field.iter().zip(&names) {
            let here = format!("{at}.{name}");
            let Some(value) = obj.get(name) else {
                let may_be_absent = (f.r#type() == Type::Message && f.label() != Label::Repeated)
                    || f.oneof_index.is_some();
                if !may_be_absent {
                    out.push(format!("{here}: missing"));
                }
                continue;
            };
            if let Some(i) = f.oneof_index {
                *oneofs_seen.entry(i).or_insert(0) += 1;
            }
            if f.label() == Label::Repeated {
                match value.as_array() {
                    Some(items) => {
                        for (i, item) in items.iter().enumerate() {
                            self.check_value(f, item, &format!("{here}[{i}]"), out);
                        }
                    }
                    None => out.push(format!("{here}: repeated field is not an array")),
                }
            } else {
                self.check_value(f, value, &here, out);
            }
        }
        for (i, n) in oneofs_seen {
            if n > 1 {
                out.push(format!("{at}: {n} members of oneof {i}"));
            }
        }
    }

    fn check_value(
        &self,
        f: &prost_types::FieldDescriptorProto,
        v: &Value,
        at: &str,
        out: &mut Vec<String>,
    ) {
        let ok = match f.r#type() {
            Type::Message if f.type_name() == ".google.protobuf.Timestamp" => v
                .as_str()
                .is_some_and(|s| s.len() >= 20 && s.as_bytes()[10] == b'T'),
            Type::Message => {
                self.check_message(f.type_name(), v, at, out);
                true
            }
            Type::String => v.is_string(),
            Type::Bytes => v.as_str().is_some_and(|s| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(s).is_ok()
            }),
            Type::Bool => v.is_boolean(),
            // 64-bit integers are decimal strings, enums their value's name.
            Type::Int64 | Type::Uint64 | Type::Sint64 | Type::Fixed64 | Type::Sfixed64 => {
                v.as_str().is_some_and(|s| s.parse::<i128>().is_ok())
            }
            Type::Enum => v.as_str().is_some_and(|s| {
                s.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            }),
            Type::Int32 | Type::Uint32 | Type::Sint32 | Type::Fixed32 | Type::Sfixed32 => {
                v.is_i64() || v.is_u64()
            }
            other => {
                out.push(format!("{at}: type {other:?} not expected in this API"));
                true
            }
        };
        if !ok {
            out.push(format!(
                "{at}: {v} is not a {:?} in proto3 JSON",
                f.r#type()
            ));
        }
    }
}

/// The proto3 JSON name of a field: the descriptor's, or lowerCamelCase.
fn json_name(f: &prost_types::FieldDescriptorProto) -> String {
    if let Some(j) = &f.json_name {
        return j.clone();
    }
    let mut out = String::new();
    let mut upper = false;
    for c in f.name().chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` (attestctl's `--json` output) is message `ty` with every field,
/// and parses back (with the generated Deserialize) into the message that
/// is returned; written again it is the same JSON.
#[track_caller]
pub(crate) fn whole<M>(schema: &Schema, ty: &str, text: &str) -> M
where
    M: serde::de::DeserializeOwned + serde::Serialize,
{
    assert_eq!(text.lines().count(), 1, "one message on one line: {text}");
    let v: Value = serde_json::from_str(text).unwrap();
    let problems = schema.problems(ty, &v);
    assert!(problems.is_empty(), "{text}\n{}", problems.join("\n"));
    let m: M = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(serde_json::to_value(&m).unwrap(), v, "round trip");
    m
}
