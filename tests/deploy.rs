//! The deployment files checked against the binary they deploy: the Helm
//! chart (rendered by `deploy/helm.rs`, see there why and how), the
//! Dockerfile and the systemd unit must name only flags the built `attestd`
//! has, agree with each other on ports, paths, user and stop budget, and
//! give the binary a configuration it accepts: the chart's rendered
//! configuration is started for real (paths mapped to temporary
//! directories standing in for its volumes) and the chart's own probe
//! command must find it SERVING.
//!
//! The systemd tests need `systemd-analyze` (Debian package `systemd`);
//! without it they fail, unless `ATTESTD_SKIP_SYSTEMD_VERIFY=1`.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "deploy/binary.rs"]
mod binary;
#[path = "deploy/chart.rs"]
mod chart;
mod common;
#[path = "deploy/dockerfile.rs"]
mod dockerfile;
#[path = "deploy/gotmpl.rs"]
mod gotmpl;
#[path = "deploy/helm.rs"]
mod helm;
#[path = "deploy/pod.rs"]
mod pod;
#[path = "deploy/yaml.rs"]
mod yaml;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use binary::{binary, INSTALLED};
use chart::{chart, problems, render, Expect};
use dockerfile::{exec_form, options, Dockerfile, Ignore};
use helm::Release;
use pod::{full_values, release_keys, run_pod, secrets, Secrets};
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

const RELEASE: Release = Release {
    name: "attestd",
    namespace: "factory",
};

// ------------------------------------------------------------ the image

/// What the Dockerfile promises the chart and the unit.
struct Image {
    uid: i64,
    gid: i64,
    /// The configuration file CMD names.
    config: String,
    /// The VOLUME: where data lives.
    volume: String,
    /// EXPOSEd ports: gRPC, then metrics.
    ports: Vec<u16>,
}

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let df = Dockerfile::load(&repo().join("Dockerfile"));
        let rt = df.runtime();
        let user = &Dockerfile::one(rt, "USER").args;
        let (uid, gid) = user
            .split_once(':')
            .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
            .unwrap_or_else(|| panic!("USER {user}: want numeric UID:GID"));
        let mut argv = exec_form(&Dockerfile::one(rt, "ENTRYPOINT").args);
        argv.extend(exec_form(&Dockerfile::one(rt, "CMD").args));
        let inv = binary()
            .invocation(&argv)
            .unwrap_or_else(|e| panic!("Dockerfile ENTRYPOINT + CMD: {e}"));
        assert_eq!(inv.command, "serve");
        let volumes = exec_form(&Dockerfile::one(rt, "VOLUME").args);
        assert_eq!(volumes.len(), 1, "one VOLUME: {volumes:?}");
        Image {
            uid,
            gid,
            config: inv
                .flags
                .get("config")
                .cloned()
                .expect("CMD names --config"),
            volume: volumes[0].clone(),
            ports: Dockerfile::one(rt, "EXPOSE")
                .args
                .split_whitespace()
                .map(|p| p.parse().expect("EXPOSE numbers"))
                .collect(),
        }
    })
}

/// The stop budget of the systemd unit, in seconds.
fn unit_stop_budget() -> i64 {
    let unit = read("deploy/systemd/attestd.service");
    let v = unit_values(&unit, "TimeoutStopSec");
    let [v] = &v[..] else {
        panic!("one TimeoutStopSec, got {v:?}")
    };
    v.strip_suffix('s')
        .unwrap_or(v)
        .parse()
        .unwrap_or_else(|_| panic!("TimeoutStopSec={v}: want seconds"))
}

fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

/// Ports of deploy/attestd.example.toml: (listen, metrics_listen).
fn example_ports() -> (u16, u16, String) {
    let t: toml::Table = read("deploy/attestd.example.toml").parse().unwrap();
    let port = |k: &str| {
        t[k].as_str()
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("{k} in the example"))
    };
    (
        port("listen"),
        port("metrics_listen"),
        t["data_dir"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn deploy_dockerfile_agrees_with_the_binary_the_chart_and_the_unit() {
    let text = read("Dockerfile");
    let df = Dockerfile::parse(&text).unwrap();
    let bin = binary();
    let img = image();
    assert!(df.stages.len() >= 2, "a multi-stage build");

    // Build stage: the official Rust image, the toolchain at least the
    // workspace's rust-version, the lock file honoured.
    let build = &df.stages[0];
    let from = &build[0].args;
    assert!(
        from.starts_with("docker.io/library/rust:") && from.ends_with(" AS build"),
        "{from}"
    );
    let toolchain = Dockerfile::arg_default(&text, "RUST_VERSION").expect("ARG RUST_VERSION=");
    let cargo: toml::Table = read("Cargo.toml").parse().unwrap();
    let msrv = cargo["workspace"]["package"]["rust-version"]
        .as_str()
        .unwrap();
    let v = |s: &str| -> Vec<u32> { s.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(
        v(&toolchain) >= v(msrv),
        "RUST_VERSION {toolchain} < rust-version {msrv}"
    );
    assert!(
        Dockerfile::all(build, "RUN").any(|r| r.args.contains("cargo build --release --locked")),
        "the build stage runs cargo build --release --locked"
    );

    // The context: what the build stage copies is sent, build output and
    // data are not, and every workspace member is inside what is copied.
    let ignore = Ignore::parse(&read(".dockerignore")).unwrap();
    let mut copied = Vec::new();
    for c in Dockerfile::all(build, "COPY") {
        let (opts, rest) = options(&c.args);
        assert!(
            opts.is_empty(),
            "build-stage COPY from the context only: {c:?}"
        );
        let mut words: Vec<&str> = rest.split_whitespace().collect();
        words.pop(); // the destination
        for src in words {
            assert!(
                repo().join(src).exists(),
                "COPY {src}: not in the repository"
            );
            assert!(ignore.sends(src), "COPY {src}: .dockerignore keeps it out");
            copied.push(src.to_owned());
        }
    }
    let members = cargo["workspace"]["members"].as_array().unwrap();
    for m in members.iter().map(|m| m.as_str().unwrap()) {
        assert!(
            copied
                .iter()
                .any(|c| m == c || m.starts_with(&format!("{c}/"))),
            "workspace member {m} is not copied into the build"
        );
    }
    for never in [
        "target",
        "crates/attestd-core/target",
        ".git",
        "attestd-data",
    ] {
        assert!(!ignore.sends(never), "{never} would be sent to the builder");
    }

    // Runtime stage: a non-root numeric user owning the volume, the binary
    // where ENTRYPOINT runs it, the ports of the example configuration.
    let rt = df.runtime();
    assert!(
        rt[0].args.starts_with("gcr.io/distroless/cc-debian12"),
        "{}",
        rt[0].args
    );
    assert!(img.uid > 0 && img.gid > 0, "not root");
    let copies: Vec<_> = Dockerfile::all(rt, "COPY")
        .map(|c| options(&c.args))
        .collect();
    assert!(
        copies
            .iter()
            .any(|(o, rest)| o.contains(&("from".into(), "build".into()))
                && rest.ends_with(&format!(" {INSTALLED}"))),
        "the binary is copied to {INSTALLED}: {copies:?}"
    );
    let parent = Path::new(&img.volume)
        .parent()
        .unwrap()
        .display()
        .to_string();
    assert!(
        copies.iter().any(|(o, rest)| o
            .contains(&("chown".into(), format!("{}:{}", img.uid, img.gid)))
            && rest.trim_end_matches('/').ends_with(&parent)),
        "the data directory is made owned by the image's user: {copies:?}"
    );
    let (listen, metrics, data_dir) = example_ports();
    assert_eq!(
        img.ports,
        vec![listen, metrics],
        "EXPOSE = listen, metrics_listen of the example"
    );
    assert_eq!(img.volume, data_dir, "VOLUME = data_dir of the example");
    assert_eq!(img.config, "/etc/attestd/attestd.toml");
    assert_eq!(Dockerfile::one(rt, "STOPSIGNAL").args, "SIGTERM");

    // HEALTHCHECK: attestd health, on the exposed gRPC port, with a timeout
    // the probe's own fits in.
    let hc = &Dockerfile::one(rt, "HEALTHCHECK").args;
    let (opts, rest) = options(hc);
    let argv = exec_form(rest.strip_prefix("CMD ").expect("HEALTHCHECK CMD [...]"));
    let inv = bin.invocation(&argv).unwrap();
    assert_eq!(inv.command, "health");
    let addr = inv
        .flags
        .get("addr")
        .cloned()
        .unwrap_or_else(|| bin.default_of("health", "addr"));
    assert!(
        addr.ends_with(&format!(":{listen}")),
        "probes {addr}, listens on {listen}"
    );
    let probe_timeout: u64 = inv
        .flags
        .get("timeout-secs")
        .cloned()
        .unwrap_or_else(|| bin.default_of("health", "timeout-secs"))
        .parse()
        .unwrap();
    let hc_timeout: u64 = opts
        .iter()
        .find(|(k, _)| k == "timeout")
        .and_then(|(_, v)| v.strip_suffix('s')?.parse().ok())
        .expect("HEALTHCHECK --timeout=Ns");
    assert!(
        hc_timeout > probe_timeout,
        "HEALTHCHECK --timeout {hc_timeout}s <= probe's {probe_timeout}s"
    );

    // The documented stop budget is the unit's.
    assert!(
        text.contains(&format!("docker stop --time {}", unit_stop_budget())),
        "the Dockerfile documents the stop budget of the unit"
    );
}

// ------------------------------------------------------------ systemd

/// Runs a systemd tool, or says why the test cannot.
fn systemd_tool(name: &str) -> Option<PathBuf> {
    let path = Path::new("/usr/bin").join(name);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("ATTESTD_SKIP_SYSTEMD_VERIFY").as_deref() == Ok("1") {
        eprintln!("{name} missing; skipped (ATTESTD_SKIP_SYSTEMD_VERIFY=1)");
        return None;
    }
    panic!(
        "{} is missing: install Debian's `systemd` package (apt-get install systemd), \
         or set ATTESTD_SKIP_SYSTEMD_VERIFY=1 to skip this check",
        path.display()
    );
}

#[test]
fn systemd_unit_verifies_and_runs_only_flags_the_binary_has() {
    let unit = read("deploy/systemd/attestd.service");
    // ExecStart: the installed binary, flags it has, the image's config path.
    let exec = unit_values(&unit, "ExecStart");
    let [exec] = &exec[..] else {
        panic!("one ExecStart: {exec:?}")
    };
    let argv: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
    let inv = binary().invocation(&argv).unwrap();
    assert_eq!(inv.command, "serve");
    assert_eq!(inv.flags.get("config"), Some(&image().config));
    // The data directory systemd makes is the image's volume and the
    // examples' data_dir.
    let state = unit_values(&unit, "StateDirectory");
    assert_eq!(
        state
            .iter()
            .map(|s| format!("/var/lib/{s}"))
            .collect::<Vec<_>>(),
        vec![image().volume.clone()]
    );
    for (key, want) in [
        ("StateDirectoryMode", "0700"),
        ("UMask", "0077"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("Restart", "on-failure"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(unit_values(&unit, key), vec![want.to_owned()], "{key}");
    }
    let types = unit_values(&unit, "Type");
    assert!(
        types == ["exec"] || types == ["simple"],
        "attestd does not speak sd_notify: Type=exec or simple, not {types:?}"
    );
    assert!(unit_values(&unit, "SystemCallFilter").contains(&"@system-service".to_owned()));
    assert_eq!(
        unit_values(&unit, "RestrictAddressFamilies"),
        vec!["AF_INET AF_INET6 AF_UNIX".to_owned()]
    );

    let Some(analyze) = systemd_tool("systemd-analyze") else {
        return;
    };
    // verify wants ExecStart's binary to exist: point it at the build.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("attestd.service");
    std::fs::write(
        &copy,
        unit.replace(INSTALLED, env!("CARGO_BIN_EXE_attestd")),
    )
    .unwrap();
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    // Hardening must not regress: exposure 2.0 ("OK") at most.
    let out = Command::new(&analyze)
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze security: {}",
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains('✗') || l.contains("Overall"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // And the unit really is checked: a typo fails verify.
    std::fs::write(
        &copy,
        unit.replace("ProtectSystem=strict", "ProtectSystem=strickt")
            .replace(INSTALLED, env!("CARGO_BIN_EXE_attestd")),
    )
    .unwrap();
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).trim().is_empty(),
        "systemd-analyze verify noticed nothing wrong in a broken unit"
    );
}

#[test]
fn systemd_sysusers_makes_the_user_the_unit_runs_as() {
    let unit = read("deploy/systemd/attestd.service");
    let Some(sysusers) = systemd_tool("systemd-sysusers") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let out = Command::new(sysusers)
        .arg(format!("--root={}", root.path().display()))
        .arg(repo().join("deploy/systemd/attestd.sysusers"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user = &unit_values(&unit, "User")[0];
    let entry = passwd
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .unwrap_or_else(|| panic!("no user {user} in {passwd}"));
    assert!(
        entry.ends_with(":/usr/sbin/nologin") || entry.ends_with(":/sbin/nologin"),
        "{entry}"
    );
    assert_eq!(unit_values(&unit, "Group"), vec![user.clone()]);
}

#[test]
fn helm_chart_defaults_run_one_sled_pod_the_binary_accepts() {
    let r = render("defaults", "").unwrap();
    let p = problems(
        &r,
        &Expect {
            postgres: false,
            replicas: 1,
        },
    );
    assert!(p.is_empty(), "{p:#?}");
    // The image defaults to the chart's appVersion, which is the version of
    // the binary this repository builds.
    let cargo: toml::Table = read("Cargo.toml").parse().unwrap();
    let version = cargo["workspace"]["package"]["version"].as_str().unwrap();
    assert_eq!(chart().app_version, version, "Chart.yaml appVersion");
    let c = &r.workload()["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], format!("attestd:{version}"));
    // The defaults use the image's and the example configuration's ports.
    let (listen, metrics, _) = example_ports();
    let svc_ports: Vec<i64> = r.one("Service")["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(svc_ports, vec![listen as i64, metrics as i64]);
    assert_eq!(image().ports, vec![listen, metrics]);
    run_pod(&r, &secrets(None)).unwrap();
}

#[test]
fn helm_chart_with_every_value_in_use_runs_and_probes_itself() {
    let values = full_values(&release_keys(3));
    // sled ignores a replica count: one pod, whatever the values say.
    let r = render(
        "sled-full",
        &format!("{values}\nstore:\n  postgres:\n    replicas: 5\n"),
    )
    .unwrap();
    let p = problems(
        &r,
        &Expect {
            postgres: false,
            replicas: 1,
        },
    );
    assert!(p.is_empty(), "{p:#?}");
    let (_, text) = r.config().unwrap();
    let cfg: toml::Table = text.parse().unwrap();
    assert_eq!(
        cfg["limits"]["rate_per_peer_per_min"].as_integer(),
        Some(1_000_000)
    );
    assert_eq!(cfg["principals"].as_array().unwrap().len(), 3);
    assert_eq!(cfg["release"]["keys"].as_array().unwrap().len(), 3);
    assert_eq!(
        cfg["tls"]["client_ca_files"].as_array().unwrap().len(),
        1,
        "the client CA Secret is used"
    );
    let pod = &r.workload()["spec"]["template"]["spec"];
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/arch"], "amd64");
    let probe = &pod["containers"][0]["readinessProbe"]["exec"]["command"];
    assert!(
        probe
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "attestd.factory.example"),
        "tls.serverName reaches the probes: {probe}"
    );
    run_pod(&r, &secrets(None)).unwrap();
}

#[test]
fn helm_chart_on_postgres_runs_replicas_the_binary_accepts() {
    let values = format!(
        "{}\nstore:\n  backend: postgres\n  postgres:\n    replicas: 3\n    urlSecret:\n      name: attestd-db\n",
        full_values(&release_keys(2))
    );
    let r = render("postgres", &values).unwrap();
    let p = problems(
        &r,
        &Expect {
            postgres: true,
            replicas: 3,
        },
    );
    assert!(p.is_empty(), "{p:#?}");
    assert!(r.of_kind("StatefulSet").is_empty());
    assert_eq!(r.one("PodDisruptionBudget")["spec"]["maxUnavailable"], 1);
    let (_, text) = r.config().unwrap();
    assert!(!text.contains("postgres://"), "the URL stays in its Secret");
    let db = attestd_store::postgres::testdb::TestDb::create();
    run_pod(&r, &secrets(Some(&db.url))).unwrap();

    // With the database's CA: mounted where ca_file says (attestd would then
    // insist on TLS to the database, which the test server does not speak,
    // so this one is checked, not started).
    let r = render(
        "postgres-db-ca",
        &format!("{values}    caSecret:\n      name: attestd-db-ca\n"),
    )
    .unwrap();
    let p = problems(
        &r,
        &Expect {
            postgres: true,
            replicas: 3,
        },
    );
    assert!(p.is_empty(), "{p:#?}");
    let (_, text) = r.config().unwrap();
    let cfg: toml::Table = text.parse().unwrap();
    assert_eq!(
        cfg["store"]["ca_file"].as_str(),
        Some("/etc/attestd/db-ca/ca.crt")
    );
}

#[test]
fn helm_chart_plaintext_needs_saying_so_and_then_probes_plaintext() {
    let err = render("refused", "tls:\n  enabled: false\n")
        .err()
        .expect("refused");
    assert!(err.contains("insecurePlaintext"), "{err}");
    let r = render(
        "plaintext",
        "tls:\n  enabled: false\ninsecurePlaintext: true\nmetrics:\n  enabled: false\n",
    )
    .unwrap();
    let p = problems(
        &r,
        &Expect {
            postgres: false,
            replicas: 1,
        },
    );
    assert!(p.is_empty(), "{p:#?}");
    let svc = r.one("Service");
    assert_eq!(
        svc["spec"]["ports"].as_array().unwrap().len(),
        1,
        "no metrics port"
    );
    run_pod(&r, &Secrets::new()).unwrap();
}

#[test]
fn helm_chart_refuses_values_that_cannot_work() {
    for (values, says) in [
        ("store:\n  backend: mysql\n", "sled or postgres"),
        (
            "store:\n  backend: postgres\nauditKey:\n  secretName: k\n",
            "urlSecret",
        ),
        (
            "store:\n  backend: postgres\n  postgres:\n    urlSecret:\n      name: db\n",
            "auditKey.secretName",
        ),
    ] {
        let err = render("refused", values)
            .err()
            .unwrap_or_else(|| panic!("{values} rendered"));
        assert!(err.contains(says), "{values}: {err}");
    }
}

/// The checks above can fail: each manifest drift below must be reported.
#[test]
fn helm_chart_checks_catch_drift() {
    let good = render("defaults", "").unwrap();
    assert!(problems(
        &good,
        &Expect {
            postgres: false,
            replicas: 1
        }
    )
    .is_empty());
    type Mutation = (&'static str, fn(&mut Value), &'static str);
    let mutations: Vec<Mutation> = vec![
        (
            "a probe flag the binary lacks",
            |w| {
                w["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]
                    ["command"][2] = "--adress".into()
            },
            "no flag --adress",
        ),
        (
            "a serve flag the binary lacks",
            |w| w["spec"]["template"]["spec"]["containers"][0]["args"][1] = "--conf".into(),
            "no flag --conf",
        ),
        (
            "another container port",
            |w| {
                w["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] =
                    50052.into()
            },
            "containerPort grpc",
        ),
        (
            "a writable root filesystem",
            |w| {
                w["spec"]["template"]["spec"]["containers"][0]["securityContext"]
                    ["readOnlyRootFilesystem"] = false.into()
            },
            "readOnlyRootFilesystem",
        ),
        (
            "the config mounted elsewhere",
            |w| {
                w["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] =
                    "/etc/attestd.toml".into()
            },
            "on no volume",
        ),
        (
            "the data volume gone",
            |w| {
                w["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][1]["mountPath"] =
                    "/data".into()
            },
            "data_dir",
        ),
        (
            "root",
            |w| w["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0.into(),
            "runAsUser",
        ),
        (
            "a shorter grace period",
            |w| w["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 5.into(),
            "stop budget",
        ),
        (
            "a probe timeout below the probe's own",
            |w| {
                w["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["timeoutSeconds"] =
                    2.into()
            },
            "timeoutSeconds",
        ),
        (
            "a plaintext probe",
            |w| {
                let cmd = &mut w["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
                    ["exec"]["command"];
                let a: Vec<Value> = cmd.as_array().unwrap().iter().take(6).cloned().collect();
                *cmd = Value::Array(a);
            },
            "plaintext to a TLS listener",
        ),
        (
            "a second replica of sled",
            |w| w["spec"]["replicas"] = 2.into(),
            "replicas",
        ),
    ];
    for (what, mutate, says) in mutations {
        let mut r = render("defaults", "").unwrap();
        let w = r
            .docs
            .iter_mut()
            .find(|d| d["kind"] == "StatefulSet")
            .unwrap();
        mutate(w);
        let p = problems(
            &r,
            &Expect {
                postgres: false,
                replicas: 1,
            },
        );
        assert!(
            p.iter().any(|x| x.contains(says)),
            "{what}: want {says:?} in {p:#?}"
        );
    }
    // The Service pointing at a port the pod does not have.
    let mut r = render("defaults", "").unwrap();
    let svc = r.docs.iter_mut().find(|d| d["kind"] == "Service").unwrap();
    svc["spec"]["ports"][0]["targetPort"] = "grcp".into();
    let p = problems(
        &r,
        &Expect {
            postgres: false,
            replicas: 1,
        },
    );
    assert!(
        p.iter().any(|x| x.contains("no such container port")),
        "{p:#?}"
    );
    // The configuration changed but not the annotation.
    let mut r = render("defaults", "").unwrap();
    let cm = r
        .docs
        .iter_mut()
        .find(|d| d["kind"] == "ConfigMap")
        .unwrap();
    let t = cm["data"]["attestd.toml"]
        .as_str()
        .unwrap()
        .replace("reload_check_secs = 10", "reload_check_secs = 11");
    cm["data"]["attestd.toml"] = t.into();
    let p = problems(
        &r,
        &Expect {
            postgres: false,
            replicas: 1,
        },
    );
    assert!(p.iter().any(|x| x.contains("checksum/config")), "{p:#?}");
}
