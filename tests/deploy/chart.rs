//! The chart rendered and read as Kubernetes would: the workload, its pod,
//! mounts and probes, and every way they can disagree with the binary, the
//! image or the systemd unit.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use serde_json::Value;

use crate::binary::binary;
use crate::helm::Chart;
use crate::{image, repo, unit_stop_budget, RELEASE};

pub(crate) fn chart() -> &'static Chart {
    static CHART: OnceLock<Chart> = OnceLock::new();
    CHART.get_or_init(|| Chart::load(&repo().join("deploy/helm/attestd")).expect("load the chart"))
}

/// The chart rendered with some values: its manifests, parsed.
pub(crate) struct Rendered {
    pub docs: Vec<Value>,
}

/// Renders the chart with `overrides`. With ATTESTD_CHART_RENDER_DIR set,
/// also writes the manifests to `<dir>/<label>.yaml`, to compare with
/// `helm template` or feed to a schema validator where those exist.
pub(crate) fn render(label: &str, overrides: &str) -> Result<Rendered, String> {
    let files = chart().render(overrides, &RELEASE)?;
    if let Ok(dir) = std::env::var("ATTESTD_CHART_RENDER_DIR") {
        let all: Vec<String> = files
            .iter()
            .filter(|(n, _)| n != "NOTES.txt")
            .map(|(n, t)| format!("---\n# Source: attestd/templates/{n}\n{t}\n"))
            .collect();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(Path::new(&dir).join(format!("{label}.yaml")), all.concat()).unwrap();
    }
    let mut docs = Vec::new();
    for (name, text) in files {
        if name == "NOTES.txt" {
            continue;
        }
        for d in
            crate::yaml::yaml_docs(&text).map_err(|e| format!("templates/{name}: {e}\n{text}"))?
        {
            docs.push(d);
        }
    }
    Ok(Rendered { docs })
}

impl Rendered {
    pub(crate) fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    pub(crate) fn one(&self, kind: &str) -> &Value {
        let found = self.of_kind(kind);
        assert_eq!(found.len(), 1, "one {kind}");
        found[0]
    }

    /// The StatefulSet or Deployment.
    pub(crate) fn workload(&self) -> &Value {
        let w: Vec<_> = self
            .docs
            .iter()
            .filter(|d| d["kind"] == "StatefulSet" || d["kind"] == "Deployment")
            .collect();
        assert_eq!(w.len(), 1, "one workload");
        w[0]
    }

    /// The configuration the pod reads: (its path in the container, text).
    pub(crate) fn config(&self) -> Result<(String, String), String> {
        let pod = &self.workload()["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let argv = argv_of(c);
        let inv = binary().invocation(&argv)?;
        let path = inv
            .flags
            .get("config")
            .ok_or("the container passes no --config")?;
        let m = mounts(pod, c)?;
        let (mount, rel) = m.locate(path)?;
        let Source::ConfigMap(name) = &mount.source else {
            return Err(format!("{path} is not from a ConfigMap"));
        };
        let cm = self
            .of_kind("ConfigMap")
            .into_iter()
            .find(|d| d["metadata"]["name"] == name.as_str())
            .ok_or(format!("no ConfigMap {name}"))?;
        let key = match &mount.sub_path {
            Some(k) if rel.is_empty() => k.clone(),
            None => rel.clone(),
            Some(_) => return Err(format!("{path}: inside a subPath file")),
        };
        let text = cm["data"][key.as_str()]
            .as_str()
            .ok_or(format!("ConfigMap {name} has no {key}"))?;
        Ok((path.clone(), text.to_owned()))
    }
}

pub(crate) fn argv_of(container: &Value) -> Vec<String> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().expect("string args").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut argv = strings(&container["command"]);
    argv.extend(strings(&container["args"]));
    argv
}

/// Where a volume's content comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    ConfigMap(String),
    /// Secret name and its items (key -> path), empty for all keys.
    Secret(String, Vec<(String, String)>),
    EmptyDir,
    Claim,
}

#[derive(Debug, Clone)]
pub(crate) struct Mount {
    pub path: String,
    pub sub_path: Option<String>,
    pub read_only: bool,
    pub volume: String,
    pub source: Source,
}

pub(crate) struct Mounts(pub Vec<Mount>);

pub(crate) fn mounts(pod: &Value, c: &Value) -> Result<Mounts, String> {
    let mut out = Vec::new();
    for m in c["volumeMounts"].as_array().cloned().unwrap_or_default() {
        let name = m["name"]
            .as_str()
            .ok_or("a volumeMount without name")?
            .to_owned();
        let vol = pod["volumes"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["name"] == name.as_str()));
        let source = match vol {
            None => Source::Claim, // from volumeClaimTemplates (checked by the caller)
            Some(v) if v.get("configMap").is_some() => {
                Source::ConfigMap(v["configMap"]["name"].as_str().unwrap_or("").to_owned())
            }
            Some(v) if v.get("secret").is_some() => Source::Secret(
                v["secret"]["secretName"].as_str().unwrap_or("").to_owned(),
                v["secret"]["items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|i| {
                        (
                            i["key"].as_str().unwrap_or("").to_owned(),
                            i["path"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect(),
            ),
            Some(v) if v.get("emptyDir").is_some() => Source::EmptyDir,
            Some(v) => {
                return Err(format!(
                    "volume {name}: a kind this test does not know: {v}"
                ))
            }
        };
        out.push(Mount {
            path: m["mountPath"]
                .as_str()
                .ok_or("a volumeMount without mountPath")?
                .to_owned(),
            sub_path: m["subPath"].as_str().map(str::to_owned),
            read_only: m["readOnly"] == true,
            volume: name,
            source,
        });
    }
    Ok(Mounts(out))
}

impl Mounts {
    /// The mount a container path lies on (the deepest), and the path
    /// inside it. The root filesystem is read-only, so a path on no mount
    /// is an error.
    pub(crate) fn locate(&self, path: &str) -> Result<(&Mount, String), String> {
        self.0
            .iter()
            .filter_map(|m| {
                let rest = path.strip_prefix(&m.path)?;
                if rest.is_empty() {
                    Some((m, String::new()))
                } else {
                    rest.strip_prefix('/').map(|r| (m, r.to_owned()))
                }
            })
            .max_by_key(|(m, _)| m.path.len())
            .ok_or_else(|| format!("{path} is on no volume (the root filesystem is read-only)"))
    }
}

/// Absolute paths in a TOML document: (dotted key, path).
pub(crate) fn toml_paths(t: &toml::Table, at: &str, out: &mut Vec<(String, String)>) {
    for (k, v) in t {
        let key = if at.is_empty() {
            k.clone()
        } else {
            format!("{at}.{k}")
        };
        match v {
            toml::Value::String(s) if s.starts_with('/') => out.push((key, s.clone())),
            toml::Value::Table(t) => toml_paths(t, &key, out),
            toml::Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    match x {
                        toml::Value::String(s) if s.starts_with('/') => {
                            out.push((format!("{key}[{i}]"), s.clone()))
                        }
                        toml::Value::Table(t) => toml_paths(t, &format!("{key}[{i}]"), out),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

pub(crate) fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}

/// What a rendering is expected to be.
pub(crate) struct Expect {
    pub postgres: bool,
    pub replicas: i64,
}

/// Every way the rendered manifests can disagree with the binary, the
/// image, the unit or themselves. Empty when all is well.
/// Records a problem unless `ok`.
fn check(p: &mut Vec<String>, ok: bool, what: String) {
    if !ok {
        p.push(what);
    }
}

pub(crate) fn problems(r: &Rendered, want: &Expect) -> Vec<String> {
    let mut p = Vec::new();
    let bin = binary();
    let img = image();
    for d in &r.docs {
        let name = d["metadata"]["name"].as_str().unwrap_or("");
        check(
            &mut p,
            !name.is_empty()
                && name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            format!("{} name {name:?} is not a DNS label", d["kind"]),
        );
    }
    let w = r.workload();
    let kind = if want.postgres {
        "Deployment"
    } else {
        "StatefulSet"
    };
    check(
        &mut p,
        w["kind"] == kind,
        format!("workload is {}, want {kind}", w["kind"]),
    );
    check(
        &mut p,
        w["spec"]["replicas"] == want.replicas,
        format!("replicas {}, want {}", w["spec"]["replicas"], want.replicas),
    );
    let tpl = &w["spec"]["template"];
    let pod = &tpl["spec"];
    let labels = &tpl["metadata"]["labels"];
    let selects = |sel: &Value| {
        sel.as_object()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k] == *v))
    };
    check(
        &mut p,
        selects(&w["spec"]["selector"]["matchLabels"]),
        "workload selector misses the pods".into(),
    );
    let svc = r.one("Service");
    check(
        &mut p,
        selects(&svc["spec"]["selector"]),
        "Service selector misses the pods".into(),
    );
    for pdb in r.of_kind("PodDisruptionBudget") {
        check(
            &mut p,
            selects(&pdb["spec"]["selector"]["matchLabels"]),
            "PDB selector misses the pods".into(),
        );
    }

    // The pod: non-root as the image's user, no service account token, the
    // unit's stop budget.
    check(
        &mut p,
        pod["automountServiceAccountToken"] == false,
        "the pod mounts a service account token".into(),
    );
    let sc = &pod["securityContext"];
    check(
        &mut p,
        sc["runAsNonRoot"] == true,
        "runAsNonRoot is not true".into(),
    );
    check(
        &mut p,
        sc["runAsUser"] == img.uid,
        format!(
            "runAsUser {} is not the image's {}",
            sc["runAsUser"], img.uid
        ),
    );
    check(
        &mut p,
        sc["runAsGroup"] == img.gid,
        format!(
            "runAsGroup {} is not the image's {}",
            sc["runAsGroup"], img.gid
        ),
    );
    check(
        &mut p,
        sc["fsGroup"] == img.gid,
        format!(
            "fsGroup {} is not the image's group {}",
            sc["fsGroup"], img.gid
        ),
    );
    check(
        &mut p,
        sc["seccompProfile"]["type"] == "RuntimeDefault",
        "no RuntimeDefault seccomp profile".into(),
    );
    let budget = unit_stop_budget();
    check(
        &mut p,
        pod["terminationGracePeriodSeconds"] == budget,
        format!(
            "terminationGracePeriodSeconds {} is not the unit's stop budget {budget}",
            pod["terminationGracePeriodSeconds"]
        ),
    );

    let containers = pod["containers"].as_array().cloned().unwrap_or_default();
    check(&mut p, containers.len() == 1, "one container".into());
    let Some(c) = containers.first() else {
        return p;
    };
    let csc = &c["securityContext"];
    check(
        &mut p,
        csc["readOnlyRootFilesystem"] == true,
        "readOnlyRootFilesystem is not true".into(),
    );
    check(
        &mut p,
        csc["allowPrivilegeEscalation"] == false,
        "allowPrivilegeEscalation is not false".into(),
    );
    check(&mut p, csc["privileged"] != true, "privileged".into());
    check(
        &mut p,
        csc["capabilities"]["drop"] == serde_json::json!(["ALL"]),
        "capabilities are not all dropped".into(),
    );
    check(
        &mut p,
        csc["capabilities"].get("add").is_none(),
        "capabilities added".into(),
    );
    check(
        &mut p,
        c["resources"]["requests"].is_object() && c["resources"]["limits"]["memory"].is_string(),
        "no resource requests or memory limit".into(),
    );
    let image_ref = c["image"].as_str().unwrap_or("");
    check(
        &mut p,
        image_ref.contains(':'),
        format!("image {image_ref} has no tag"),
    );

    // The command line, the configuration it names, and the mounts.
    let argv = argv_of(c);
    match bin.invocation(&argv) {
        Ok(inv) => {
            check(
                &mut p,
                inv.command == "serve",
                format!("the container runs {}", inv.command),
            );
            check(
                &mut p,
                inv.flags.get("config") == Some(&img.config),
                format!(
                    "--config {:?} is not the image's {}",
                    inv.flags.get("config"),
                    img.config
                ),
            );
        }
        Err(e) => p.push(format!("container: {e}")),
    }
    let m = match mounts(pod, c) {
        Ok(m) => m,
        Err(e) => {
            p.push(e);
            return p;
        }
    };
    let (_, text) = match r.config() {
        Ok(c) => c,
        Err(e) => {
            p.push(format!("configuration: {e}"));
            return p;
        }
    };
    let cfg: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            p.push(format!("the configuration is not TOML: {e}\n{text}"));
            return p;
        }
    };
    let annotation = &tpl["metadata"]["annotations"]["checksum/config"];
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        text.trim_end_matches('\n').as_bytes(),
    );
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    check(
        &mut p,
        *annotation == hex.as_str(),
        "checksum/config is not the configuration's SHA-256: a change would not roll the pods"
            .into(),
    );
    let mut paths = Vec::new();
    toml_paths(&cfg, "", &mut paths);
    for (key, path) in &paths {
        match m.locate(path) {
            Ok((mount, _)) => {
                let writable = key == "data_dir";
                check(
                    &mut p,
                    !writable || !mount.read_only,
                    format!("{key} = {path} is on a read-only mount"),
                );
            }
            Err(e) => p.push(format!("{key}: {e}")),
        }
    }
    let data_dir = cfg.get("data_dir").and_then(|d| d.as_str()).unwrap_or("");
    check(
        &mut p,
        data_dir == img.volume,
        format!(
            "data_dir {data_dir} is not the image's volume {}",
            img.volume
        ),
    );
    if let Some(key) = cfg.get("audit_key_file").and_then(|k| k.as_str()) {
        // attestd writes <key>.pub beside it.
        let parent = Path::new(key).parent().unwrap().display().to_string();
        match m.locate(&parent) {
            Ok((mount, _)) => check(
                &mut p,
                !mount.read_only && mount.sub_path.is_none(),
                format!("{parent} (where attestd writes the audit key's .pub) is not writable"),
            ),
            Err(e) => p.push(e),
        }
    }
    let data_mount = m.locate(&img.volume).map(|(mount, _)| mount.clone());
    match (&data_mount, want.postgres) {
        (Ok(d), false) => {
            let claims = w["spec"]["volumeClaimTemplates"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let claim = claims
                .iter()
                .find(|c| c["metadata"]["name"] == d.volume.as_str());
            check(
                &mut p,
                d.source == Source::Claim
                    && claim.is_some_and(|c| {
                        c["spec"]["accessModes"] == serde_json::json!(["ReadWriteOnce"])
                    }),
                "sled's data is not on a ReadWriteOnce volume claim".into(),
            );
        }
        (Ok(d), true) => check(
            &mut p,
            d.source == Source::EmptyDir,
            "postgres replicas keep data_dir on an emptyDir".into(),
        ),
        (Err(e), _) => p.push(e.clone()),
    }
    check(
        &mut p,
        (cfg.get("store").is_some()) == want.postgres,
        "[store] is there exactly when the backend is postgres".into(),
    );

    // Ports: the configuration's, the container's, the Service's.
    let listen = cfg.get("listen").and_then(|l| l.as_str()).unwrap_or("");
    let grpc = port_of(listen);
    let metrics = cfg
        .get("metrics_listen")
        .and_then(|l| l.as_str())
        .and_then(port_of);
    let tls = cfg.get("tls").is_some();
    check(
        &mut p,
        listen.starts_with("0.0.0.0:")
            && (tls || cfg.get("insecure_plaintext") == Some(&toml::Value::Boolean(true))),
        format!("listen {listen} must be every interface, with [tls] or insecure_plaintext"),
    );
    let cports: BTreeMap<String, i64> = c["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").to_owned(),
                p["containerPort"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    check(
        &mut p,
        cports.get("grpc").map(|&port| port as u16) == grpc,
        format!(
            "containerPort grpc {:?} is not listen's {grpc:?}",
            cports.get("grpc")
        ),
    );
    check(
        &mut p,
        cports.get("metrics").map(|&port| port as u16) == metrics,
        format!(
            "containerPort metrics {:?} is not metrics_listen's {metrics:?}",
            cports.get("metrics")
        ),
    );
    for sp in svc["spec"]["ports"].as_array().cloned().unwrap_or_default() {
        let target = sp["targetPort"].as_str().unwrap_or("");
        check(
            &mut p,
            cports.get(target).is_some_and(|&cp| sp["port"] == cp),
            format!(
                "Service port {} -> {target}: no such container port",
                sp["port"]
            ),
        );
    }

    // Probes: attestd health with flags it has, at the listener, within
    // the probe's timeout, with TLS exactly when the listener has it.
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let pr = &c[probe];
        let argv: Vec<String> = pr["exec"]["command"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let inv = match bin.invocation(&argv) {
            Ok(i) => i,
            Err(e) => {
                p.push(format!("{probe}: {e}"));
                continue;
            }
        };
        check(
            &mut p,
            inv.command == "health",
            format!("{probe} runs attestd {}", inv.command),
        );
        let addr = inv
            .flags
            .get("addr")
            .cloned()
            .unwrap_or_else(|| bin.default_of("health", "addr"));
        check(
            &mut p,
            (addr.starts_with("127.0.0.1:") || addr.starts_with("localhost:"))
                && port_of(&addr) == grpc,
            format!("{probe} asks {addr}, attestd listens on {listen}"),
        );
        let own: i64 = inv
            .flags
            .get("timeout-secs")
            .cloned()
            .unwrap_or_else(|| bin.default_of("health", "timeout-secs"))
            .parse()
            .unwrap_or(i64::MAX);
        check(
            &mut p,
            pr["timeoutSeconds"].as_i64().is_some_and(|t| t > own),
            format!(
                "{probe} timeoutSeconds {} is not above the probe's own {own} s",
                pr["timeoutSeconds"]
            ),
        );
        match (tls, inv.flags.get("ca-file")) {
            (true, Some(ca)) => match m.locate(ca) {
                Ok((mount, _)) => {
                    let in_secret = match &mount.source {
                        Source::Secret(_, items) => {
                            items.is_empty()
                                || items.iter().any(|(_, path)| Path::new(ca).ends_with(path))
                        }
                        _ => false,
                    };
                    check(
                        &mut p,
                        in_secret,
                        format!("{probe} --ca-file {ca} is not in a Secret's items"),
                    )
                }
                Err(e) => p.push(format!("{probe}: {e}")),
            },
            (true, None) => p.push(format!("{probe} speaks plaintext to a TLS listener")),
            (false, Some(_)) => p.push(format!("{probe} speaks TLS to a plaintext listener")),
            (false, None) => {}
        }
    }
    p
}
