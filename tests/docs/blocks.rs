//! The fenced blocks of `docs/*.md` and what each one says it is (its info
//! string); see `tests/docs_examples.rs` for the vocabulary.

use std::collections::BTreeMap;
use std::path::PathBuf;

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One fenced block of a document.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub file: String,
    pub line: usize,
    pub info: String,
    /// `key=value` words of the info string.
    pub attrs: BTreeMap<String, String>,
    /// The other words (the language first).
    pub words: Vec<String>,
    pub body: String,
}

impl Block {
    pub(crate) fn at(&self) -> String {
        format!("docs/{}:{}", self.file, self.line)
    }

    pub(crate) fn attr(&self, k: &str) -> Option<&str> {
        self.attrs.get(k).map(String::as_str)
    }

    pub(crate) fn has(&self, word: &str) -> bool {
        self.words.iter().any(|w| w == word)
    }
}

/// The fenced blocks of a markdown text.
pub(crate) fn blocks_of(file: &str, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match (&mut open, fence) {
            (None, true) => {
                let info = line.trim_start().trim_start_matches('`').trim().to_owned();
                let mut attrs = BTreeMap::new();
                let mut words = Vec::new();
                for w in info.split_whitespace() {
                    match w.split_once('=') {
                        Some((k, v)) => {
                            attrs.insert(k.to_owned(), v.to_owned());
                        }
                        None => words.push(w.to_owned()),
                    }
                }
                open = Some(Block {
                    file: file.to_owned(),
                    line: i + 1,
                    info,
                    attrs,
                    words,
                    body: String::new(),
                });
            }
            (Some(_), true) => out.push(open.take().expect("open block")),
            (Some(b), false) => {
                b.body.push_str(line);
                b.body.push('\n');
            }
            (None, false) => {}
        }
    }
    assert!(open.is_none(), "docs/{file}: a fenced block is not closed");
    out
}

/// Every document of `docs/`, by file name.
pub(crate) fn documents() -> Vec<(String, String)> {
    let mut docs: Vec<(String, String)> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("a document"))
        })
        .collect();
    docs.sort();
    assert!(docs.len() >= 6, "docs/ lost documents: {docs:?}");
    docs
}

pub(crate) fn all_blocks() -> Vec<Block> {
    documents()
        .iter()
        .flat_map(|(f, t)| blocks_of(f, t))
        .collect()
}

/// What a block is, from its info string.
#[derive(Debug, PartialEq)]
pub(crate) enum Class {
    Example,
    Config,
    Excerpt,
    AuditVector(String),
    Syntax,
    Commands,
}

pub(crate) fn classify(b: &Block) -> Option<Class> {
    if b.attrs.contains_key("example") {
        return Some(Class::Example);
    }
    if b.attrs.contains_key("excerpt") {
        return Some(Class::Excerpt);
    }
    if let Some(v) = b.words.iter().find(|w| w.starts_with("audit-vector-")) {
        return Some(Class::AuditVector(v.clone()));
    }
    if b.has("config") {
        return Some(Class::Config);
    }
    if b.has("syntax") {
        return Some(Class::Syntax);
    }
    if b.has("commands") {
        return Some(Class::Commands);
    }
    None
}

pub(crate) fn blocks(class: Class) -> Vec<Block> {
    all_blocks()
        .into_iter()
        .filter(|b| classify(b).as_ref() == Some(&class))
        .collect()
}

pub(crate) fn example(name: &str) -> Block {
    all_blocks()
        .into_iter()
        .find(|b| b.attr("example") == Some(name))
        .unwrap_or_else(|| panic!("no example={name} in docs/"))
}
