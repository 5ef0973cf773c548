//! Reading a backup file. The magic and the format version are checked
//! first, then the SHA-256 over the whole file, and only then is the rest
//! parsed, with every length bounded before anything is allocated. What
//! the tables mean is the restoring backend's business: [`read`] hands
//! them to a visitor.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::{
    BackupError, Header, FORMAT_VERSION, MAGIC, MAX_HEADER, MAX_KEY, MAX_TABLE_NAME, MAX_VALUE,
};

/// One piece of a backup after its header, in file order.
pub enum Item<'a> {
    /// A table starts; `entries` of it follow.
    Table {
        /// The table's name.
        name: &'a str,
        /// How many entries follow.
        entries: u64,
    },
    /// An entry of the current table.
    Entry {
        /// The entry's key.
        key: &'a [u8],
        /// The entry's value.
        value: &'a [u8],
    },
}

const BUFFER: usize = 1 << 20;

/// Reads the fixed start of a backup (magic and format version): is this a
/// backup this attestd reads at all?
fn start(r: &mut impl Read) -> Result<(), BackupError> {
    let mut magic = [0u8; MAGIC.len()];
    if r.read_exact(&mut magic).is_err() || &magic != MAGIC {
        return Err(BackupError::NotABackup(
            "it does not start with the attestd backup magic".into(),
        ));
    }
    let mut v = [0u8; 4];
    r.read_exact(&mut v)
        .map_err(|_| BackupError::Damaged("it ends inside its format version".into()))?;
    match u32::from_be_bytes(v) {
        FORMAT_VERSION => Ok(()),
        0 => Err(BackupError::Damaged("format version 0".into())),
        n if n > FORMAT_VERSION => Err(BackupError::Unsupported(format!(
            "the backup is in format {n}, written by a newer attestd; this attestd reads \
             backup format {FORMAT_VERSION}: restore it with the attestd that made it (or later)"
        ))),
        n => Err(BackupError::Unsupported(format!(
            "the backup is in format {n}, which this attestd no longer reads"
        ))),
    }
}

/// Checks the SHA-256 at the end of the file against every byte before it.
fn check_hash(path: &Path, len: u64) -> Result<(), BackupError> {
    let mut f = BufReader::with_capacity(BUFFER, File::open(path).map_err(BackupError::io(path))?);
    let body = len - 32;
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; BUFFER];
    let mut left = body;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        f.read_exact(&mut buf[..want])
            .map_err(BackupError::io(path))?;
        sha.update(&buf[..want]);
        left -= want as u64;
    }
    let mut trailer = [0u8; 32];
    f.read_exact(&mut trailer).map_err(BackupError::io(path))?;
    if sha.finish().as_ref() != trailer {
        return Err(BackupError::Damaged(
            "its SHA-256 does not match its contents (changed or cut short after it was written)"
                .into(),
        ));
    }
    Ok(())
}

/// A reader that knows where the body ends (before the SHA-256).
struct Body<R> {
    r: R,
    pos: u64,
    end: u64,
}

impl<R: Read> Body<R> {
    fn bytes(&mut self, n: usize, buf: &mut Vec<u8>, what: &str) -> Result<(), BackupError> {
        if self.pos + n as u64 > self.end {
            return Err(BackupError::Damaged(format!("it ends inside {what}")));
        }
        buf.resize(n, 0);
        self.r
            .read_exact(buf)
            .map_err(|e| BackupError::Damaged(format!("reading {what}: {e}")))?;
        self.pos += n as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], BackupError> {
        let mut b = Vec::with_capacity(N);
        self.bytes(N, &mut b, what)?;
        Ok(<[u8; N]>::try_from(b.as_slice()).unwrap_or([0; N]))
    }

    fn len32(&mut self, max: usize, what: &str) -> Result<usize, BackupError> {
        let n = u32::from_be_bytes(self.array(what)?) as usize;
        if n > max {
            return Err(BackupError::Damaged(format!(
                "{what} of {n} bytes is above the limit of {max}"
            )));
        }
        Ok(n)
    }
}

/// Reads the backup at `path`: checks its start, its SHA-256, then parses
/// its header (given to `header`, which may refuse it) and hands each table
/// and entry to `visit` in file order. Checks the structure: counts as
/// announced, keys strictly increasing in a table, each table once, the end
/// marker exactly before the SHA-256. Returns the header.
pub fn read(
    path: &Path,
    header: impl FnOnce(&Header) -> Result<(), BackupError>,
    mut visit: impl FnMut(Item<'_>) -> Result<(), BackupError>,
) -> Result<Header, BackupError> {
    let file = File::open(path).map_err(BackupError::io(path))?;
    let len = file.metadata().map_err(BackupError::io(path))?.len();
    let mut r = BufReader::with_capacity(BUFFER, file);
    start(&mut r)?;
    let fixed = (MAGIC.len() + 4 + 4 + 1 + 32) as u64;
    if len < fixed {
        return Err(BackupError::Damaged(format!("it is only {len} bytes long")));
    }
    check_hash(path, len)?;

    let mut b = Body {
        r,
        pos: (MAGIC.len() + 4) as u64,
        end: len - 32,
    };
    let mut buf = Vec::new();
    let n = b.len32(MAX_HEADER, "the header")?;
    b.bytes(n, &mut buf, "the header")?;
    let text = std::str::from_utf8(&buf)
        .map_err(|_| BackupError::Damaged("the header is not UTF-8".into()))?;
    let h = Header::parse(text)?;
    header(&h)?;

    let (mut key, mut value) = (Vec::new(), Vec::new());
    let mut names: Vec<String> = Vec::new();
    let mut entries = 0u64;
    loop {
        match b.array::<1>("a table")?[0] {
            b'T' => {}
            b'Z' => break,
            other => {
                return Err(BackupError::Damaged(format!(
                    "unexpected byte {other:#04x} where a table or the end should start"
                )))
            }
        }
        let n = usize::from(u16::from_be_bytes(b.array("a table name")?));
        if n == 0 || n > MAX_TABLE_NAME {
            return Err(BackupError::Damaged(format!("a table name of {n} bytes")));
        }
        b.bytes(n, &mut buf, "a table name")?;
        let name = String::from_utf8(buf.clone())
            .map_err(|_| BackupError::Damaged("a table name is not UTF-8".into()))?;
        if names.contains(&name) {
            return Err(BackupError::Damaged(format!("table {name} appears twice")));
        }
        let count = u64::from_be_bytes(b.array("an entry count")?);
        visit(Item::Table {
            name: &name,
            entries: count,
        })?;
        let mut previous: Option<Vec<u8>> = None;
        for _ in 0..count {
            if b.array::<1>("an entry")?[0] != b'E' {
                return Err(BackupError::Damaged(format!(
                    "table {name} has fewer entries than its count ({count})"
                )));
            }
            let n = b.len32(MAX_KEY, "a key")?;
            b.bytes(n, &mut key, "a key")?;
            let n = b.len32(MAX_VALUE, "a value")?;
            b.bytes(n, &mut value, "a value")?;
            if previous.as_ref().is_some_and(|p| *p >= key) {
                return Err(BackupError::Damaged(format!(
                    "the keys of table {name} are not in order"
                )));
            }
            visit(Item::Entry {
                key: &key,
                value: &value,
            })?;
            previous = Some(key.clone());
        }
        entries += count;
        names.push(name);
    }
    if b.pos != b.end {
        return Err(BackupError::Damaged(format!(
            "{} bytes follow its end marker",
            b.end - b.pos
        )));
    }
    if names.len() as u64 != h.tables || entries != h.entries {
        return Err(BackupError::Damaged(format!(
            "it holds {} tables and {entries} entries, its header says {} and {}",
            names.len(),
            h.tables,
            h.entries
        )));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::super::{encode, tests::header, Snapshot, Table};
    use super::*;

    fn sample() -> Snapshot {
        let e = |k: &[u8], v: &[u8]| (sled::IVec::from(k), sled::IVec::from(v));
        Snapshot {
            header: header(),
            tables: vec![
                Table {
                    name: "a".into(),
                    entries: vec![e(b"k1", b"v1"), e(b"k2", b"")],
                },
                Table {
                    name: "b".into(),
                    entries: vec![e(b"x", b"yz")],
                },
            ],
        }
    }

    fn written(s: &Snapshot) -> (tempfile::TempDir, std::path::PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.attestd-backup");
        let mut bytes = Vec::new();
        let n = encode(s, &mut bytes).unwrap();
        assert_eq!(n, bytes.len() as u64);
        std::fs::write(&path, &bytes).unwrap();
        (dir, path, bytes)
    }

    fn items(path: &Path) -> Result<Vec<String>, BackupError> {
        let mut out = Vec::new();
        read(
            path,
            |_| Ok(()),
            |i| {
                out.push(match i {
                    Item::Table { name, entries } => format!("T {name} {entries}"),
                    Item::Entry { key, value } => format!(
                        "E {} {}",
                        String::from_utf8_lossy(key),
                        String::from_utf8_lossy(value)
                    ),
                });
                Ok(())
            },
        )?;
        Ok(out)
    }

    #[test]
    fn a_written_backup_reads_back_entry_by_entry() {
        let (_d, path, _) = written(&sample());
        assert_eq!(
            items(&path).unwrap(),
            ["T a 2", "E k1 v1", "E k2 ", "T b 1", "E x yz"]
        );
    }

    #[test]
    fn any_changed_byte_or_a_cut_is_refused_before_parsing() {
        let (_d, path, bytes) = written(&sample());
        let header_len = (MAGIC.len() + 8) as u64;
        for i in (MAGIC.len() + 4)..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            let err = items(&path).unwrap_err();
            assert!(
                matches!(&err, BackupError::Damaged(m) if m.contains("SHA-256")),
                "byte {i} (header ends near {header_len}): {err}"
            );
        }
        for cut in [1, 31, 32, 33, bytes.len() / 2] {
            std::fs::write(&path, &bytes[..bytes.len() - cut]).unwrap();
            assert!(
                matches!(items(&path), Err(BackupError::Damaged(_))),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn other_files_and_newer_formats_are_named() {
        let (_d, path, mut bytes) = written(&sample());
        std::fs::write(&path, b"{\"not\": \"a backup\"}").unwrap();
        assert!(matches!(items(&path), Err(BackupError::NotABackup(_))));
        bytes[MAGIC.len()..MAGIC.len() + 4].copy_from_slice(&2u32.to_be_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let err = items(&path).unwrap_err();
        assert!(
            matches!(&err, BackupError::Unsupported(m) if m.contains("newer attestd")),
            "{err}"
        );
    }

    #[test]
    fn a_well_hashed_file_that_breaks_the_structure_is_refused() {
        // Keys out of order, with a correct SHA-256: only a writer bug or a
        // forger makes this; the reader still refuses it.
        let mut s = sample();
        s.tables[0].entries.swap(0, 1);
        let (_d, path, _) = written(&s);
        assert!(matches!(
            items(&path),
            Err(BackupError::Damaged(m)) if m.contains("not in order")
        ));
        let mut s = sample();
        s.header.entries = 4;
        let (_d, path, _) = written(&s);
        assert!(matches!(
            items(&path),
            Err(BackupError::Damaged(m)) if m.contains("header says")
        ));
    }
}
