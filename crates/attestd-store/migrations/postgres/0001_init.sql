-- attestd's PostgreSQL schema, version 1.
--
-- Applied once by postgres::migrate, inside one transaction, under the
-- migration advisory lock. Never edit a released migration: add the next one.
--
-- Stored values (`body`) are the prost encodings of the entry types in
-- crates/attestd-store/src/model.rs, the same bytes the sled backend keeps;
-- the columns beside a body are only what queries filter or sort on, copied
-- from it by the writer in the same transaction.

-- Counters (stations, devices, records, evidence, baselines) and
-- generations (e.g. of sweeps), read by Counts and bumped by writers.
create table meta (
    key   text primary key,
    value bigint not null
);

-- Settings every replica must agree on, e.g. the id of the audit service key.
create table settings (
    key   text primary key,
    value text not null
);

-- The single head row. Every writer locks it (SELECT ... FOR UPDATE) to
-- assign audit and change sequence numbers in commit order, so the audit
-- chain and the change feed have no gaps and no reordering across replicas.
-- audit_hash starts at attestd_core::audit::GENESIS (32 zero bytes).
create table head (
    id              int primary key check (id = 1),
    audit_seq       bigint not null,
    audit_hash      bytea not null,
    last_checkpoint bigint not null default 0,
    change_seq      bigint not null
);
insert into head (id, audit_seq, audit_hash, last_checkpoint, change_seq)
values (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea, 0, 0);

-- Registered stations (StationEntry).
create table stations (
    station_id text primary key,
    body       bytea not null
);

-- Enrolled units (DeviceEntry), with the fields that fleet listings filter
-- and sort on. status is the API status code (0 before the first decision).
create table devices (
    serial        text primary key,
    status        smallint not null,
    tenant        text not null default '',
    model         text not null default '',
    -- When time alone next changes the verdict (seconds); 0 for never.
    next_check_at bigint not null default 0,
    body          bytea not null
);
create index devices_status on devices (status, serial);
create index devices_tenant on devices (tenant, serial);
create index devices_model on devices (model, serial);
-- Units whose verdict expires: the due-work scan reads only these.
create index devices_due on devices (next_check_at, serial) where next_check_at <> 0;

-- Enrolled device keys (key id `sha256:<hex>` of the SPKI): a key enrolls
-- one unit only.
create table device_keys (
    key_id text primary key,
    serial text not null
);

-- Which units rely on records of which station: the sweep after a station
-- is revoked walks these.
create table unit_stations (
    station_id text,
    serial     text,
    primary key (station_id, serial)
);

-- Which units last reported which firmware digest (hex): the sweep after a
-- digest is revoked walks these first.
create table unit_digests (
    digest text,
    serial text,
    primary key (digest, serial)
);

-- Stored station records (RecordEntry), envelopes exactly as received.
create table records (
    record_id text primary key,
    serial    text not null,
    body      bytea not null
);

-- Accepted evidence (EvidenceEntry), COSE_Sign1 bytes exactly as received.
create table evidence (
    evidence_id text primary key,
    body        bytea not null
);

-- Each unit's history in acceptance order: evidence ('e'), records ('r'),
-- re-appraisals ('a') and release decisions ('d'). ord comes from the
-- history_ord sequence: unique and increasing, without a hot row.
create table history (
    serial text not null,
    ord    bigint not null,
    kind   "char" not null,
    body   bytea not null,
    primary key (serial, ord)
);
create sequence history_ord;

-- Published baselines (BaselineEntry), every version kept.
create table baselines (
    model   text,
    version bigint,
    body    bytea not null,
    primary key (model, version)
);

-- The active baseline version of each model.
create table baseline_active (
    model   text primary key,
    version bigint not null
);

-- Baselines published with a future effective_at, in activation order.
create table baseline_pending (
    effective_at bigint,
    model        text,
    version      bigint,
    primary key (effective_at, model, version)
);

-- Units whose verdict must be decided again (re-appraisal work queue).
create table dirty (
    serial text primary key
);

-- Open re-appraisal sweeps (SweepEntry) by kind (1 model, 2 station,
-- 3 firmware digest) and key, resumable from their cursor.
create table sweeps (
    kind int,
    key  text,
    body bytea not null,
    primary key (kind, key)
);

-- Fleet summary counts, kept by writers: units per (group, key, tenant,
-- status), so a summary is read without walking the devices.
create table summary (
    grp    "char",
    key    text,
    tenant text,
    status smallint,
    n      bigint not null,
    primary key (grp, key, tenant, status)
);

-- The change feed (ChangeEntry) by sequence, assigned under the head lock.
create table changes (
    seq  bigint primary key,
    body bytea not null
);

-- The audit chain (AuditRecord) by sequence, assigned under the head lock,
-- in the same transaction as the change it records.
create table audit (
    seq       bigint primary key,
    at_ms     bigint not null,
    principal text not null,
    action    text not null,
    target    text not null,
    body      bytea not null
);

-- Evidence nonces already used, until they expire (replay protection
-- shared by every replica).
create table nonces_used (
    nonce      bytea primary key,
    expires_at bigint not null
);
create index nonces_used_expires on nonces_used (expires_at);
