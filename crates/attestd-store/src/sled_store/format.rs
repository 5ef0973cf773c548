//! The on-disk format of a sled database, recorded in the database itself,
//! so that a binary never serves (or changes) a layout it does not know.
//!
//! `meta`'s `format/version` (u64, big-endian) names the layout of the
//! trees (ARCHITECTURE.md, "Storage layout (sled)"). A database this
//! attestd creates records [`STORE_FORMAT`] at once. A database made before
//! formats were recorded has no such key: it is in format 1, the layout
//! this attestd writes, and opening it records 1 (that is the whole
//! migration: nothing else changes). A database recorded in a newer format
//! is refused before anything is written to it. An older format would be
//! migrated here, one step at a time, when a format 2 exists; there is none
//! older than 1.
//!
//! A restored database also carries `order/floor` ([`ORDER_FLOOR`]): the
//! per-unit list orders come from sled's id generator, which a new database
//! starts again from zero, so the restore stores the first order above
//! every order it copied and the engine adds it to each new one. Absent
//! means 0 (any database that was not restored). While a restore writes,
//! `restore/incomplete` ([`RESTORE_INCOMPLETE`]) is set, so that a
//! restore cut short is refused rather than served.

use std::path::Path;

use crate::{Result, StoreError};

/// The layout this attestd reads and writes.
pub const STORE_FORMAT: u64 = 1;

/// The oldest layout this attestd opens (older ones would be migrated).
pub const OLDEST_STORE_FORMAT: u64 = 1;

/// Key in `meta`: the database's format (u64 BE).
pub(crate) const FORMAT_KEY: &[u8] = b"format/version";

/// Key in `meta`: added to every new per-unit list order (u64 BE).
pub(crate) const ORDER_FLOOR: &[u8] = b"order/floor";

/// Key in `meta` while a restore writes the database; removed at its end.
pub(crate) const RESTORE_INCOMPLETE: &[u8] = b"restore/incomplete";

/// What [`check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// No attestd trees yet: a new database.
    New,
    /// attestd's trees without a recorded format: format 1, from before
    /// formats were recorded.
    Unrecorded,
    /// A recorded format this attestd can open.
    At(u64),
}

/// Reads the format recorded in `db` (opened from `dir`) and refuses a
/// database this binary must not open. Writes nothing: a refused database
/// is left exactly as it was.
pub(super) fn check(db: &sled::Db, dir: &Path) -> Result<Found> {
    let names = db.tree_names();
    let has = |n: &str| names.iter().any(|t| t.as_ref() == n.as_bytes());
    if !has("meta") {
        // sled's default tree is always there; attestd never writes to it.
        let others = names
            .iter()
            .filter(|t| t.as_ref() != b"__sled__default")
            .count();
        if others == 0 && db.is_empty() {
            return Ok(Found::New);
        }
        return Err(StoreError::Incompatible(format!(
            "{} holds a sled database that is not attestd's (it has no `meta` tree); \
             nothing was changed: point data_dir at attestd's own directory",
            dir.display()
        )));
    }
    let meta = db.open_tree("meta").map_err(|e| {
        StoreError::Unavailable(format!("opening the meta tree in {}: {e}", dir.display()))
    })?;
    let stored = meta.get(FORMAT_KEY).map_err(|e| {
        StoreError::Unavailable(format!(
            "reading the store format in {}: {e}",
            dir.display()
        ))
    })?;
    let interrupted = meta.get(RESTORE_INCOMPLETE).map_err(|e| {
        StoreError::Unavailable(format!("reading the meta tree in {}: {e}", dir.display()))
    })?;
    if interrupted.is_some() {
        return Err(StoreError::Incompatible(format!(
            "the database in {} is an interrupted restore (attestd restore did not finish); \
             nothing was changed: remove the directory and run attestd restore again",
            dir.display()
        )));
    }
    let Some(v) = stored else {
        return Ok(Found::Unrecorded);
    };
    let version = <[u8; 8]>::try_from(v.as_ref())
        .map(u64::from_be_bytes)
        .map_err(|_| {
            StoreError::Incompatible(format!(
                "the store format recorded in {} is damaged ({} bytes, expected 8); \
                 nothing was changed: restore a backup",
                dir.display(),
                v.len()
            ))
        })?;
    if version > STORE_FORMAT {
        return Err(StoreError::Incompatible(format!(
            "the database in {} is in store format {version}, written by a newer attestd; \
             this attestd reads store formats {OLDEST_STORE_FORMAT} to {STORE_FORMAT}. \
             Nothing was changed: run an attestd that reads format {version} (the version \
             that wrote it, or later)",
            dir.display()
        )));
    }
    if version < OLDEST_STORE_FORMAT {
        return Err(StoreError::Incompatible(format!(
            "the database in {} records store format {version}, which no attestd ever \
             wrote; nothing was changed: restore a backup",
            dir.display()
        )));
    }
    Ok(Found::At(version))
}

/// A u64 stored big-endian in `meta`, 0 when absent.
pub(super) fn read_u64(meta: &sled::Tree, key: &[u8], what: &str) -> Result<u64> {
    match meta
        .get(key)
        .map_err(|e| StoreError::Unavailable(format!("reading {what}: {e}")))?
    {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Unavailable(format!("stored {what} does not decode"))),
    }
}
