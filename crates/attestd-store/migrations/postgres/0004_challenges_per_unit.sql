-- attestd's PostgreSQL schema, version 4.
--
-- Challenge nonces move from one row per nonce to one row per unit. A row
-- per nonce cost every challenge an insert into the table and its three
-- indices (the primary key a random 32-byte value, so each insert touched
-- another index page), a look for the unit's oldest outstanding nonces
-- to evict, and later a delete by the expiry sweep: the costliest
-- statement of a boot. A unit's row holds its few outstanding nonces and
-- the ones it used lately, in arrays bounded by the per-unit limit, so a
-- challenge and a use each rewrite one narrow row in place (a heap-only
-- update: the one index, on the serial, does not change) and nothing
-- needs sweeping: there is at most one row per unit challenged.
--
-- Outstanding nonces are dropped here: a unit that had asked for one gets
-- NONCE_UNKNOWN and asks again, as after a restart of a single node.
drop table nonces;

-- open / open_exp: the unit's unused nonces, oldest first, and when each
-- expires (ms); at most the per-unit limit. used / used_exp: nonces used
-- lately (to answer NONCE_REUSED rather than NONCE_UNKNOWN), oldest
-- first, bounded the same way.
create table challenges (
    serial   text collate "C" primary key,
    open     bytea[] not null,
    open_exp bigint[] not null,
    used     bytea[] not null default '{}',
    used_exp bigint[] not null default '{}'
) with (fillfactor = 50);
