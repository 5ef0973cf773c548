//! A PostgreSQL server of the test's own, to stop and start under load
//! (never the shared test server, whose other databases belong to other
//! tests): `initdb` into a temporary directory, trust authentication,
//! listening on 127.0.0.1 on a free port, `fsync=on` so a crash keeps what
//! was committed. PostgreSQL refuses to run as root, so when the tests run
//! as root its commands run as the `postgres` user (`runuser`).
//!
//! Dropping the guard stops the server (`-m immediate`) and removes its
//! directory, also when the test panicked.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where the PostgreSQL 15 programs may be, in order.
const BIN_DIRS: &[&str] = &["/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin"];

/// A private PostgreSQL server, stopped and removed when dropped.
pub(crate) struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// Run the programs as the `postgres` user (the tests run as root).
    as_postgres: bool,
    running: bool,
}

impl PrivatePg {
    /// Creates a cluster and starts it; panics, saying why, if it cannot.
    pub(crate) fn start() -> PrivatePg {
        let bin = BIN_DIRS
            .iter()
            .map(Path::new)
            .find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
            .unwrap_or_else(|| panic!("no PostgreSQL 15 initdb and pg_ctl in any of {BIN_DIRS:?}"))
            .to_owned();
        let dir = tempfile::Builder::new()
            .prefix("attestd-pg-")
            .tempdir()
            .expect("tempdir");
        let as_postgres = running_as_root();
        if as_postgres {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()));
        }
        let mut pg = PrivatePg {
            dir,
            bin,
            port: 0,
            as_postgres,
            running: false,
        };
        pg.ctl("initdb", |c| {
            c.arg("-D").arg(pg.data()).args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ]);
        });
        // A port that was free a moment ago may be taken by the time the
        // server binds it: try a few.
        for _ in 0..5 {
            pg.port = free_port();
            let conf = format!(
                "\n# attestd test server\nlisten_addresses = '127.0.0.1'\nport = {}\n\
                 unix_socket_directories = '{}'\nfsync = on\nsynchronous_commit = on\n\
                 max_connections = 40\nshared_buffers = 16MB\n",
                pg.port,
                pg.dir.path().display()
            );
            append(&pg.data().join("postgresql.conf"), &conf);
            if pg.try_start() {
                return pg;
            }
        }
        panic!("the private PostgreSQL did not start; log:\n{}", pg.log());
    }

    /// The URL of its `postgres` database.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl stop -m immediate`: the server and its backends end at once,
    /// as in a crash (what was committed is in the WAL, fsynced).
    pub(crate) fn stop_immediate(&mut self) {
        self.running = false;
        let data = self.data();
        self.ctl("pg_ctl", |c| {
            c.arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
        });
    }

    /// `pg_ctl start` on the same data directory and port (crash recovery
    /// first); returns once it accepts connections.
    pub(crate) fn start_again(&mut self) {
        assert!(
            self.try_start(),
            "the private PostgreSQL did not start again; log:\n{}",
            self.log()
        );
    }

    /// The server's log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn try_start(&mut self) -> bool {
        let (data, log) = (self.data(), self.dir.path().join("postgres.log"));
        let ok = self
            .command("pg_ctl", |c| {
                c.arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(&log)
                    .args(["-w", "-t", "30", "start"]);
            })
            .status()
            .is_ok_and(|s| s.success());
        self.running = ok;
        ok
    }

    /// One of the server's programs, as the user that may run it.
    fn command(&self, program: &str, args: impl FnOnce(&mut Command)) -> Command {
        let exe = self.bin.join(program);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        args(&mut c);
        // The postgres user may not enter the test's working directory.
        c.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        c
    }

    fn ctl(&self, program: &str, args: impl FnOnce(&mut Command)) {
        run(&mut self.command(program, args));
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        if self.running {
            // Not a panic: this may run while a failed test unwinds.
            let data = self.data();
            let stopped = self
                .command("pg_ctl", |c| {
                    c.arg("-D")
                        .arg(&data)
                        .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
                })
                .status();
            if !stopped.as_ref().is_ok_and(|s| s.success()) {
                eprintln!("the private PostgreSQL in {data:?} was not stopped: {stopped:?}");
            }
        }
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[track_caller]
fn run(c: &mut Command) {
    let out = c
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
