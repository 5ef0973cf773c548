//! The rendered pod run on this machine: volumes become temporary
//! directories, attestd starts with the chart's configuration and the
//! pod's own probe commands must find it SERVING. Also the test material
//! (values, Secrets) the chart tests use.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;

use crate::chart::{argv_of, mounts, toml_paths, Rendered, Source};
use crate::RELEASE;

/// Values that use every part of the chart: principals by token and by
/// certificate, release keys, limits (one of them 1,000,000: Helm would
/// print it as 1e+06 without toJson), a client CA, an audit key, scheduling.
pub(crate) fn full_values(keys: &[String]) -> String {
    format!(
        r#"
principals:
  - name: secops
    role: security-admin
    token_sha256: "{admin}"
  - name: line3-prov-01
    role: station
    station_id: line3-prov-01
    cert_uri: spiffe://factory.example/station/line3-prov-01
  - name: st-mary
    role: hospital-it
    tenant: st-mary
    token_sha256: "{hosp}"
release:
  threshold: 2
  keys: {keys:?}
limits:
  rate_per_peer_per_min: 1000000
  checkpoint_interval_secs: 30
tls:
  clientCaSecretName: attestd-clients
  serverName: attestd.factory.example
auditKey:
  secretName: attestd-audit-key
podAnnotations:
  prometheus.io/scrape: "true"
nodeSelector:
  kubernetes.io/arch: amd64
tolerations:
  - key: dedicated
    operator: Equal
    value: attestd
    effect: NoSchedule
"#,
        admin = crate::common::sha256_hex("admin-token"),
        hosp = crate::common::sha256_hex("hospital-token"),
    )
}

/// Secrets for the test: name -> key -> content.
pub(crate) type Secrets = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// The Secrets the chart's values name, with real material: a server
/// certificate for the names the probes check, CAs, an audit key, a URL.
pub(crate) fn secrets(db_url: Option<&str>) -> Secrets {
    use crate::common::pki::{ca, leaf};
    let server_ca = ca("chart test server CA");
    let client_ca = ca("chart test client CA");
    let default_name = format!("{}.{}.svc", RELEASE.name, RELEASE.namespace);
    let (cert, key, _) = leaf(&server_ca, &[&default_name, "attestd.factory.example"], &[]);
    let audit =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let mut s = Secrets::new();
    let mut put = |name: &str, key: &str, v: Vec<u8>| {
        s.entry(name.to_owned())
            .or_default()
            .insert(key.to_owned(), v);
    };
    let tls = format!("{}-tls", RELEASE.name);
    put(&tls, "tls.crt", cert);
    put(&tls, "tls.key", key);
    put(&tls, "ca.crt", server_ca.pem.into_bytes());
    put("attestd-clients", "ca.crt", client_ca.pem.into_bytes());
    put(
        "attestd-audit-key",
        "audit-key.pkcs8",
        base64::engine::general_purpose::STANDARD
            .encode(audit.as_ref())
            .into_bytes(),
    );
    if let Some(url) = db_url {
        put("attestd-db", "url", format!("{url}\n").into_bytes());
    }
    s
}

/// Base64 SubjectPublicKeyInfo of fresh Ed25519 keys.
pub(crate) fn release_keys(n: usize) -> Vec<String> {
    use ring::signature::KeyPair;
    (0..n)
        .map(|_| {
            let pkcs8 =
                ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                    .unwrap();
            let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
            let mut spki = vec![
                0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
            ];
            spki.extend_from_slice(pair.public_key().as_ref());
            base64::engine::general_purpose::STANDARD.encode(spki)
        })
        .collect()
}

/// Runs the rendered pod for real, on this machine: every volume becomes a
/// temporary directory (Secrets from `secrets`, the ConfigMap as rendered),
/// every path in the command line and the configuration is mapped onto
/// them, attestd starts on 127.0.0.1 (the manifest's 0.0.0.0 and fixed
/// ports overridden by flags), and each of the pod's probe commands, mapped
/// the same way, must exit 0.
pub(crate) fn run_pod(r: &Rendered, secrets: &Secrets) -> Result<(), String> {
    let pod = &r.workload()["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let m = mounts(pod, c)?;
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    // Volumes -> directories.
    let mut dirs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for mount in &m.0 {
        if dirs.contains_key(&mount.volume) {
            continue;
        }
        let dir = root.path().join("volumes").join(&mount.volume);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        match &mount.source {
            Source::ConfigMap(name) => {
                let cm = r
                    .of_kind("ConfigMap")
                    .into_iter()
                    .find(|d| d["metadata"]["name"] == name.as_str())
                    .ok_or(format!("no ConfigMap {name}"))?;
                for (k, v) in cm["data"].as_object().ok_or("ConfigMap without data")? {
                    std::fs::write(dir.join(k), v.as_str().unwrap_or(""))
                        .map_err(|e| e.to_string())?;
                }
            }
            Source::Secret(name, items) => {
                let data = secrets
                    .get(name)
                    .ok_or(format!("the test has no Secret {name}"))?;
                let items: Vec<(String, String)> = if items.is_empty() {
                    data.keys().map(|k| (k.clone(), k.clone())).collect()
                } else {
                    items.clone()
                };
                for (key, path) in items {
                    let v = data
                        .get(&key)
                        .ok_or(format!("Secret {name} has no key {key}"))?;
                    std::fs::write(dir.join(path), v).map_err(|e| e.to_string())?;
                }
            }
            Source::EmptyDir | Source::Claim => {}
        }
        dirs.insert(mount.volume.clone(), dir);
    }
    let host = |path: &str| -> Result<PathBuf, String> {
        let (mount, rel) = m.locate(path)?;
        let base = match &mount.sub_path {
            Some(sp) => dirs[&mount.volume].join(sp),
            None => dirs[&mount.volume].clone(),
        };
        Ok(if rel.is_empty() { base } else { base.join(rel) })
    };
    // The configuration, its paths mapped (they only appear as quoted
    // strings).
    let (cfg_path, text) = r.config()?;
    let cfg: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
    let mut paths = Vec::new();
    toml_paths(&cfg, "", &mut paths);
    let mut mapped = text.clone();
    for (_, path) in &paths {
        let to = format!("{:?}", host(path)?.display().to_string());
        mapped = mapped.replace(&format!("\"{path}\""), &to);
    }
    std::fs::write(host(&cfg_path)?, mapped).map_err(|e| e.to_string())?;

    // Start it as the container would, on loopback.
    let mut argv = argv_of(c);
    for a in argv.iter_mut().skip(1) {
        if a.starts_with('/') {
            *a = host(a.as_str())?.display().to_string();
        }
    }
    let log = root.path().join("attestd.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_attestd"));
    cmd.args(&argv[1..])
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?);
    for e in c["env"].as_array().cloned().unwrap_or_default() {
        cmd.env(
            e["name"].as_str().unwrap_or(""),
            e["value"].as_str().unwrap_or(""),
        );
    }
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Kill(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                if let Some(a) = line.strip_prefix("attestd listening on ") {
                    break a.to_owned();
                }
            }
            Err(_) => {
                let status = child.0.try_wait().ok().flatten();
                return Err(format!(
                    "attestd did not start with the chart's configuration ({status:?}):\n{}\n--- configuration:\n{text}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
        }
    };
    // The pod's probes, as the kubelet would run them.
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let mut argv: Vec<String> = c[probe]["exec"]["command"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut after_addr = false;
        for a in argv.iter_mut().skip(2) {
            if after_addr {
                *a = addr.clone();
            } else if a.starts_with('/') {
                *a = host(a.as_str())?.display().to_string();
            }
            after_addr = *a == "--addr";
        }
        let out = Command::new(env!("CARGO_BIN_EXE_attestd"))
            .args(&argv[1..])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "{probe} {argv:?} failed: {}\nattestd log:\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            ));
        }
    }
    Ok(())
}
