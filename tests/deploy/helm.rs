//! A renderer for the part of Helm's template language that the attestd
//! chart uses, so that the chart can be tested where Helm is not installed
//! (no Debian, PyPI or npm package ships it).
//!
//! The rule that keeps it honest: whatever it accepts, it renders to the
//! same data Helm would (the same YAML after parsing; not always the same
//! bytes: toYaml and toJson may quote and escape differently); whatever it
//! is not sure of, it refuses with an error naming the construct. So a
//! chart change outside the subset fails the tests instead of being
//! rendered wrongly. The subset:
//!
//! - text, `{{ }}` actions with `{{-`/`-}}` trimming, `{{/* comments */}}`;
//! - `define`, `if`/`else if`/`else`, `range` over a list or a map (sorted
//!   keys; `range $v := ...`, `range $k, $v := ...`), `end`;
//! - pipelines of field chains (`.Values.a.b`, `$`, `$var.x`), string,
//!   integer and boolean literals and parenthesised pipelines;
//! - functions `include`, `default`, `required`, `fail`, `quote`, `toJson`,
//!   `toYaml`, `indent`, `nindent`, `sha256sum`, `trunc`, `trimSuffix`,
//!   `eq`, `ne`, `and`, `or`, `not`;
//! - `.Values`, `.Release.Name`, `.Release.Namespace`, `.Release.Service`,
//!   `.Chart.Name`, `.Chart.Version`, `.Chart.AppVersion`.
//!
//! Refused: every other action, function and built-in object (`.Files`,
//! `.Capabilities`, `lookup`, `tpl`, ...); printing a missing value (Helm
//! prints nothing, which hides typos), a map or a list; printing a number
//! Helm would print in float notation (values are float64 in Helm: 1000000
//! prints as 1e+06; pipe it through toJson); comparing numbers; YAML 1.1
//! booleans (yes/no/on/off) and leading-zero integers, which Helm's YAML
//! reads differently from YAML 1.2.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::gotmpl::{parse, split_defines, Arg, Cmd, Node, Pipe};
use crate::yaml::{check_yaml11_traps, to_json, to_yaml, yaml_one};

/// A key that marks Helm's built-in objects (the root, `.Release`,
/// `.Chart`): a field they lack is an error, not a missing value.
pub(crate) const STRICT: &str = "\u{0}strict";

/// How deep `include` may nest.
const MAX_DEPTH: usize = 32;

pub(crate) type Result<T> = std::result::Result<T, String>;

/// A chart read from its directory.
pub(crate) struct Chart {
    pub name: String,
    pub version: String,
    pub app_version: String,
    /// values.yaml.
    pub values: Value,
    /// templates/*: (file name, source), sorted by name.
    pub templates: Vec<(String, String)>,
}

/// The release a chart is rendered for.
pub(crate) struct Release<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
}

impl Chart {
    pub(crate) fn load(dir: &Path) -> Result<Chart> {
        let read =
            |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        let meta = yaml_one(&read(&dir.join("Chart.yaml"))?)?;
        let field = |k: &str| {
            meta.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("Chart.yaml: {k} missing or not a string"))
        };
        let mut templates = Vec::new();
        let tdir = dir.join("templates");
        let entries = std::fs::read_dir(&tdir).map_err(|e| format!("{}: {e}", tdir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or("a template file name that is not UTF-8")?
                .to_owned();
            if !(name.ends_with(".yaml") || name.ends_with(".tpl") || name == "NOTES.txt") {
                return Err(format!(
                    "templates/{name}: not a kind of file this renderer knows"
                ));
            }
            templates.push((name, read(&path)?));
        }
        templates.sort();
        Ok(Chart {
            name: field("name")?,
            version: field("version")?,
            app_version: field("appVersion")?,
            values: yaml_one(&read(&dir.join("values.yaml"))?)?,
            templates,
        })
    }

    /// Renders every template that is not a helper (`_*`) with the chart's
    /// values merged with `overrides` (YAML, as `helm template -f`).
    /// Returns (file name, rendered text).
    pub(crate) fn render(
        &self,
        overrides: &str,
        release: &Release,
    ) -> Result<Vec<(String, String)>> {
        let mut values = self.values.clone();
        if !overrides.trim().is_empty() {
            merge(&mut values, yaml_one(overrides)?);
        }
        check_yaml11_traps(&values, "values")?;
        let root = strict(vec![
            ("Values", values),
            (
                "Release",
                strict(vec![
                    ("Name", Value::from(release.name)),
                    ("Namespace", Value::from(release.namespace)),
                    ("Service", Value::from("Helm")),
                ]),
            ),
            (
                "Chart",
                strict(vec![
                    ("Name", Value::from(self.name.clone())),
                    ("Version", Value::from(self.version.clone())),
                    ("AppVersion", Value::from(self.app_version.clone())),
                ]),
            ),
        ]);
        let mut defines = BTreeMap::new();
        let mut bodies = Vec::new();
        for (name, src) in &self.templates {
            let nodes = parse(src).map_err(|e| format!("templates/{name}: {e}"))?;
            let (defs, body) =
                split_defines(nodes).map_err(|e| format!("templates/{name}: {e}"))?;
            for (k, v) in defs {
                if defines.insert(k.clone(), v).is_some() {
                    return Err(format!("templates/{name}: {k:?} defined twice"));
                }
            }
            bodies.push((name.clone(), body));
        }
        let mut out = Vec::new();
        for (name, body) in bodies {
            if name.starts_with('_') {
                continue;
            }
            let mut ex = Exec {
                defines: &defines,
                depth: 0,
            };
            let mut scope = Scope::new(&root);
            let text = ex
                .run(&body, &root, &mut scope)
                .map_err(|e| format!("templates/{name}: {e}"))?;
            out.push((name, text));
        }
        Ok(out)
    }
}

fn strict(fields: Vec<(&str, Value)>) -> Value {
    let mut m = Map::new();
    m.insert(STRICT.into(), Value::Bool(true));
    for (k, v) in fields {
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

/// Helm's merge of user values onto the chart's: maps merge key by key, a
/// null removes the key, anything else replaces.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                if v.is_null() {
                    b.remove(&k);
                } else if let Some(slot) = b.get_mut(&k) {
                    merge(slot, v);
                } else {
                    b.insert(k, v);
                }
            }
        }
        (b, o) => *b = o,
    }
}

// ---------------------------------------------------------------- execution

struct Exec<'a> {
    defines: &'a BTreeMap<String, Vec<Node>>,
    depth: usize,
}

/// Variables in scope: `$` and those of enclosing ranges.
struct Scope {
    vars: Vec<(String, Value)>,
}

impl Scope {
    fn new(root: &Value) -> Scope {
        Scope {
            vars: vec![(String::new(), root.clone())],
        }
    }

    fn get(&self, name: &str) -> Result<&Value> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| format!("undefined variable ${name}"))
    }
}

impl Exec<'_> {
    fn run(&mut self, nodes: &[Node], dot: &Value, scope: &mut Scope) -> Result<String> {
        let mut out = String::new();
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Output(p) => out.push_str(&print(&self.pipe(p, dot, scope)?)?),
                Node::If(cond, then, otherwise) => {
                    let branch = if truthy(&self.pipe(cond, dot, scope)?) {
                        then
                    } else {
                        otherwise
                    };
                    out.push_str(&self.run(branch, dot, scope)?);
                }
                Node::Range {
                    key,
                    value,
                    over,
                    body,
                } => {
                    let items: Vec<(Value, Value)> = match self.pipe(over, dot, scope)? {
                        Value::Null => Vec::new(),
                        Value::Array(a) => a
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Value::from(i), v))
                            .collect(),
                        Value::Object(m) if !m.contains_key(STRICT) => {
                            let mut m: Vec<_> = m.into_iter().collect();
                            m.sort_by(|a, b| a.0.cmp(&b.0));
                            m.into_iter().map(|(k, v)| (Value::from(k), v)).collect()
                        }
                        other => return Err(format!("range over {}", kind(&other))),
                    };
                    for (k, v) in items {
                        let mark = scope.vars.len();
                        if let Some(name) = key {
                            scope.vars.push((name.clone(), k));
                        }
                        if let Some(name) = value {
                            scope.vars.push((name.clone(), v.clone()));
                        }
                        let text = self.run(body, &v, scope);
                        scope.vars.truncate(mark);
                        out.push_str(&text?);
                    }
                }
                Node::Define(..) => return Err("define only at the top level".into()),
            }
        }
        Ok(out)
    }

    fn pipe(&mut self, pipe: &Pipe, dot: &Value, scope: &mut Scope) -> Result<Value> {
        let mut piped: Option<Value> = None;
        for cmd in pipe {
            piped = Some(self.cmd(cmd, piped, dot, scope)?);
        }
        piped.ok_or_else(|| "an empty pipeline".into())
    }

    fn cmd(
        &mut self,
        cmd: &Cmd,
        piped: Option<Value>,
        dot: &Value,
        scope: &mut Scope,
    ) -> Result<Value> {
        let Arg::Func(name) = &cmd[0] else {
            let v = self.arg(&cmd[0], dot, scope)?;
            if cmd.len() > 1 || piped.is_some() {
                return Err("only a function takes arguments or a piped value".into());
            }
            return Ok(v);
        };
        let mut args = Vec::new();
        for a in &cmd[1..] {
            args.push(self.arg(a, dot, scope)?);
        }
        args.extend(piped);
        self.call(name, args)
    }

    fn arg(&mut self, a: &Arg, dot: &Value, scope: &mut Scope) -> Result<Value> {
        match a {
            Arg::Dot(chain) => walk(dot, chain),
            Arg::Var(name, chain) => walk(scope.get(name)?, chain),
            Arg::Str(s) => Ok(Value::from(s.clone())),
            Arg::Int(i) => Ok(Value::from(*i)),
            Arg::Bool(b) => Ok(Value::Bool(*b)),
            Arg::Sub(p) => self.pipe(p, dot, scope),
            Arg::Func(f) => self.call(f, Vec::new()),
        }
    }

    fn call(&mut self, f: &str, args: Vec<Value>) -> Result<Value> {
        let n = args.len();
        let want = |k: usize| {
            if n == k {
                Ok(())
            } else {
                Err(format!("{f} takes {k} arguments, got {n}"))
            }
        };
        let text = |v: &Value| -> Result<String> {
            match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("{f} wants a string, got {}", kind(other))),
            }
        };
        let int = |v: &Value| -> Result<i64> {
            v.as_i64()
                .ok_or_else(|| format!("{f} wants a whole number, got {}", kind(v)))
        };
        Ok(match f {
            "include" => {
                want(2)?;
                let name = text(&args[0])?;
                let defines = self.defines;
                let body = defines
                    .get(&name)
                    .ok_or_else(|| format!("include of undefined {name:?}"))?;
                if self.depth >= MAX_DEPTH {
                    return Err("include nests too deep".into());
                }
                self.depth += 1;
                let mut inner = Scope::new(&args[1]);
                let r = self.run(body, &args[1], &mut inner);
                self.depth -= 1;
                Value::from(r.map_err(|e| format!("in {name:?}: {e}"))?)
            }
            "default" => {
                want(2)?;
                let [d, v] = <[Value; 2]>::try_from(args).unwrap();
                if truthy(&v) {
                    v
                } else {
                    d
                }
            }
            "required" => {
                want(2)?;
                let msg = text(&args[0])?;
                match &args[1] {
                    Value::Null => return Err(msg),
                    Value::String(s) if s.is_empty() => return Err(msg),
                    v => v.clone(),
                }
            }
            "fail" => {
                want(1)?;
                return Err(text(&args[0])?);
            }
            "quote" => {
                want(1)?;
                Value::from(go_quote(&print(&args[0])?))
            }
            "toJson" => {
                want(1)?;
                Value::from(to_json(&args[0])?)
            }
            "toYaml" => {
                want(1)?;
                Value::from(to_yaml(&args[0], 0)?)
            }
            "indent" | "nindent" => {
                want(2)?;
                let pad = " ".repeat(usize::try_from(int(&args[0])?).map_err(|e| e.to_string())?);
                let s = format!(
                    "{pad}{}",
                    text(&args[1])?.replace('\n', &format!("\n{pad}"))
                );
                Value::from(if f == "nindent" { format!("\n{s}") } else { s })
            }
            "sha256sum" => {
                want(1)?;
                let d = ring::digest::digest(&ring::digest::SHA256, text(&args[0])?.as_bytes());
                Value::from(
                    d.as_ref()
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect::<String>(),
                )
            }
            "trunc" => {
                want(2)?;
                let k = usize::try_from(int(&args[0])?)
                    .map_err(|_| "trunc from the end is outside the subset")?;
                let s = text(&args[1])?;
                if !s.is_ascii() {
                    return Err("trunc of non-ASCII text is outside the subset".into());
                }
                Value::from(s[..k.min(s.len())].to_owned())
            }
            "trimSuffix" => {
                want(2)?;
                let suffix = text(&args[0])?;
                let s = text(&args[1])?;
                Value::from(s.strip_suffix(suffix.as_str()).unwrap_or(&s).to_owned())
            }
            "eq" | "ne" => {
                want(2)?;
                let same = match (&args[0], &args[1]) {
                    (Value::String(a), Value::String(b)) => a == b,
                    (Value::Bool(a), Value::Bool(b)) => a == b,
                    (a, b) => {
                        return Err(format!(
                            "{f} of {} and {}: only strings or booleans are compared here",
                            kind(a),
                            kind(b)
                        ))
                    }
                };
                Value::Bool(same == (f == "eq"))
            }
            "and" | "or" => {
                if n < 2 {
                    return Err(format!("{f} takes at least 2 arguments"));
                }
                // Go returns the first argument that decides, else the last.
                let decides = |v: &Value| truthy(v) != (f == "and");
                let last = args.len() - 1;
                args.into_iter()
                    .enumerate()
                    .find(|(i, v)| decides(v) || *i == last)
                    .map(|(_, v)| v)
                    .unwrap()
            }
            "not" => {
                want(1)?;
                Value::Bool(!truthy(&args[0]))
            }
            other => return Err(format!("function {other:?} is outside the subset")),
        })
    }
}

/// Follows a field chain. A map without the field gives null (Helm's
/// missing value), except Helm's built-in objects, where it is an error;
/// a field of anything but a map is an error.
fn walk(start: &Value, chain: &[String]) -> Result<Value> {
    let mut v = start;
    for (i, f) in chain.iter().enumerate() {
        match v {
            Value::Object(m) => match m.get(f) {
                Some(x) => v = x,
                None if m.contains_key(STRICT) => {
                    return Err(format!(
                        ".{f}: a built-in object this renderer does not provide"
                    ))
                }
                None if i + 1 < chain.len() => {
                    return Err(format!(
                        ".{}: missing, so .{} cannot be read",
                        chain[..=i].join("."),
                        chain[i + 1]
                    ))
                }
                None => return Ok(Value::Null),
            },
            other => return Err(format!(".{f} of {}", kind(other))),
        }
    }
    Ok(v.clone())
}

/// Go template truth: false, 0, "", null and empty collections are false.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "a missing value",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// What `{{ v }}` prints, as Helm would.
fn print(v: &Value) -> Result<String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => {
            // Helm's values are float64; Go prints them in %g: whole
            // numbers below 1e6 as integers, the rest in a form TOML and
            // Kubernetes do not take as integers.
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 1e6 => Ok(format!("{}", f as i64)),
                _ => Err(format!(
                    "printing {n}: Helm prints it as a float64 (1000000 as 1e+06); pipe it through toJson"
                )),
            }
        }
        other => Err(format!(
            "printing {}: Helm would print {}",
            kind(other),
            if other.is_null() {
                "nothing (a typo?)"
            } else {
                "Go syntax"
            }
        )),
    }
}

/// Go's %q for the strings this chart quotes.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(tpl: &str, values: &str) -> Result<String> {
        let chart = Chart {
            name: "c".into(),
            version: "1.0.0".into(),
            app_version: "2.0.0".into(),
            values: yaml_one(values)?,
            templates: vec![
                (
                    "_h.tpl".into(),
                    "{{- define \"h.name\" -}}{{ .Release.Name }}-x{{- end }}".into(),
                ),
                ("t.yaml".into(), tpl.into()),
            ],
        };
        let mut out = chart.render(
            "",
            &Release {
                name: "rel",
                namespace: "ns",
            },
        )?;
        Ok(out.remove(0).1)
    }

    #[test]
    fn helm_subset_renders_what_helm_renders() {
        let values = "a: 1\nbig: 1000000\ns: \"x<y\"\nlist: [b, a]\nmap: {z: 1, a: 2}\nempty: \"\"\nyes_: true\nnested:\n  k: v\n";
        for (tpl, want) in [
            ("{{ .Values.a }}", "1"),
            ("a {{- \" b \" -}} c", "a b c"),
            ("x\n  {{- .Values.a }}\n", "x1\n"),
            ("{{/* gone */}}x", "x"),
            ("{{ .Values.s | quote }}", "\"x<y\""),
            ("{{ .Values.s | toJson }}", "\"x\\u003cy\""),
            ("{{ .Values.big | toJson }}", "1000000"),
            ("{{ .Values.list | toJson }}", "[\"b\",\"a\"]"),
            ("{{ .Values.map | toJson }}", "{\"a\":2,\"z\":1}"),
            (
                "{{ range $k, $v := .Values.map }}{{ $k }}={{ $v }};{{ end }}",
                "a=2;z=1;",
            ),
            ("{{ range .Values.list }}[{{ . }}]{{ end }}", "[b][a]"),
            (
                "{{ range $x := .Values.list }}{{ $x }}{{ $.Release.Name }}{{ end }}",
                "brelarel",
            ),
            ("{{ if .Values.empty }}y{{ else }}n{{ end }}", "n"),
            (
                "{{ if .Values.nope }}y{{ else if .Values.a }}a{{ else }}n{{ end }}",
                "a",
            ),
            (
                "{{ if and .Values.a (eq .Values.s \"x<y\") }}y{{ end }}",
                "y",
            ),
            (
                "{{ if or .Values.empty .Values.nope }}y{{ else }}n{{ end }}",
                "n",
            ),
            ("{{ if not .Values.nope }}y{{ end }}", "y"),
            ("{{ .Values.empty | default \"d\" }}", "d"),
            ("{{ .Values.nope | default .Chart.AppVersion }}", "2.0.0"),
            ("{{ include \"h.name\" . }}", "rel-x"),
            ("{{ include \"h.name\" . | trunc 2 }}", "re"),
            ("{{ \"a-\" | trimSuffix \"-\" }}", "a"),
            (
                "k:{{ .Values.nested | toYaml | nindent 2 }}",
                "k:\n  k: \"v\"",
            ),
            ("{{ \"a\\nb\" | indent 2 }}", "  a\n  b"),
            (
                "{{ \"abc\" | sha256sum }}",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
        ] {
            assert_eq!(render(tpl, values).unwrap(), want, "{tpl}");
        }
    }

    #[test]
    fn helm_subset_refuses_what_it_does_not_know() {
        let values = "a: 1\nbig: 1000000\nmap: {k: v}\n";
        for (tpl, says) in [
            ("{{ .Values.nope }}", "a missing value"),
            ("{{ .Values.nope.deeper }}", "cannot be read"),
            ("{{ .Values.big }}", "float64"),
            ("{{ .Values.map }}", "Go syntax"),
            ("{{ .Files.Get \"x\" }}", "built-in object"),
            ("{{ .Capabilities.KubeVersion }}", "built-in object"),
            ("{{ .Release.Revision }}", "built-in object"),
            (
                "{{ lookup \"v1\" \"Secret\" \"ns\" \"x\" }}",
                "outside the subset",
            ),
            ("{{ tpl \"x\" . }}", "outside the subset"),
            ("{{ with .Values.a }}{{ end }}", "outside the subset"),
            ("{{ $x := 1 }}", "outside the subset"),
            ("{{ template \"h.name\" . }}", "outside the subset"),
            ("{{ include \"nope\" . }}", "undefined"),
            (
                "{{ if eq .Values.a 1 }}{{ end }}",
                "only strings or booleans",
            ),
            ("{{ required \"need b\" .Values.b }}", "need b"),
            ("{{ fail \"stop\" }}", "stop"),
            ("{{ if .Values.a }}", "without end"),
            ("{{ end }}", "without a block"),
            ("{{-3}}", "followed by a space"),
            ("{{ range .Values.a }}{{ end }}", "range over a number"),
            ("{{ .Values.a", "unclosed"),
        ] {
            let err = render(tpl, values).unwrap_err();
            assert!(err.contains(says), "{tpl}: {err}");
        }
        // YAML 1.1 traps in the values.
        assert!(render("x", "a: yes\n").unwrap_err().contains("YAML 1.1"));
        assert!(render("x", "a: 0440\n").unwrap_err().contains("octal"));
    }

    #[test]
    fn helm_subset_merges_values_like_helm() {
        let mut base = yaml_one("a: {b: 1, c: 2}\nl: [1, 2]\nd: 4\n").unwrap();
        merge(&mut base, yaml_one("a: {c: 3}\nl: [9]\nd: null\n").unwrap());
        assert_eq!(base, yaml_one("a: {b: 1, c: 3}\nl: [9]\n").unwrap());
    }

    #[test]
    fn helm_subset_to_yaml_reads_back_as_the_same_data() {
        let v = yaml_one(
            "a: {b: [1, {c: x, d: [true, null]}], e: {}}\nlist: []\n\"on\": \"yes\"\nn: -2.5\n",
        )
        .unwrap();
        let text = format!("root:{}", {
            let s = to_yaml(&v, 0).unwrap();
            format!("\n  {}", s.replace('\n', "\n  "))
        });
        let back = yaml_one(&text).unwrap();
        assert_eq!(back["root"], v, "{text}");
    }
}
