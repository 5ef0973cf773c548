//! What the built `attestd` binary says about itself: its subcommands and
//! their flags, read from `--help`, so that a deployment file naming a flag
//! the binary does not have fails a test.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::OnceLock;

/// Where the image, the chart and the unit install the binary.
pub(crate) const INSTALLED: &str = "/usr/local/bin/attestd";

pub(crate) struct Binary {
    pub commands: BTreeSet<String>,
    /// Per subcommand: flag name (without `--`) -> whether it takes a value.
    pub flags: BTreeMap<String, BTreeMap<String, bool>>,
    /// Per subcommand: flag name -> its default, where help shows one.
    pub defaults: BTreeMap<String, BTreeMap<String, String>>,
}

/// A command line from a deployment file, checked and split.
#[derive(Debug)]
pub(crate) struct Invocation {
    pub command: String,
    /// Flag name -> value ("" for a flag without one).
    pub flags: BTreeMap<String, String>,
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_attestd"))
        .args(args)
        .arg("--help")
        .env("COLUMNS", "400")
        .output()
        .expect("run attestd --help");
    assert!(out.status.success(), "attestd {args:?} --help failed");
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

pub(crate) fn binary() -> &'static Binary {
    static BIN: OnceLock<Binary> = OnceLock::new();
    BIN.get_or_init(|| {
        let top = help(&[]);
        let mut commands = BTreeSet::new();
        let mut in_commands = false;
        for line in top.lines() {
            if line.starts_with("Commands:") {
                in_commands = true;
            } else if in_commands && line.trim().is_empty() {
                in_commands = false;
            } else if in_commands {
                if let Some(word) = line.split_whitespace().next() {
                    if word != "help" {
                        commands.insert(word.to_owned());
                    }
                }
            }
        }
        assert!(commands.contains("serve"), "no serve in:\n{top}");
        let mut flags = BTreeMap::new();
        let mut defaults = BTreeMap::new();
        for c in &commands {
            let (f, d) = parse_flags(&help(&[c]));
            flags.insert(c.clone(), f);
            defaults.insert(c.clone(), d);
        }
        Binary {
            commands,
            flags,
            defaults,
        }
    })
}

/// Flags from clap's help: lines like `      --config <CONFIG>` followed by
/// their description, which may end with `[default: X]`.
fn parse_flags(text: &str) -> (BTreeMap<String, bool>, BTreeMap<String, String>) {
    let mut flags = BTreeMap::new();
    let mut defaults = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let t = line.trim_start();
        let t = match t.strip_prefix('-') {
            Some(r) if r.len() > 2 && r.as_bytes()[1] == b',' => r[2..].trim_start(),
            _ => t,
        };
        if let Some(rest) = t.strip_prefix("--") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let takes_value = rest[name.len()..].starts_with(" <");
            flags.insert(name.clone(), takes_value);
            current = Some(name);
        }
        if let (Some(name), Some(i)) = (&current, line.find("[default: ")) {
            let v = &line[i + "[default: ".len()..];
            if let Some(end) = v.find(']') {
                defaults.insert(name.clone(), v[..end].to_owned());
            }
        }
    }
    (flags, defaults)
}

impl Binary {
    /// Checks a command line (`argv[0]` is the binary) and returns its
    /// subcommand and flags; an error names what the binary lacks.
    pub(crate) fn invocation(&self, argv: &[String]) -> Result<Invocation, String> {
        let shown = argv.join(" ");
        match argv.first() {
            Some(p) if p == INSTALLED => {}
            other => return Err(format!("{shown}: runs {other:?}, not {INSTALLED}")),
        }
        let Some(command) = argv.get(1) else {
            return Err(format!("{shown}: no subcommand"));
        };
        let Some(known) = self.flags.get(command) else {
            return Err(format!(
                "{shown}: attestd has no subcommand {command:?} (it has {:?})",
                self.commands
            ));
        };
        let mut flags = BTreeMap::new();
        let mut rest = argv[2..].iter();
        while let Some(a) = rest.next() {
            let Some(flag) = a.strip_prefix("--") else {
                return Err(format!(
                    "{shown}: {a:?} is not a flag (attestd {command} takes none)"
                ));
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (flag, None),
            };
            let Some(&takes_value) = known.get(name) else {
                return Err(format!(
                    "{shown}: attestd {command} has no flag --{name} (it has {:?})",
                    known.keys().collect::<Vec<_>>()
                ));
            };
            let value = match (takes_value, inline) {
                (true, Some(v)) => v,
                (true, None) => rest
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{shown}: --{name} without its value"))?,
                (false, None) => String::new(),
                (false, Some(_)) => return Err(format!("{shown}: --{name} takes no value")),
            };
            if flags.insert(name.to_owned(), value).is_some() {
                return Err(format!("{shown}: --{name} given twice"));
            }
        }
        Ok(Invocation {
            command: command.clone(),
            flags,
        })
    }

    /// The default of a flag, as help shows it.
    pub(crate) fn default_of(&self, command: &str, flag: &str) -> String {
        self.defaults
            .get(command)
            .and_then(|d| d.get(flag))
            .cloned()
            .unwrap_or_else(|| panic!("attestd {command} --help shows no default for --{flag}"))
    }
}

#[test]
fn deploy_binary_help_lists_the_flags_the_checks_rely_on() {
    let bin = binary();
    for c in ["serve", "health"] {
        assert!(bin.commands.contains(c), "{:?}", bin.commands);
    }
    assert_eq!(bin.flags["serve"].get("config"), Some(&true));
    assert_eq!(bin.flags["serve"].get("dev"), Some(&false));
    assert_eq!(bin.flags["health"].get("addr"), Some(&true));
    assert_eq!(bin.default_of("health", "addr"), "127.0.0.1:50051");
    assert_eq!(bin.default_of("health", "timeout-secs"), "3");
    let argv = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let inv = bin
        .invocation(&argv("/usr/local/bin/attestd serve --config=/x --dev"))
        .unwrap();
    assert_eq!(inv.flags["config"], "/x");
    assert_eq!(inv.flags["dev"], "");
    for (bad, says) in [
        ("/usr/bin/attestd serve", "not /usr/local/bin/attestd"),
        ("/usr/local/bin/attestd serv", "no subcommand \"serv\""),
        ("/usr/local/bin/attestd serve --confg /x", "no flag --confg"),
        ("/usr/local/bin/attestd serve --config", "without its value"),
        ("/usr/local/bin/attestd serve x", "not a flag"),
        ("/usr/local/bin/attestd health --addr a --addr b", "twice"),
    ] {
        let err = bin.invocation(&argv(bad)).unwrap_err();
        assert!(err.contains(says), "{bad}: {err}");
    }
}
