-- attestd's PostgreSQL schema, version 1.
--
-- Applied once by postgres::migrate, inside one transaction, under the
-- migration advisory lock. Never edit a released migration: add the next one.
--
-- Stored values (`body`) are the prost encodings of the entry types in
-- crates/attestd-store/src/model.rs, the same bytes the sled backend keeps;
-- the columns beside a body are only what queries filter or sort on, copied
-- from it by the writer in the same transaction.
--
-- Every text column that is a key or an order is `collate "C"`: listings
-- and page tokens compare bytes, as the sled backend does, whatever the
-- database's default collation.
--
-- Locking: every transaction that writes domain state (everything but
-- nonces, leases, settings, changes trimming and sweep cursors) first
-- locks the head row, then the rows it reads to decide. So writers on any
-- number of replicas queue on one row, in one order, and cannot deadlock.

-- Settings every replica must agree on, e.g. the id of the audit service key.
create table settings (
    key   text collate "C" primary key,
    value text not null
);

-- Leases on background jobs that must run on one replica at a time.
-- until_ms: when the lease lapses unless its holder renews it.
create table leases (
    job      text collate "C" primary key,
    holder   text not null,
    until_ms bigint not null
);

-- The single head row. Every writer locks it (SELECT ... FOR UPDATE) first
-- and assigns audit and change sequence numbers under it, in commit order,
-- so the audit chain and the change feed have no gaps and no reordering
-- across replicas. The totals and the sweep generation live here too: they
-- change in the same transactions, under the same lock, at no extra cost.
-- audit_hash starts at attestd_core::audit::GENESIS (32 zero bytes).
create table head (
    id               int primary key check (id = 1),
    audit_seq        bigint not null,
    audit_hash       bytea not null,
    -- Sequence of the newest `audit.checkpoint` entry; 0 before the first.
    last_checkpoint  bigint not null default 0,
    change_seq       bigint not null,
    stations         bigint not null default 0,
    devices          bigint not null default 0,
    records          bigint not null default 0,
    evidence         bigint not null default 0,
    baselines        bigint not null default 0,
    -- Tells one opening of a sweep from the next.
    sweep_generation bigint not null default 0
);
insert into head (id, audit_seq, audit_hash, last_checkpoint, change_seq)
values (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea, 0, 0);

-- Registered stations (StationEntry).
create table stations (
    station_id text collate "C" primary key,
    body       bytea not null
);

-- Enrolled units (DeviceEntry), with the fields that fleet listings filter
-- and sort on. status is the stored status code (codes.rs; 0 before the
-- first decision).
create table devices (
    serial        text collate "C" primary key,
    status        int not null,
    tenant        text collate "C" not null default '',
    model         text collate "C" not null default '',
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
    key_id text collate "C" primary key,
    serial text collate "C" not null
);

-- Which units rely on records of which station: the sweep after a station
-- is revoked walks these.
create table unit_stations (
    station_id text collate "C",
    serial     text collate "C",
    primary key (station_id, serial)
);

-- Which units last reported which firmware digest (hex): the sweep after a
-- digest is revoked walks these first.
create table unit_digests (
    digest text collate "C",
    serial text collate "C",
    primary key (digest, serial)
);

-- Each unit's history in acceptance order: evidence ('e') and records
-- ('r') by id (ref_id), re-appraisals ('a') and release decisions ('d') by
-- value (body). ord comes from the history_ord sequence: unique, and
-- increasing in commit order because it is drawn under the head lock.
create table history (
    serial text collate "C" not null,
    ord    bigint not null,
    kind   "char" not null,
    ref_id text collate "C",
    body   bytea,
    primary key (serial, ord)
);
create sequence history_ord;

-- Stored station records (RecordEntry), envelopes exactly as received;
-- ord is the record's history position (a unit's records list in it).
create table records (
    record_id text collate "C" primary key,
    serial    text collate "C" not null,
    ord       bigint not null,
    body      bytea not null
);
create index records_serial on records (serial, ord);

-- Accepted evidence (EvidenceEntry): body without the COSE_Sign1 bytes,
-- which are kept exactly as received in raw (a history listing reads the
-- body alone).
create table evidence (
    evidence_id text collate "C" primary key,
    serial      text collate "C" not null,
    body        bytea not null,
    raw         bytea not null
);

-- Published baselines (BaselineEntry), every version kept; the latest
-- published version of a model is max(version).
create table baselines (
    model   text collate "C",
    version bigint,
    body    bytea not null,
    primary key (model, version)
);

-- The active baseline version of each model.
create table baseline_active (
    model   text collate "C" primary key,
    version bigint not null
);

-- Baselines published with a future effective_at, in activation order.
create table baseline_pending (
    effective_at bigint,
    model        text collate "C",
    version      bigint,
    primary key (effective_at, model, version)
);

-- Units whose verdict must be decided again (re-appraisal work queue).
create table dirty (
    serial text collate "C" primary key
);

-- Open re-appraisal sweeps (SweepEntry) by kind (1 model, 2 station,
-- 3 firmware digest) and key, resumable from their cursor (the last serial
-- done; '' before the first).
create table sweeps (
    kind       int,
    key        text collate "C",
    cursor     text collate "C" not null,
    reason     text not null,
    generation bigint not null,
    primary key (kind, key)
);

-- Fleet summary counts, kept by writers: units per (group, key, tenant,
-- status), so a summary is read without walking the devices. grp: 0 all,
-- 1 model, 2 site, 3 firmware. Rows reaching 0 are deleted.
create table summary (
    grp    smallint,
    key    text collate "C",
    tenant text collate "C",
    status int,
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

-- Challenge nonces, shared by every replica: issued to one serial,
-- used once (`used`), expiring (expires_at, ms). A serial's unused nonces
-- are bounded (the oldest evicted at issue); rows expired longer than the
-- grace are deleted now and then.
create table nonces (
    nonce      bytea primary key,
    serial     text collate "C" not null,
    issued_at  bigint not null,
    expires_at bigint not null,
    used       boolean not null default false
);
create index nonces_by_serial on nonces (serial, issued_at) where not used;
create index nonces_expires on nonces (expires_at);
