//! From a backup file to a new sled database: [`verify`] checks everything
//! the file claims, [`restore`] checks it again while writing it into a
//! directory that holds nothing yet.
//!
//! Verification is the whole file's SHA-256 ([`crate::backup::read`]),
//! then: the store and both formats are ones this attestd reads; every
//! table is one of attestd's trees and each tree is there; the `audit` tree
//! is a chain that verifies from genesis, entry by entry, keyed by its
//! sequences; it ends with a checkpoint of the entry before it, which is
//! the head the header and `meta` name; with the audit key, that
//! checkpoint's signature verifies. So a file that restores is a copy of a
//! whole database whose audit chain is intact and ends where the server
//! sealed it.

use std::path::{Path, PathBuf};

use attestd_core::audit::{AuditEntry, Checkpoint, CHECKPOINT_ACTION, GENESIS};
use attestd_core::keys::PublicKey;
use prost::Message;

use super::engine::{
    AUDIT, AUDIT_HEAD, AUDIT_LAST_CHECKPOINT, AUDIT_SEQ, HISTORY, META, RECORD_INDEX, TREE_NAMES,
};
use super::format::{
    FORMAT_KEY, OLDEST_STORE_FORMAT, ORDER_FLOOR, RESTORE_INCOMPLETE, STORE_FORMAT,
};
use crate::backup::read::{read, Item};
use crate::backup::{BackupError, Header};
use crate::AuditRecord;

/// What a verified backup holds.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The backup's header.
    pub header: Header,
    /// Whether the closing checkpoint's signature was checked with a key.
    pub signature_checked: bool,
    /// The first per-unit list order above every one in the copy.
    pub order_floor: u64,
}

/// The checks of [`verify`], fed one table and entry at a time.
struct Check<'k> {
    key: Option<&'k PublicKey>,
    table: Option<usize>,
    seen: Vec<bool>,
    /// The chain so far: the last entry read.
    last: Option<AuditRecord>,
    meta: Vec<(Vec<u8>, Vec<u8>)>,
    order_floor: u64,
}

fn damaged(m: impl Into<String>) -> BackupError {
    BackupError::Damaged(m.into())
}

fn entry(r: &AuditRecord) -> Option<AuditEntry> {
    Some(AuditEntry {
        seq: r.seq,
        at_ms: r.at_ms,
        principal: r.principal.clone(),
        action: r.action.clone(),
        target: r.target.clone(),
        reason: r.reason.clone(),
        details: r.details.clone(),
        prev_hash: r.prev_hash.clone().try_into().ok()?,
        hash: r.hash.clone().try_into().ok()?,
    })
}

impl Check<'_> {
    fn header(h: &Header) -> Result<(), BackupError> {
        if h.store != "sled" {
            return Err(BackupError::Unsupported(format!(
                "the backup holds a {:?} store; attestd restores sled backups only",
                h.store
            )));
        }
        if h.store_format > STORE_FORMAT || h.store_format < OLDEST_STORE_FORMAT {
            return Err(BackupError::Unsupported(format!(
                "the backup holds store format {}, this attestd reads formats \
                 {OLDEST_STORE_FORMAT} to {STORE_FORMAT}: restore it with the attestd that \
                 made it (or later)",
                h.store_format
            )));
        }
        Ok(())
    }

    fn item(&mut self, i: &Item<'_>) -> Result<(), BackupError> {
        match *i {
            Item::Table { name, .. } => {
                let Some(t) = TREE_NAMES.iter().position(|n| *n == name) else {
                    return Err(BackupError::Unsupported(format!(
                        "the backup has a table {name:?} that this attestd does not know \
                         (made by a newer attestd?)"
                    )));
                };
                self.seen[t] = true;
                self.table = Some(t);
                Ok(())
            }
            Item::Entry { key, value } => match self.table {
                Some(AUDIT) => self.audit(key, value),
                Some(META) => {
                    if [
                        AUDIT_SEQ,
                        AUDIT_HEAD,
                        AUDIT_LAST_CHECKPOINT,
                        FORMAT_KEY,
                        ORDER_FLOOR,
                    ]
                    .contains(&key)
                    {
                        self.meta.push((key.to_vec(), value.to_vec()));
                    }
                    Ok(())
                }
                Some(HISTORY | RECORD_INDEX) => {
                    // `serial 0x00 order`: the order is the last 8 bytes.
                    let order = key
                        .len()
                        .checked_sub(8)
                        .and_then(|at| <[u8; 8]>::try_from(&key[at..]).ok())
                        .map(u64::from_be_bytes)
                        .ok_or_else(|| damaged("a history key is too short"))?;
                    self.order_floor = self.order_floor.max(order.saturating_add(1));
                    Ok(())
                }
                Some(_) => Ok(()),
                None => Err(damaged("an entry before any table")),
            },
        }
    }

    /// One entry of the chain: the next sequence, chained to the last one.
    fn audit(&mut self, key: &[u8], value: &[u8]) -> Result<(), BackupError> {
        let r =
            AuditRecord::decode(value).map_err(|_| damaged("an audit entry does not decode"))?;
        let (prev, prev_seq) = match &self.last {
            Some(l) => (
                <[u8; 32]>::try_from(l.hash.as_slice()).unwrap_or(GENESIS),
                l.seq,
            ),
            None => (GENESIS, 0),
        };
        let chain_err = |why: &str| BackupError::Chain {
            seq: r.seq,
            why: why.to_owned(),
        };
        if key != r.seq.to_be_bytes() {
            return Err(chain_err("stored under another sequence"));
        }
        let e = entry(&r).ok_or_else(|| chain_err("a hash is not 32 bytes"))?;
        attestd_core::audit::verify_chain(std::slice::from_ref(&e), prev, prev_seq)
            .map_err(|b| chain_err(b.why))?;
        self.last = Some(r);
        Ok(())
    }

    fn meta(&self, key: &[u8]) -> Option<&[u8]> {
        self.meta
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// The closing checks: every tree there, the chain ends with the
    /// checkpoint of the entry before it, at the head the header and
    /// `meta` name.
    fn finish(self, h: &Header) -> Result<Verified, BackupError> {
        if let Some(t) = self.seen.iter().position(|s| !s) {
            return Err(damaged(format!("table {} is missing", TREE_NAMES[t])));
        }
        let Some(last) = &self.last else {
            return Err(damaged("its audit chain is empty"));
        };
        let fail = |why: &str| BackupError::Chain {
            seq: last.seq,
            why: why.to_owned(),
        };
        if last.seq != h.audit_seq || last.hash != h.audit_hash {
            return Err(fail("the chain does not end at the head its header names"));
        }
        if last.action != CHECKPOINT_ACTION {
            return Err(fail("the chain does not end with a checkpoint"));
        }
        let c = Checkpoint::parse(&last.details)
            .ok_or_else(|| fail("the closing checkpoint does not parse"))?;
        if c.seq.checked_add(1) != Some(last.seq) || c.hash.as_slice() != last.prev_hash.as_slice()
        {
            return Err(fail(
                "the closing checkpoint does not sign the entry before it",
            ));
        }
        if c.key_id != h.checkpoint_key {
            return Err(fail("the header names another checkpoint key"));
        }
        if let Some(k) = self.key {
            if k.key_id() != c.key_id {
                return Err(fail(&format!(
                    "the closing checkpoint is signed by {}, not by the key given ({})",
                    c.key_id,
                    k.key_id()
                )));
            }
            if !c.verify(k) {
                return Err(fail("the closing checkpoint's signature does not verify"));
            }
        }
        let expect = [
            (AUDIT_SEQ, last.seq.to_be_bytes().to_vec(), "audit/seq"),
            (AUDIT_HEAD, last.hash.clone(), "audit/head"),
            (
                AUDIT_LAST_CHECKPOINT,
                last.seq.to_be_bytes().to_vec(),
                "audit/last-checkpoint",
            ),
            (
                FORMAT_KEY,
                h.store_format.to_be_bytes().to_vec(),
                "format/version",
            ),
        ];
        for (k, want, name) in expect {
            if self.meta(k) != Some(want.as_slice()) {
                return Err(damaged(format!(
                    "meta {name} does not agree with the audit chain and the header"
                )));
            }
        }
        let floor = match self.meta(ORDER_FLOOR) {
            Some(v) => <[u8; 8]>::try_from(v)
                .map(u64::from_be_bytes)
                .map_err(|_| damaged("meta order/floor is not 8 bytes"))?,
            None => 0,
        };
        Ok(Verified {
            header: h.clone(),
            signature_checked: self.key.is_some(),
            order_floor: self.order_floor.max(floor),
        })
    }
}

impl<'k> Check<'k> {
    fn new(key: Option<&'k PublicKey>) -> Self {
        Check {
            key,
            table: None,
            seen: vec![false; TREE_NAMES.len()],
            last: None,
            meta: Vec::new(),
            order_floor: 0,
        }
    }
}

/// Verifies the backup at `path` (see the module documentation); with
/// `key`, the closing checkpoint must be signed by it.
pub fn verify(path: &Path, key: Option<&PublicKey>) -> Result<Verified, BackupError> {
    let mut check = Check::new(key);
    let h = read(path, Check::header, |i| check.item(&i))?;
    check.finish(&h)
}

/// Whether `dir` is missing or an empty directory.
fn usable(dir: &Path) -> Result<bool, BackupError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(BackupError::io(dir)(e)),
    }
}

/// Entries written to sled per batch.
const BATCH: usize = 10_000;

fn store_error(e: sled::Error) -> BackupError {
    BackupError::Store(e.to_string())
}

/// Applies the entries gathered for `tree`.
fn apply(tree: Option<&sled::Tree>, batch: &mut sled::Batch) -> Result<(), BackupError> {
    if let Some(t) = tree {
        t.apply_batch(std::mem::take(batch)).map_err(store_error)?;
    }
    Ok(())
}

/// Verifies the backup at `path` while writing its tables into a new sled
/// database at `dir`, marked incomplete until everything verified and is
/// on disk.
fn write_tables(path: &Path, dir: &Path, key: Option<&PublicKey>) -> Result<Verified, BackupError> {
    let db = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .open()
        .map_err(store_error)?;
    let meta = db.open_tree(TREE_NAMES[META]).map_err(store_error)?;
    meta.insert(RESTORE_INCOMPLETE, b"1".as_slice())
        .map_err(store_error)?;
    db.flush().map_err(store_error)?;
    let mut check = Check::new(key);
    let mut tree: Option<sled::Tree> = None;
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    let h = read(path, Check::header, |i| {
        check.item(&i)?;
        match i {
            Item::Table { name, .. } => {
                apply(tree.as_ref(), &mut batch)?;
                pending = 0;
                tree = Some(db.open_tree(name).map_err(store_error)?);
            }
            Item::Entry { key, value } => {
                batch.insert(key, value);
                pending += 1;
                if pending == BATCH {
                    apply(tree.as_ref(), &mut batch)?;
                    pending = 0;
                }
            }
        }
        Ok(())
    })?;
    apply(tree.as_ref(), &mut batch)?;
    let verified = check.finish(&h)?;
    // New list orders start above every copied one (see `format`).
    meta.insert(ORDER_FLOOR, &verified.order_floor.to_be_bytes())
        .map_err(store_error)?;
    db.flush().map_err(store_error)?;
    meta.remove(RESTORE_INCOMPLETE).map_err(store_error)?;
    db.flush().map_err(store_error)?;
    Ok(verified)
}

/// What [`restore`] did.
#[derive(Clone, Debug)]
pub struct Restored {
    /// What the verification found.
    pub verified: Verified,
    /// Where the database was written.
    pub dir: PathBuf,
}

/// Verifies the backup at `path` and writes it as a new database into
/// `dir`, which must be missing or empty. The database is verified as it is
/// written and marked incomplete until the end, so an interrupted restore
/// is never served (attestd refuses to open it); a restore that fails
/// removes what it wrote.
pub fn restore(path: &Path, dir: &Path, key: Option<&PublicKey>) -> Result<Restored, BackupError> {
    if !usable(dir)? {
        return Err(BackupError::NotEmpty(dir.to_owned()));
    }
    let existed = dir.exists();
    std::fs::create_dir_all(dir).map_err(BackupError::io(dir))?;
    match write_tables(path, dir, key) {
        Ok(verified) => Ok(Restored {
            verified,
            dir: dir.to_owned(),
        }),
        Err(e) => {
            // Only what this restore made: the directory was empty.
            if existed {
                if let Ok(entries) = std::fs::read_dir(dir) {
                    for entry in entries.flatten() {
                        let p = entry.path();
                        let _ = if p.is_dir() {
                            std::fs::remove_dir_all(&p)
                        } else {
                            std::fs::remove_file(&p)
                        };
                    }
                }
            } else {
                let _ = std::fs::remove_dir_all(dir);
            }
            Err(e)
        }
    }
}
