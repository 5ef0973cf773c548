//! Go's template syntax, as far as the chart uses it: lexing (with `{{-`
//! and `-}}` trimming and comments) and parsing into a tree that
//! `helm.rs` executes. Anything outside the subset is an error here.

use crate::helm::Result;

#[derive(Debug, Clone)]
enum Token {
    Text(String),
    /// An action's inside, without delimiters and trim markers.
    Action(String, usize),
}

fn lex(src: &str) -> Result<Vec<Token>> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    let line_of = |rest: &str| src[..src.len() - rest.len()].lines().count().max(1);
    while !rest.is_empty() {
        let (text, after) = match rest.find("{{") {
            Some(i) => (&rest[..i], Some(&rest[i + 2..])),
            None => (rest, None),
        };
        let mut text = text.to_owned();
        if trim_next {
            text = text.trim_start_matches([' ', '\t', '\r', '\n']).to_owned();
        }
        let Some(after) = after else {
            out.push(Token::Text(text));
            break;
        };
        let line = line_of(after);
        let (trim_left, body_start) = match after.strip_prefix('-') {
            Some(r) if r.starts_with([' ', '\t', '\r', '\n']) => (true, r),
            Some(_) => {
                return Err(format!(
                    "line {line}: \"{{{{-\" must be followed by a space"
                ))
            }
            None => (false, after),
        };
        if trim_left {
            text = text.trim_end_matches([' ', '\t', '\r', '\n']).to_owned();
        }
        out.push(Token::Text(text));
        let end = find_action_end(body_start).ok_or(format!("line {line}: unclosed action"))?;
        let mut body = &body_start[..end];
        trim_next = false;
        if let Some(b) = body.strip_suffix('-') {
            if b.ends_with([' ', '\t', '\r', '\n']) {
                trim_next = true;
                body = b;
            }
        }
        out.push(Token::Action(body.trim().to_owned(), line));
        rest = &body_start[end + 2..];
    }
    Ok(out)
}

/// Where the action's `}}` is, skipping string literals and comments.
fn find_action_end(s: &str) -> Option<usize> {
    let t = s.trim_start();
    if t.starts_with("/*") {
        let off = s.len() - t.len();
        let close = t.find("*/")?;
        return s[off + close..].find("}}").map(|i| off + close + i);
    }
    let b = s.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'}' if b[i + 1] == b'}' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

// ---------------------------------------------------------------- parsing

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(String),
    Output(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    Range {
        key: Option<String>,
        value: Option<String>,
        over: Pipe,
        body: Vec<Node>,
    },
    Define(String, Vec<Node>),
}

/// The `{{ end }}` or `{{ else ... }}` that closed a block (its words and
/// line), or none at the end of the file.
type Stop = Option<(String, usize)>;

/// A file's `define`s: (name, body).
pub(crate) type Defines = Vec<(String, Vec<Node>)>;

pub(crate) type Pipe = Vec<Cmd>;
pub(crate) type Cmd = Vec<Arg>;

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    /// A chain from dot: `.`, `.Values.a`.
    Dot(Vec<String>),
    /// A chain from a variable: `$`, `$.Values`, `$p.name`.
    Var(String, Vec<String>),
    Str(String),
    Int(i64),
    Bool(bool),
    Func(String),
    Sub(Pipe),
}

pub(crate) fn parse(src: &str) -> Result<Vec<Node>> {
    let tokens = lex(src)?;
    let mut pos = 0;
    let (nodes, stop) = parse_block(&tokens, &mut pos)?;
    match stop {
        None => Ok(nodes),
        Some((word, line)) => Err(format!("line {line}: {{{{ {word} }}}} without a block")),
    }
}

/// Parses nodes until `end`/`else` (returned with its line) or the end.
fn parse_block(t: &[Token], pos: &mut usize) -> Result<(Vec<Node>, Stop)> {
    let mut nodes = Vec::new();
    while *pos < t.len() {
        let tok = t[*pos].clone();
        *pos += 1;
        let (body, line) = match tok {
            Token::Text(s) => {
                if !s.is_empty() {
                    nodes.push(Node::Text(s));
                }
                continue;
            }
            Token::Action(body, line) => (body, line),
        };
        let at = |e: String| format!("line {line}: {e}");
        if body.starts_with("/*") {
            if !body.ends_with("*/") {
                return Err(at("a comment must end with */ right before }}".into()));
            }
            continue;
        }
        let words = split_words(&body).map_err(at)?;
        let first = words.first().map(String::as_str).unwrap_or("");
        match first {
            "end" | "else" => return Ok((nodes, Some((body, line)))),
            "if" => nodes.push(parse_if(&words[1..], t, pos, line)?),
            "range" => {
                let (key, value, rest) = range_vars(&words[1..]).map_err(at)?;
                let over = parse_pipe(rest).map_err(at)?;
                let (body, stop) = parse_block(t, pos)?;
                expect_end(stop, line, "range")?;
                nodes.push(Node::Range {
                    key,
                    value,
                    over,
                    body,
                });
            }
            "define" => {
                let [_, name] = &words[..] else {
                    return Err(at("define wants one name".into()));
                };
                let name = unquote(name).map_err(at)?;
                let (body, stop) = parse_block(t, pos)?;
                expect_end(stop, line, "define")?;
                nodes.push(Node::Define(name, body));
            }
            "with" | "template" | "block" | "break" | "continue" => {
                return Err(at(format!(
                    "{first} is outside the subset this renderer knows"
                )))
            }
            _ if words.iter().any(|w| w == ":=" || w == "=") => {
                return Err(at("variable assignments are outside the subset".into()))
            }
            _ => nodes.push(Node::Output(parse_pipe(&words).map_err(at)?)),
        }
    }
    Ok((nodes, None))
}

fn parse_if(cond: &[String], t: &[Token], pos: &mut usize, line: usize) -> Result<Node> {
    let cond = parse_pipe(cond).map_err(|e| format!("line {line}: {e}"))?;
    let (then, stop) = parse_block(t, pos)?;
    let Some((word, l2)) = stop else {
        return Err(format!("line {line}: if without end"));
    };
    if word == "end" {
        return Ok(Node::If(cond, then, Vec::new()));
    }
    let words = split_words(&word).map_err(|e| format!("line {l2}: {e}"))?;
    if words.len() > 1 {
        if words[1] != "if" {
            return Err(format!(
                "line {l2}: else {} is outside the subset",
                words[1]
            ));
        }
        // `else if X` is `else` + `if X ... end` sharing the outer end.
        let inner = parse_if(&words[2..], t, pos, l2)?;
        return Ok(Node::If(cond, then, vec![inner]));
    }
    let (otherwise, stop) = parse_block(t, pos)?;
    expect_end(stop, line, "if")?;
    Ok(Node::If(cond, then, otherwise))
}

fn expect_end(stop: Stop, line: usize, what: &str) -> Result<()> {
    match stop {
        Some((w, _)) if w == "end" => Ok(()),
        Some((w, l)) => Err(format!(
            "line {l}: {{{{ {w} }}}} in a {what} (line {line}) is outside the subset"
        )),
        None => Err(format!("line {line}: {what} without end")),
    }
}

/// `$k, $v := X`, `$v := X` or `X`.
fn range_vars(w: &[String]) -> Result<(Option<String>, Option<String>, &[String])> {
    match w {
        [k, comma, v, assign, rest @ ..] if comma == "," && assign == ":=" => {
            Ok((Some(var_name(k)?), Some(var_name(v)?), rest))
        }
        [v, assign, rest @ ..] if assign == ":=" => Ok((None, Some(var_name(v)?), rest)),
        rest => Ok((None, None, rest)),
    }
}

fn var_name(w: &str) -> Result<String> {
    match w.strip_prefix('$') {
        Some(n) if !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Ok(n.to_owned())
        }
        _ => Err(format!("{w:?} is not a variable")),
    }
}

/// Splits an action into words: literals, chains, `(`, `)`, `|`, `,`, `:=`.
fn split_words(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '"' {
            let start = i;
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            if i >= c.len() {
                return Err("unterminated string".into());
            }
            i += 1;
            out.push(c[start..i].iter().collect());
        } else if "()|,".contains(ch) {
            out.push(ch.to_string());
            i += 1;
        } else if ch == ':' && c.get(i + 1) == Some(&'=') {
            out.push(":=".into());
            i += 2;
        } else if ch == '`' || ch == '\'' {
            return Err("raw strings and characters are outside the subset".into());
        } else {
            let start = i;
            while i < c.len() && !c[i].is_whitespace() && !"()|,\"".contains(c[i]) {
                if c[i] == ':' && c.get(i + 1) == Some(&'=') {
                    break;
                }
                i += 1;
            }
            out.push(c[start..i].iter().collect());
        }
    }
    Ok(out)
}

fn parse_pipe(words: &[String]) -> Result<Pipe> {
    let mut pos = 0;
    let pipe = parse_pipe_at(words, &mut pos)?;
    if pos != words.len() {
        return Err(format!("unexpected {:?}", words[pos]));
    }
    Ok(pipe)
}

fn parse_pipe_at(w: &[String], pos: &mut usize) -> Result<Pipe> {
    let mut pipe = vec![Vec::new()];
    while *pos < w.len() {
        let word = w[*pos].as_str();
        match word {
            ")" => break,
            "|" => {
                *pos += 1;
                pipe.push(Vec::new());
                continue;
            }
            "(" => {
                *pos += 1;
                let sub = parse_pipe_at(w, pos)?;
                if w.get(*pos).map(String::as_str) != Some(")") {
                    return Err("unclosed (".into());
                }
                *pos += 1;
                pipe.last_mut().unwrap().push(Arg::Sub(sub));
                continue;
            }
            _ => {}
        }
        let arg = if word.starts_with('"') {
            Arg::Str(unquote(word)?)
        } else if word == "." {
            Arg::Dot(Vec::new())
        } else if let Some(chain) = word.strip_prefix('.') {
            Arg::Dot(fields(chain)?)
        } else if let Some(v) = word.strip_prefix('$') {
            let (name, chain) = v.split_once('.').unwrap_or((v, ""));
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("{word:?} is not a variable"));
            }
            Arg::Var(
                name.to_owned(),
                if chain.is_empty() {
                    Vec::new()
                } else {
                    fields(chain)?
                },
            )
        } else if word == "true" || word == "false" {
            Arg::Bool(word == "true")
        } else if word.chars().all(|c| c.is_ascii_digit() || c == '-') && word != "-" {
            Arg::Int(word.parse().map_err(|_| format!("bad number {word}"))?)
        } else if word.chars().all(|c| c.is_ascii_alphanumeric()) {
            Arg::Func(word.to_owned())
        } else {
            return Err(format!("{word:?} is outside the subset"));
        };
        pipe.last_mut().unwrap().push(arg);
        *pos += 1;
    }
    if pipe.iter().any(Vec::is_empty) {
        return Err("an empty command in a pipeline".into());
    }
    Ok(pipe)
}

fn fields(chain: &str) -> Result<Vec<String>> {
    chain
        .split('.')
        .map(|f| {
            if !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                Ok(f.to_owned())
            } else {
                Err(format!(
                    "{chain:?}: a field name this renderer does not take"
                ))
            }
        })
        .collect()
}

/// A Go double-quoted string literal.
fn unquote(w: &str) -> Result<String> {
    let inner = w
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .ok_or_else(|| format!("{w} is not a string"))?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            other => return Err(format!("escape \\{other:?} is outside the subset")),
        }
    }
    Ok(out)
}

/// Takes the `define`s out of a file's top level.
pub(crate) fn split_defines(nodes: Vec<Node>) -> Result<(Defines, Vec<Node>)> {
    let mut defs = Vec::new();
    let mut body = Vec::new();
    for n in nodes {
        match n {
            Node::Define(name, b) => {
                if has_define(&b) {
                    return Err(format!("define {name:?} holds another define"));
                }
                defs.push((name, b));
            }
            other => {
                if has_define(std::slice::from_ref(&other)) {
                    return Err("define only at the top level".into());
                }
                body.push(other);
            }
        }
    }
    Ok((defs, body))
}

fn has_define(nodes: &[Node]) -> bool {
    nodes.iter().any(|n| match n {
        Node::Define(..) => true,
        Node::If(_, a, b) => has_define(a) || has_define(b),
        Node::Range { body, .. } => has_define(body),
        _ => false,
    })
}
