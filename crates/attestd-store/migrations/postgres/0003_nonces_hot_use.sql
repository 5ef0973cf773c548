-- attestd's PostgreSQL schema, version 3.
--
-- Using a nonce sets `used`. With `used` in the predicate of an index, that
-- update could not be a heap-only (HOT) update: each use added an entry to
-- all three indices of the table, on a table written on every boot. The
-- index by serial now covers every nonce (eviction filters on `used`), and
-- the table keeps room in its pages for the updated row versions.
drop index nonces_by_serial;
create index nonces_by_serial on nonces (serial, issued_at);
alter table nonces set (fillfactor = 70);
