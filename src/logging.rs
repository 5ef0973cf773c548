//! How `attestd serve` reports what it does: log lines on standard error,
//! as text or as one JSON object per line (`--log-format`,
//! `ATTESTD_LOG_FORMAT`), filtered by `ATTESTD_LOG`; and, when
//! `[telemetry] otlp_endpoint` is set, the request spans exported to an
//! OpenTelemetry collector over OTLP/gRPC. The spans themselves are made by
//! `attestd_server::observe`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The shape of log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, the
    /// event's fields at the top level, `target`, and `span` (the request's
    /// fields: method, request_id, peer, principal) when there is one.
    Json,
}

/// `[telemetry]`: OpenTelemetry trace export, off unless `otlp_endpoint`
/// is set.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TelemetryConfig {
    /// A collector's OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// The CA (PEM) that signed an `https://` collector's certificate.
    pub ca_file: Option<PathBuf>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: default_service_name(),
            ca_file: None,
        }
    }
}

fn default_service_name() -> String {
    "attestd".into()
}

/// How long one export may take, and the exporter's flush at shutdown.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps the trace exporter running; dropping it flushes the spans not sent
/// yet (within [`EXPORT_TIMEOUT`]) and stops it. Drop it while the tokio
/// runtime still runs: the exporter's connection lives there.
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown_with_timeout(EXPORT_TIMEOUT) {
                tracing::warn!(error = %e, "trace export did not flush at shutdown");
            }
        }
    }
}

/// Installs the process's subscriber: log lines in `format`, and trace
/// export if `telemetry` asks for it. Call inside the tokio runtime.
pub(crate) fn init(format: LogFormat, telemetry: &TelemetryConfig) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_env("ATTESTD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let lines = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let provider = match &telemetry.otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(endpoint, telemetry)?),
        None => None,
    };
    // attestd's own spans (and the events inside them) at info, whatever
    // ATTESTD_LOG says: the log filter does not thin out the traces.
    let export = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("attestd"))
            .with_filter(Targets::new().with_target("attestd", LevelFilter::INFO))
    });
    tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(export)
        .try_init()
        .context("installing the log subscriber")?;
    attestd_server::observe::export_spans(provider.is_some());
    if let Some(endpoint) = &telemetry.otlp_endpoint {
        tracing::info!(endpoint, service_name = %telemetry.service_name, "exporting request spans over OTLP");
    }
    Ok(Telemetry { provider })
}

/// A tracer provider that batches spans to `endpoint` (OTLP/gRPC, on the
/// project's own tonic and rustls with ring).
fn tracer_provider(endpoint: &str, cfg: &TelemetryConfig) -> anyhow::Result<SdkTracerProvider> {
    let mut ep = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
        .with_context(|| format!("[telemetry] otlp_endpoint {endpoint:?}"))?
        .timeout(EXPORT_TIMEOUT)
        .connect_timeout(EXPORT_TIMEOUT);
    let https = endpoint.starts_with("https://");
    match (&cfg.ca_file, https) {
        (Some(ca), true) => {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(pem));
            ep = ep
                .tls_config(tls)
                .context("[telemetry] TLS to the collector")?;
        }
        (None, true) => {
            bail!("[telemetry] an https otlp_endpoint needs ca_file (the collector's CA, PEM)")
        }
        (Some(_), false) => bail!("[telemetry] ca_file is for an https otlp_endpoint"),
        (None, false) => {}
    }
    // The channel connects when the first batch goes out: a collector that
    // is down costs failed exports (logged by the SDK), not the start.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_channel(ep.connect_lazy())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .context("[telemetry] the OTLP exporter")?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: &str, ca: Option<&str>) -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: Some(endpoint.into()),
            ca_file: ca.map(PathBuf::from),
            ..TelemetryConfig::default()
        }
    }

    #[test]
    fn the_telemetry_section_reads_with_defaults_and_refuses_unknown_keys() {
        let t: TelemetryConfig =
            toml::from_str("otlp_endpoint = \"http://127.0.0.1:4317\"").unwrap();
        assert_eq!(t.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
        assert_eq!(t.service_name, "attestd");
        assert!(toml::from_str::<TelemetryConfig>("endpoint = \"x\"").is_err());
        assert_eq!(TelemetryConfig::default().otlp_endpoint, None);
    }

    #[test]
    fn a_collector_over_https_needs_its_ca_and_plain_http_takes_none() {
        let err = |c: TelemetryConfig| {
            tracer_provider(c.otlp_endpoint.as_deref().unwrap(), &c)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default()
        };
        assert!(err(config("https://otel.example:4317", None)).contains("needs ca_file"));
        assert!(err(config("http://127.0.0.1:4317", Some("/ca.pem"))).contains("is for an https"));
        assert!(err(config("not a uri", None)).contains("otlp_endpoint"));
    }
}
