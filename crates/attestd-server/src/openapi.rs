//! The OpenAPI 3 document of the HTTP/JSON API, generated from what the
//! server runs: the routes of [`crate::rest::REST_ROUTES`] and
//! [`crate::auth::HTTP_ROUTES`], each route's access rule from the one
//! authorization matrix, and the message schemas from the protobuf
//! descriptors compiled into attestd-proto (field comments become
//! descriptions). Served at `/openapi.json`.
//!
//! Generated here rather than with an OpenAPI crate: those derive the
//! document from Rust types with their own attributes, while our types are
//! prost's and their JSON form is the protobuf mapping, which only the
//! descriptors describe.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::FieldDescriptorProto;
use serde_json::{json, Map, Value};

use crate::auth::{self, Access};
use crate::rest::{schema, Schema, Shape, REST_ROUTES};

/// The document, as served (built once).
pub fn document_json() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| document().to_string()).clone()
}

/// The component name of a message or enum (`.attestd.v1.Device` ->
/// `Device`).
fn component(full: &str) -> String {
    full.trim_start_matches(".attestd.v1.")
        .trim_start_matches('.')
        .to_owned()
}

fn is_scalar_message(t: &str) -> bool {
    matches!(
        t,
        ".google.protobuf.Timestamp" | ".google.protobuf.Duration"
    )
}

/// Builds the document.
pub fn document() -> Value {
    let s = schema();
    let mut schemas = Map::new();
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();

    for r in REST_ROUTES {
        let Some((input, output)) = s.method(r.rpc) else {
            continue;
        };
        let method_name = r.rpc.rsplit('/').next().unwrap_or(r.rpc);
        let path_params: Vec<&str> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|x| x.strip_suffix('}')))
            .collect();
        let mut params: Vec<Value> = path_params
            .iter()
            .map(|p| {
                json!({
                    "name": p,
                    "in": "path",
                    "required": true,
                    "schema": {"type": "string"},
                    "description": s.field(input, p)
                        .and_then(|f| s.docs.get(&format!("{input}.{}", f.name())))
                        .cloned()
                        .unwrap_or_default(),
                })
            })
            .collect();
        let mut op = Map::new();
        op.insert("operationId".into(), json!(method_name));
        op.insert("summary".into(), json!(r.summary));
        op.insert(
            "tags".into(),
            json!([r.rpc.trim_start_matches("/attestd.v1.").split('/').next()]),
        );
        if r.method == "GET" {
            query_params(s, input, "", &path_params, 0, &mut params);
        } else {
            wanted.insert(input.to_owned());
            op.insert(
                "requestBody".into(),
                json!({
                    "required": true,
                    "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", component(input))}}},
                }),
            );
        }
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        wanted.insert(output.to_owned());
        let out_ref = json!({"$ref": format!("#/components/schemas/{}", component(output))});
        let ok = match r.shape {
            Shape::Unary => json!({
                "description": format!("The {} message (protobuf JSON mapping).", component(output)),
                "content": {"application/json": {"schema": out_ref}},
            }),
            Shape::Events => json!({
                "description": format!(
                    "A server-sent event stream: each `{}` as an event `change` with the message's JSON as its data and its cursor as the event id; \
                     `event: error` with an Error as data ends the stream; comment lines keep it alive. Resume with afterCursor = the last id.",
                    component(output)
                ),
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }),
            Shape::Lines => json!({
                "description": format!(
                    "JSON lines: one `{}` per line; a line {{\"error\": Error}} ends a stream that failed part-way.",
                    component(output)
                ),
                "content": {"application/x-ndjson": {"schema": out_ref}},
            }),
        };
        op.insert(
            "responses".into(),
            json!({
                "200": ok,
                "default": {
                    "description": "A refusal: the HTTP status follows the gRPC code; the body carries the code, attestd's reason and a message.",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            }),
        );
        access(auth::access_for(r.rpc), &mut op);
        paths
            .entry(r.path.to_owned())
            .or_default()
            .insert(r.method.to_lowercase(), Value::Object(op));
    }

    for (path, a) in auth::HTTP_ROUTES {
        let (ctype, what) = static_content(path);
        let mut op = Map::new();
        op.insert(
            "operationId".into(),
            json!(format!("get{}", path.replace(['/', '.', '-'], "_"))),
        );
        op.insert("summary".into(), json!(what));
        let mut content = Map::new();
        content.insert(ctype.into(), json!({"schema": {"type": "string"}}));
        let ok = if *path == "/dashboard" {
            json!({"301": {"description": "Redirects to /dashboard/."}})
        } else if *path == "/favicon.ico" {
            json!({"204": {"description": "No icon."}})
        } else {
            json!({"200": {"description": what, "content": content}})
        };
        op.insert("responses".into(), ok);
        access(Some(*a), &mut op);
        paths
            .entry((*path).to_owned())
            .or_default()
            .insert("get".into(), Value::Object(op));
    }

    // Every message reachable from the routes, with what it refers to.
    let mut todo: Vec<String> = wanted.into_iter().collect();
    let mut done = BTreeSet::new();
    while let Some(name) = todo.pop() {
        if !done.insert(name.clone()) {
            continue;
        }
        if let Some(values) = s.enum_values(&name) {
            let mut e = Map::new();
            e.insert("type".into(), json!("string"));
            e.insert("enum".into(), json!(values));
            if let Some(d) = s.docs.get(&name) {
                e.insert("description".into(), json!(d));
            }
            schemas.insert(component(&name), Value::Object(e));
            continue;
        }
        let Some(m) = s.message(&name) else {
            continue;
        };
        let mut props = Map::new();
        for f in &m.field {
            let json_name = f.json_name.clone().unwrap_or_else(|| f.name().to_owned());
            let mut p = field_schema(s, f, &mut todo);
            if let (Some(d), Value::Object(o)) =
                (s.docs.get(&format!("{name}.{}", f.name())), &mut p)
            {
                if !o.contains_key("$ref") {
                    o.insert("description".into(), json!(d));
                }
            }
            props.insert(json_name, p);
        }
        let mut o = Map::new();
        o.insert("type".into(), json!("object"));
        o.insert("properties".into(), Value::Object(props));
        o.insert("additionalProperties".into(), json!(false));
        let mut desc = s.docs.get(&name).cloned().unwrap_or_default();
        if !m.oneof_decl.is_empty() {
            if !desc.is_empty() {
                desc.push(' ');
            }
            desc.push_str("At most one field of each oneof is set.");
        }
        if !desc.is_empty() {
            o.insert("description".into(), json!(desc));
        }
        schemas.insert(component(&name), Value::Object(o));
    }
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["code", "reason", "message"],
            "properties": {
                "code": {"type": "string", "description": "The gRPC status code's name, e.g. NOT_FOUND."},
                "reason": {"type": "string", "description": "attestd's reason code (the ErrorInfo reason of the gRPC answer), e.g. DEVICE_NOT_FOUND; empty if none."},
                "message": {"type": "string"},
            },
        }),
    );

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "attestd HTTP/JSON API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The read side and the release gate of attestd over HTTP/JSON, beside gRPC on the same port. \
                Each route calls one gRPC method; bodies are the protobuf JSON mapping of its messages \
                (lowerCamelCase names, enums by name, 64-bit integers as strings, RFC 3339 timestamps; answers carry every field, unset messages excepted). \
                GET routes take request fields from the query string (nested fields with dots, repeated fields by repeating the name). \
                Authorization: the same bearer tokens or client certificates, roles and tenant scope as gRPC.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A principal's token from attestd's configuration."},
                "clientCertificate": {"type": "mutualTLS", "description": "A principal's client certificate (with [tls] client_ca_files)."},
            },
            "schemas": schemas,
        },
    })
}

/// The security and the roles of an operation, from the matrix.
fn access(a: Option<Access>, op: &mut Map<String, Value>) {
    match a {
        Some(Access::Public) | None => {
            op.insert("security".into(), json!([]));
        }
        Some(Access::Roles(roles)) => {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            op.insert(
                "security".into(),
                json!([{"bearer": []}, {"clientCertificate": []}]),
            );
            op.insert("x-attestd-roles".into(), json!(names));
            let text = format!("Roles: {}.", names.join(", "));
            let d = op
                .get("description")
                .and_then(Value::as_str)
                .map_or(text.clone(), |d| format!("{d} {text}"));
            op.insert("description".into(), json!(d));
        }
    }
}

/// The query parameters of a GET route: the request's fields by JSON
/// name, nested messages flattened with dots (to a bounded depth).
fn query_params(
    s: &Schema,
    message: &str,
    prefix: &str,
    skip: &[&str],
    depth: usize,
    out: &mut Vec<Value>,
) {
    let Some(m) = s.message(message) else {
        return;
    };
    for f in &m.field {
        let json_name = f.json_name.clone().unwrap_or_else(|| f.name().to_owned());
        if prefix.is_empty() && skip.contains(&json_name.as_str()) {
            continue;
        }
        let name = format!("{prefix}{json_name}");
        let nested = f.r#type() == Type::Message && !is_scalar_message(f.type_name());
        if nested {
            if depth < 2 && f.label() != Label::Repeated {
                query_params(s, f.type_name(), &format!("{name}."), skip, depth + 1, out);
            }
            continue;
        }
        let mut ignored = Vec::new();
        let schema = field_schema(s, f, &mut ignored);
        // Enums inline: a parameter's allowed values are visible in place.
        let schema = inline_enum(s, f, schema);
        let mut p = json!({"name": name, "in": "query", "required": false, "schema": schema});
        if f.label() == Label::Repeated {
            p["style"] = json!("form");
            p["explode"] = json!(true);
        }
        if let Some(d) = s.docs.get(&format!("{message}.{}", f.name())) {
            p["description"] = json!(d);
        }
        out.push(p);
    }
}

fn inline_enum(s: &Schema, f: &FieldDescriptorProto, schema: Value) -> Value {
    if f.r#type() != Type::Enum {
        return schema;
    }
    let values = s.enum_values(f.type_name()).unwrap_or(&[]);
    let one = json!({"type": "string", "enum": values});
    if f.label() == Label::Repeated {
        json!({"type": "array", "items": one})
    } else {
        one
    }
}

/// A field's schema under the protobuf JSON mapping; messages it refers to
/// are pushed onto `refs`.
fn field_schema(s: &Schema, f: &FieldDescriptorProto, refs: &mut Vec<String>) -> Value {
    // A map field is a repeated message of a map-entry type.
    if f.label() == Label::Repeated && f.r#type() == Type::Message {
        if let Some(entry) = s.message(f.type_name()) {
            if entry.options.as_ref().and_then(|o| o.map_entry) == Some(true) {
                let value = entry
                    .field
                    .iter()
                    .find(|x| x.number() == 2)
                    .map_or(json!({}), |v| single(s, v, refs));
                return json!({"type": "object", "additionalProperties": value});
            }
        }
    }
    let one = single(s, f, refs);
    if f.label() == Label::Repeated {
        json!({"type": "array", "items": one})
    } else {
        one
    }
}

fn single(s: &Schema, f: &FieldDescriptorProto, refs: &mut Vec<String>) -> Value {
    match f.r#type() {
        Type::Double | Type::Float => json!({"type": "number"}),
        Type::Int32 | Type::Sint32 | Type::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        Type::Uint32 | Type::Fixed32 => json!({"type": "integer", "format": "int64", "minimum": 0}),
        Type::Int64 | Type::Sint64 | Type::Sfixed64 => {
            json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
        }
        Type::Uint64 | Type::Fixed64 => {
            json!({"type": "string", "format": "uint64", "pattern": "^[0-9]+$"})
        }
        Type::Bool => json!({"type": "boolean"}),
        Type::String => json!({"type": "string"}),
        Type::Bytes => json!({"type": "string", "format": "byte"}),
        Type::Enum => {
            refs.push(f.type_name().to_owned());
            json!({"$ref": format!("#/components/schemas/{}", component(f.type_name()))})
        }
        Type::Message | Type::Group => match f.type_name() {
            ".google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
            ".google.protobuf.Duration" => {
                json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"})
            }
            t if s.message(t).is_some() => {
                refs.push(t.to_owned());
                json!({"$ref": format!("#/components/schemas/{}", component(t))})
            }
            _ => json!({"type": "object"}),
        },
    }
}

/// The content type and summary of a static route.
fn static_content(path: &str) -> (&'static str, &'static str) {
    match path {
        "/.well-known/jwks.json" => (
            "application/jwk-set+json",
            "The public keys of signed results, as a JWK Set (RFC 7517)",
        ),
        "/openapi.json" => ("application/json", "This document"),
        "/dashboard" => ("text/html", "Redirects to the dashboard"),
        "/dashboard/" => ("text/html", "The read-only fleet dashboard"),
        "/dashboard/app.js" => ("text/javascript", "The dashboard's script"),
        "/dashboard/style.css" => ("text/css", "The dashboard's style sheet"),
        "/favicon.ico" => ("image/x-icon", "No icon (204)"),
        _ => ("application/octet-stream", "A static file"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_every_referenced_schema_is_in_the_document() {
        let doc = document();
        for r in REST_ROUTES {
            assert!(
                doc["paths"][r.path][r.method.to_lowercase()].is_object(),
                "{} {} missing",
                r.method,
                r.path
            );
        }
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for part in text.split("#/components/schemas/").skip(1) {
            let name: String = part.chars().take_while(|c| *c != '"').collect();
            assert!(
                schemas.contains_key(&name),
                "{name} is referenced, not defined"
            );
        }
        // Descriptions come from the proto comments.
        assert!(
            schemas["Device"]["properties"]["calibrationDueAt"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("calibration"))
        );
        // Filters are query parameters, flattened.
        let params = doc["paths"]["/v1/devices"]["get"]["parameters"]
            .as_array()
            .unwrap();
        assert!(params.iter().any(|p| p["name"] == "filter.statuses"));
        assert!(params.iter().any(|p| p["name"] == "pageToken"));
    }
}
