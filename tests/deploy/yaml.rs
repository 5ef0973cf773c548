//! YAML and JSON as Helm reads and writes them, for the chart tests:
//! parsing (yaml-rust2, YAML 1.2, with the YAML 1.1 readings Helm and
//! Kubernetes would differ on refused) and the output of Helm's `toJson`
//! and `toYaml` (the same data, not always the same bytes).

use serde_json::{Map, Value};

use crate::helm::{Result, STRICT};

/// Parses one YAML document.
pub(crate) fn yaml_one(text: &str) -> Result<Value> {
    let mut docs = yaml_docs(text)?;
    match docs.len() {
        0 => Ok(Value::Null),
        1 => Ok(docs.remove(0)),
        n => Err(format!("{n} YAML documents where one was expected")),
    }
}

/// Parses a stream of YAML documents (empty ones dropped).
pub(crate) fn yaml_docs(text: &str) -> Result<Vec<Value>> {
    check_leading_zeros(text)?;
    let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| format!("YAML: {e}"))?;
    docs.iter()
        .map(from_yaml)
        .filter(|v| !matches!(v, Ok(Value::Null)))
        .collect()
}

fn from_yaml(y: &yaml_rust2::Yaml) -> Result<Value> {
    use yaml_rust2::Yaml;
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => {
            let f: f64 = r.parse().map_err(|_| format!("YAML: bad number {r}"))?;
            serde_json::Number::from_f64(f)
                .map(Value::Number)
                .ok_or_else(|| format!("YAML: {r} is not a finite number"))?
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(a) => Value::Array(a.iter().map(from_yaml).collect::<Result<_>>()?),
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let Yaml::String(k) = k else {
                    return Err(format!("YAML: a key that is not a string: {k:?}"));
                };
                m.insert(k.clone(), from_yaml(v)?);
            }
            Value::Object(m)
        }
        Yaml::Alias(_) | Yaml::BadValue => return Err("YAML: aliases are not supported".into()),
    })
}

/// YAML 1.1 (Helm's and Kubernetes' YAML) reads 0440 as octal, YAML 1.2 as
/// decimal: refuse plain scalars that are integers with a leading zero.
fn check_leading_zeros(text: &str) -> Result<()> {
    for (n, line) in text.lines().enumerate() {
        let code = line.split(" #").next().unwrap_or(line);
        let scalar = code
            .rsplit_once(": ")
            .map(|(_, v)| v)
            .or_else(|| code.trim_start().strip_prefix("- "))
            .unwrap_or("")
            .trim();
        let digits = scalar.trim_start_matches(['+', '-']);
        if digits.len() > 1 && digits.starts_with('0') && digits.chars().all(|c| c.is_ascii_digit())
        {
            return Err(format!(
                "line {}: {scalar} is octal in YAML 1.1 and decimal in YAML 1.2: write it in decimal without a leading zero",
                n + 1
            ));
        }
    }
    Ok(())
}

/// Strings that YAML 1.1 reads as booleans when unquoted.
pub(crate) fn check_yaml11_traps(v: &Value, at: &str) -> Result<()> {
    match v {
        Value::String(s) => {
            let l = s.to_ascii_lowercase();
            if ["y", "n", "yes", "no", "on", "off"].contains(&l.as_str()) {
                return Err(format!(
                    "{at}: {s:?} is a boolean in YAML 1.1 (Helm's YAML) unless quoted, a string in YAML 1.2: spell it otherwise"
                ));
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_yaml11_traps(x, &format!("{at}[{i}]"))?;
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                check_yaml11_traps(x, &format!("{at}.{k}"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// encoding/json's output (keys sorted, HTML characters escaped).
pub(crate) fn to_json(v: &Value) -> Result<String> {
    Ok(match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.to_string()
            } else {
                let f = n.as_f64().ok_or("a number out of range")?;
                if f.fract() == 0.0 && f.abs() < 1e21 {
                    format!("{}", f as i128)
                } else if (1e-6..1e21).contains(&f.abs()) {
                    format!("{f}")
                } else {
                    return Err(format!("toJson of {f}: outside the subset"));
                }
            }
        }
        Value::String(s) => json_string(s),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(to_json).collect::<Result<Vec<_>>>()?.join(",")
        ),
        Value::Object(m) => {
            if m.contains_key(STRICT) {
                return Err("toJson of a built-in object".into());
            }
            let mut keys: Vec<_> = m.keys().collect();
            keys.sort();
            let parts = keys
                .into_iter()
                .map(|k| Ok(format!("{}:{}", json_string(k), to_json(&m[k])?)))
                .collect::<Result<Vec<_>>>()?;
            format!("{{{}}}", parts.join(","))
        }
    })
}

pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// YAML for a value, block style, strings double-quoted; no trailing
/// newline (Helm's toYaml trims it).
pub(crate) fn to_yaml(v: &Value, indent: usize) -> Result<String> {
    let pad = " ".repeat(indent);
    Ok(match v {
        Value::Object(m) if m.contains_key(STRICT) => {
            return Err("toYaml of a built-in object".into())
        }
        Value::Object(m) if !m.is_empty() => {
            let mut keys: Vec<_> = m.keys().collect();
            keys.sort();
            let mut lines = Vec::new();
            for k in keys {
                let key = yaml_key(k);
                let val = &m[k];
                if is_block(val) {
                    lines.push(format!("{pad}{key}:\n{}", to_yaml(val, indent + 2)?));
                } else {
                    lines.push(format!("{pad}{key}: {}", to_yaml(val, 0)?));
                }
            }
            lines.join("\n")
        }
        Value::Array(a) if !a.is_empty() => {
            let mut lines = Vec::new();
            for item in a {
                if is_block(item) {
                    // The item at indent + 2, its first line's indentation
                    // replaced by "- ".
                    let inner = to_yaml(item, indent + 2)?;
                    lines.push(format!("{pad}- {}", &inner[indent + 2..]));
                } else {
                    lines.push(format!("{pad}- {}", to_yaml(item, 0)?));
                }
            }
            lines.join("\n")
        }
        Value::Object(_) => format!("{pad}{{}}"),
        Value::Array(_) => format!("{pad}[]"),
        scalar => format!("{pad}{}", to_json(scalar)?),
    })
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    }
}

fn yaml_key(k: &str) -> String {
    let plain = !k.is_empty()
        && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
        && !["y", "n", "yes", "no", "on", "off", "true", "false", "null"]
            .contains(&k.to_ascii_lowercase().as_str());
    if plain {
        k.to_owned()
    } else {
        json_string(k)
    }
}
