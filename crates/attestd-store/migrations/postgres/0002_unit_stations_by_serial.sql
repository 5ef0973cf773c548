-- attestd's PostgreSQL schema, version 2.
--
-- Evidence reads a unit together with the stations behind it in one
-- statement (`unit_context`): it finds them in `unit_stations` by serial,
-- which the primary key (station_id, serial) cannot serve.
create index unit_stations_by_serial on unit_stations (serial, station_id);
