//! attestd's backup file: one consistent copy of a store, taken by the
//! running server ([`crate::Store::backup`]) and written by `attestd backup`;
//! `attestd restore` makes a new database from it
//! ([`crate::sled_store::restore`]).
//!
//! The copy is the store's own tables, byte for byte, as of one moment
//! between two writes, and that moment is sealed in the audit chain: the
//! server appends who asked for the backup, then a signed checkpoint of the
//! head after it, and copies the state that ends with that checkpoint.
//!
//! Layout (integers big-endian):
//!
//! ```text
//! magic            19 bytes  0x89 "attestd-backup" CR LF 0x1a LF
//! format version   u32       FORMAT_VERSION (1)
//! header length    u32       at most 64 KiB
//! header           UTF-8     "name: value" lines (Header)
//! tables, each:    'T' u16 name length, name, u64 entry count,
//!                  then per entry: 'E' u32 key length, key, u32 value length, value
//!                  (keys strictly increasing within a table)
//! end              'Z'
//! SHA-256          32 bytes  over every byte before it
//! ```
//!
//! A reader checks the magic and the format version first (so a file from
//! a newer attestd is named as such), then the SHA-256 over the whole
//! file, and only then interprets anything else ([`read`]).

pub mod read;

use std::io::{self, Write};
use std::path::PathBuf;

use crate::AuditNote;

/// The first bytes of every backup file (PNG-style: a high byte, line
/// endings and ^Z reveal a file mangled as text).
pub const MAGIC: &[u8; 19] = b"\x89attestd-backup\r\n\x1a\n";

/// The layout of this module. A reader refuses a newer one.
pub const FORMAT_VERSION: u32 = 1;

/// Bounds a reader applies before allocating.
pub const MAX_HEADER: usize = 64 * 1024;
/// Longest table name a reader accepts.
pub const MAX_TABLE_NAME: usize = 255;
/// Largest key a reader accepts.
pub const MAX_KEY: usize = 1 << 20;
/// Largest value a reader accepts.
pub const MAX_VALUE: usize = 64 << 20;

/// Makes the checkpoint that ends a backup from the head it signs (sequence
/// and hash): an `audit.checkpoint` note. Called while writes are held off.
pub type Seal = Box<dyn Fn(u64, [u8; 32]) -> AuditNote + Send + Sync>;

/// What a backup says about itself, before its tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The backend whose tables these are (`sled`).
    pub store: String,
    /// That backend's on-disk format ([`crate::sled_store::format::STORE_FORMAT`]).
    pub store_format: u64,
    /// When the closing checkpoint was signed (ms since the epoch, the server's clock).
    pub created_at_ms: i64,
    /// The last entry of the audit chain in the copy: the closing checkpoint.
    pub audit_seq: u64,
    /// The hash of that entry.
    pub audit_hash: [u8; 32],
    /// The key that signed the closing checkpoint (`sha256:<hex>` of its SPKI).
    pub checkpoint_key: String,
    /// Tables in the copy.
    pub tables: u64,
    /// Entries in all tables.
    pub entries: u64,
    /// How long the server held writes off to make the copy (µs).
    pub writes_paused_us: u64,
}

/// The fields of the text header, in the order they are written.
const FIELDS: [&str; 10] = [
    "store",
    "store_format",
    "created_at_ms",
    "created_at",
    "audit_seq",
    "audit_hash",
    "checkpoint_key",
    "tables",
    "entries",
    "writes_paused_us",
];

impl Header {
    /// The header text: one `name: value` line per field.
    pub fn to_text(&self) -> String {
        let created = attestd_core::time::UnixTime(self.created_at_ms.div_euclid(1000));
        let values = [
            self.store.clone(),
            self.store_format.to_string(),
            self.created_at_ms.to_string(),
            created.to_string(),
            self.audit_seq.to_string(),
            attestd_core::ids::hex(&self.audit_hash),
            self.checkpoint_key.clone(),
            self.tables.to_string(),
            self.entries.to_string(),
            self.writes_paused_us.to_string(),
        ];
        FIELDS
            .iter()
            .zip(values)
            .map(|(k, v)| format!("{k}: {v}\n"))
            .collect()
    }

    /// Parses a header text. Every field is required; lines with other
    /// names are ignored (a later attestd may add some within the same
    /// format version).
    pub fn parse(text: &str) -> Result<Header, BackupError> {
        let get = |name: &str| -> Result<&str, BackupError> {
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
                .ok_or_else(|| BackupError::Damaged(format!("the header has no `{name}`")))
        };
        fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, BackupError> {
            v.parse().map_err(|_| {
                BackupError::Damaged(format!("header `{name}` is not a number: {v:?}"))
            })
        }
        let hash = attestd_core::ids::Digest::from_hex(get("audit_hash")?)
            .ok_or_else(|| BackupError::Damaged("header `audit_hash` is not 64 hex".into()))?;
        Ok(Header {
            store: get("store")?.to_owned(),
            store_format: num("store_format", get("store_format")?)?,
            created_at_ms: num("created_at_ms", get("created_at_ms")?)?,
            audit_seq: num("audit_seq", get("audit_seq")?)?,
            audit_hash: hash.0,
            checkpoint_key: get("checkpoint_key")?.to_owned(),
            tables: num("tables", get("tables")?)?,
            entries: num("entries", get("entries")?)?,
            writes_paused_us: num("writes_paused_us", get("writes_paused_us")?)?,
        })
    }
}

/// One table of the copy: every key and value, in key order.
pub struct Table {
    /// The table's name.
    pub name: String,
    /// Its entries, in key order.
    pub entries: Vec<(sled::IVec, sled::IVec)>,
}

/// A consistent copy of a store, in memory, ready to [`encode`].
pub struct Snapshot {
    /// What the backup says about itself.
    pub header: Header,
    /// The copied tables.
    pub tables: Vec<Table>,
}

/// Why a backup could not be written, read or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file does not start like a backup.
    #[error("not an attestd backup: {0}")]
    NotABackup(String),
    /// A format, store or version this attestd does not read.
    #[error("{0}")]
    Unsupported(String),
    /// The bytes are not what was written (corruption, truncation, tampering).
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    /// The audit chain inside the backup does not verify.
    #[error("the audit chain in the backup does not verify at entry {seq}: {why}")]
    Chain {
        /// The entry at fault.
        seq: u64,
        /// What does not verify.
        why: String,
    },
    #[error(
        "{} is not empty: restore writes a new database into an empty or missing directory",
        .0.display()
    )]
    /// The restore target holds files already.
    NotEmpty(PathBuf),
    /// Writing the restored database failed.
    #[error("writing the restored database: {0}")]
    Store(String),
}

impl BackupError {
    /// Maps an I/O error on `path` to [`BackupError::Io`].
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> BackupError {
        let path = path.into();
        move |source| BackupError::Io { path, source }
    }
}

/// Computes the SHA-256 of what passes through to `inner`.
struct Hashing<W> {
    inner: W,
    sha: ring::digest::Context,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn len_u32(n: usize, what: &str) -> io::Result<[u8; 4]> {
    u32::try_from(n)
        .map(u32::to_be_bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} too long")))
}

/// Writes `s` as a backup file to `out` (buffer it: this writes field by
/// field); returns the bytes written, the SHA-256 included.
pub fn encode(s: &Snapshot, out: impl Write) -> io::Result<u64> {
    let mut w = Hashing {
        inner: out,
        sha: ring::digest::Context::new(&ring::digest::SHA256),
        written: 0,
    };
    let header = s.header.to_text();
    w.write_all(MAGIC)?;
    w.write_all(&FORMAT_VERSION.to_be_bytes())?;
    w.write_all(&len_u32(header.len(), "header")?)?;
    w.write_all(header.as_bytes())?;
    for t in &s.tables {
        let name = u16::try_from(t.name.len())
            .ok()
            .filter(|n| usize::from(*n) <= MAX_TABLE_NAME)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "table name too long"))?;
        w.write_all(b"T")?;
        w.write_all(&name.to_be_bytes())?;
        w.write_all(t.name.as_bytes())?;
        w.write_all(&(t.entries.len() as u64).to_be_bytes())?;
        for (k, v) in &t.entries {
            w.write_all(b"E")?;
            w.write_all(&len_u32(k.len(), "key")?)?;
            w.write_all(k)?;
            w.write_all(&len_u32(v.len(), "value")?)?;
            w.write_all(v)?;
        }
    }
    w.write_all(b"Z")?;
    let digest = w.sha.clone().finish();
    w.inner.write_all(digest.as_ref())?;
    w.inner.flush()?;
    Ok(w.written + 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn header() -> Header {
        Header {
            store: "sled".into(),
            store_format: 1,
            created_at_ms: 1_767_225_603_250,
            audit_seq: 42,
            audit_hash: [7; 32],
            checkpoint_key: "sha256:ab".into(),
            tables: 2,
            entries: 3,
            writes_paused_us: 1234,
        }
    }

    #[test]
    fn the_header_reads_back_and_says_when_in_words() {
        let h = header();
        let text = h.to_text();
        assert!(
            text.contains("created_at: 2026-01-01T00:00:03Z\n"),
            "{text}"
        );
        assert_eq!(Header::parse(&text).unwrap(), h);
        // A field added by a later attestd is ignored; a missing one is named.
        assert_eq!(Header::parse(&format!("{text}later: x\n")).unwrap(), h);
        let without = text.replace("entries: 3\n", "");
        assert!(matches!(
            Header::parse(&without),
            Err(BackupError::Damaged(m)) if m.contains("`entries`")
        ));
    }
}
