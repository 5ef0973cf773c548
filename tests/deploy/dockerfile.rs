//! The Dockerfile and .dockerignore, read as data: the image cannot be
//! built here (no registry for base images), so the tests check what can
//! be checked without building it.

use std::path::Path;

/// One instruction: its keyword (upper case) and the rest of its line(s).
#[derive(Debug, Clone)]
pub(crate) struct Instruction {
    pub keyword: String,
    pub args: String,
}

/// The Dockerfile's stages, in order; each begins with its FROM.
pub(crate) struct Dockerfile {
    pub stages: Vec<Vec<Instruction>>,
}

impl Dockerfile {
    pub(crate) fn parse(text: &str) -> Result<Dockerfile, String> {
        let mut logical = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let t = line.trim();
            if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
                continue;
            }
            if t.starts_with('#') {
                continue; // a comment inside a continued instruction
            }
            match t.strip_suffix('\\') {
                Some(part) => {
                    current.push_str(part);
                    current.push(' ');
                }
                None => {
                    current.push_str(t);
                    logical.push(std::mem::take(&mut current));
                }
            }
        }
        if !current.is_empty() {
            return Err("the last instruction ends with a line continuation".into());
        }
        let mut stages: Vec<Vec<Instruction>> = Vec::new();
        for l in logical {
            let (keyword, args) = l.split_once(char::is_whitespace).unwrap_or((&l, ""));
            let ins = Instruction {
                keyword: keyword.to_ascii_uppercase(),
                args: args.split_whitespace().collect::<Vec<_>>().join(" "),
            };
            if ins.keyword == "FROM" {
                stages.push(vec![ins]);
            } else if let Some(stage) = stages.last_mut() {
                stage.push(ins);
            } else if ins.keyword != "ARG" {
                return Err(format!("{} before the first FROM", ins.keyword));
            }
        }
        Ok(Dockerfile { stages })
    }

    pub(crate) fn load(path: &Path) -> Dockerfile {
        let text = std::fs::read_to_string(path).expect("read the Dockerfile");
        Dockerfile::parse(&text).expect("parse the Dockerfile")
    }

    /// The global ARG default of `name`.
    pub(crate) fn arg_default(text: &str, name: &str) -> Option<String> {
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("ARG ")
                .and_then(|a| a.strip_prefix(name))
                .and_then(|a| a.strip_prefix('='))
                .map(str::to_owned)
        })
    }

    pub(crate) fn runtime(&self) -> &[Instruction] {
        self.stages.last().expect("a stage")
    }

    /// Instructions of a stage with `keyword`.
    pub(crate) fn all<'a>(
        stage: &'a [Instruction],
        keyword: &'a str,
    ) -> impl Iterator<Item = &'a Instruction> {
        stage.iter().filter(move |i| i.keyword == keyword)
    }

    /// The single instruction of a stage with `keyword`.
    pub(crate) fn one<'a>(stage: &'a [Instruction], keyword: &str) -> &'a Instruction {
        let found: Vec<_> = stage.iter().filter(|i| i.keyword == keyword).collect();
        assert_eq!(
            found.len(),
            1,
            "want one {keyword} in the stage, found {found:?}"
        );
        found[0]
    }
}

/// An exec-form (JSON array) argument list, as ENTRYPOINT, CMD, VOLUME and
/// HEALTHCHECK CMD take it.
pub(crate) fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args)
        .unwrap_or_else(|e| panic!("{args}: not an exec-form JSON array: {e}"))
}

/// `--name=value` options at the start of an instruction's arguments, and
/// what follows them.
pub(crate) fn options(args: &str) -> (Vec<(String, String)>, String) {
    let mut opts = Vec::new();
    let mut rest = args.trim();
    while let Some(o) = rest.strip_prefix("--") {
        let (word, after) = o.split_once(' ').unwrap_or((o, ""));
        let (k, v) = word.split_once('=').unwrap_or((word, ""));
        opts.push((k.to_owned(), v.to_owned()));
        rest = after.trim_start();
    }
    (opts, rest.to_owned())
}

/// .dockerignore in the allowlist form this project uses: `*`, then
/// `!path` lines letting paths back in, then exclusions again. Anything
/// else is refused, so the check below means what it says.
pub(crate) struct Ignore {
    pub allowed: Vec<String>,
    pub excluded: Vec<String>,
}

impl Ignore {
    pub(crate) fn parse(text: &str) -> Result<Ignore, String> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        if lines.next() != Some("*") {
            return Err(".dockerignore must start with `*` (an allowlist)".into());
        }
        let mut allowed = Vec::new();
        let mut excluded = Vec::new();
        for l in lines {
            if let Some(p) = l.strip_prefix('!') {
                if p.contains(['*', '?', '[']) {
                    return Err(format!("{l}: patterns in `!` lines are not checked here"));
                }
                allowed.push(p.trim_matches('/').to_owned());
            } else if l.contains(['?', '[']) || (l.contains('*') && !l.starts_with("**/")) {
                return Err(format!("{l}: a pattern this check does not read"));
            } else {
                excluded.push(l.trim_matches('/').to_owned());
            }
        }
        Ok(Ignore { allowed, excluded })
    }

    /// Whether a path (relative to the context) is sent to the builder.
    pub(crate) fn sends(&self, path: &str) -> bool {
        let under = |p: &str, dir: &str| p == dir || p.starts_with(&format!("{dir}/"));
        let allowed = self.allowed.iter().any(|a| under(path, a));
        let excluded = self.excluded.iter().any(|e| match e.strip_prefix("**/") {
            Some(name) => path.split('/').any(|c| c == name),
            None => under(path, e),
        });
        allowed && !excluded
    }
}
