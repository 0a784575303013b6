//! Command-line and environment configuration shared by every service.
//!
//! Services `#[command(flatten)]` these structs into their own clap `Parser` and parse it with
//! [`parse`], which turns any clap error into one line naming the environment variable and the
//! flag, then exits with status 2.

use std::{ffi::OsString, net::SocketAddr, time::Duration};

use clap::{
    ArgAction, Args, Command, Parser, ValueEnum,
    builder::BoolishValueParser,
    error::{ContextKind, ContextValue, ErrorKind},
};

use crate::fault::FaultArgs;

/// Default gRPC listen address.
pub const DEFAULT_GRPC_ADDR: &str = "0.0.0.0:50051";
/// Default admin HTTP (metrics, probes) listen address.
pub const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:9090";

/// Everything the runtime needs: server and telemetry settings.
#[derive(Args, Debug, Clone)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// gRPC server, admin port and shutdown settings.
#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Address the gRPC server listens on.
    #[arg(long, env = "GRPC_ADDR", default_value = DEFAULT_GRPC_ADDR)]
    pub grpc_addr: SocketAddr,

    /// Address of the admin HTTP server (/metrics, /healthz, /readyz).
    #[arg(long, env = "ADMIN_ADDR", default_value = DEFAULT_ADMIN_ADDR)]
    pub admin_addr: SocketAddr,

    /// Version put on metrics and spans (defaults to the binary's crate version).
    #[arg(long, env = "SERVICE_VERSION")]
    pub service_version: String,

    /// How long in-flight calls may run after shutdown starts before they are dropped.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Pause between reporting NOT_SERVING and closing the listener, so that load balancers
    /// and DNS-re-resolving clients stop sending first. Set it above the clients' re-resolve
    /// interval in Kubernetes.
    #[arg(long, env = "SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    // No "grace" setting on purpose: tonic 0.14 with a grace period skips the GOAWAY and
    // force-closes at age + grace, cutting calls in flight.
    /// Connections older than this are closed gracefully (GOAWAY), so clients re-balance.
    #[arg(long, env = "MAX_CONNECTION_AGE", default_value = "30s", value_parser = parse_duration)]
    pub max_connection_age: Duration,

    /// Interval of HTTP/2 keepalive pings on server connections.
    #[arg(long, env = "GRPC_KEEPALIVE_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub grpc_keepalive_interval: Duration,

    /// Time to wait for a keepalive ping acknowledgement before closing the connection.
    #[arg(long, env = "GRPC_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub grpc_keepalive_timeout: Duration,

    #[command(flatten)]
    pub faults: FaultArgs,
}

impl ServerArgs {
    /// The defaults, with both listeners on `127.0.0.1:0`: for tests and examples that build
    /// the config in code.
    pub fn local(service_version: impl Into<String>) -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            service_version: service_version.into(),
            drain_timeout: Duration::from_secs(20),
            shutdown_delay: Duration::ZERO,
            max_connection_age: Duration::from_secs(30),
            grpc_keepalive_interval: Duration::from_secs(10),
            grpc_keepalive_timeout: Duration::from_secs(20),
            faults: FaultArgs::default(),
        }
    }
}

/// Log output format.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, with trace_id and span_id (for clusters).
    Json,
    /// Human-readable lines (for laptops).
    Text,
}

/// `OTEL_TRACES_SAMPLER` values from the OpenTelemetry SDK environment specification.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracesSampler {
    #[value(name = "always_on")]
    AlwaysOn,
    #[value(name = "always_off")]
    AlwaysOff,
    #[value(name = "traceidratio")]
    TraceIdRatio,
    #[value(name = "parentbased_always_on")]
    ParentBasedAlwaysOn,
    #[value(name = "parentbased_always_off")]
    ParentBasedAlwaysOff,
    #[value(name = "parentbased_traceidratio")]
    ParentBasedTraceIdRatio,
}

/// Logging and OpenTelemetry settings, read from the standard `RUST_LOG` and `OTEL_*` variables.
#[derive(Args, Debug, Clone)]
pub struct TelemetryArgs {
    /// Log filter in tracing-subscriber EnvFilter syntax, e.g. `info,payplane=debug`.
    #[arg(long = "log-level", env = "RUST_LOG", default_value = "info", value_parser = parse_log_filter)]
    pub log_filter: String,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// Overrides the service name given in code.
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,

    /// OTLP/gRPC collector, e.g. `http://jaeger:4317`. Unset: spans are made (trace ids in logs,
    /// propagation) but not exported.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse_otlp_endpoint)]
    pub otel_exporter_otlp_endpoint: Option<String>,

    /// Sampler.
    #[arg(long, env = "OTEL_TRACES_SAMPLER", value_enum, default_value_t = TracesSampler::ParentBasedAlwaysOn)]
    pub otel_traces_sampler: TracesSampler,

    /// Sampling ratio in [0, 1] for the `*traceidratio` samplers.
    #[arg(long, env = "OTEL_TRACES_SAMPLER_ARG", default_value_t = 1.0, value_parser = parse_ratio)]
    pub otel_traces_sampler_arg: f64,

    /// Turns OpenTelemetry off entirely (logs stay).
    #[arg(long, env = "OTEL_SDK_DISABLED", default_value_t = false, action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub otel_sdk_disabled: bool,
}

impl TelemetryArgs {
    /// Text logs at `info`, no exporter: for tests and tools.
    pub fn local() -> Self {
        Self {
            log_filter: "info".into(),
            log_format: LogFormat::Text,
            otel_service_name: None,
            otel_exporter_otlp_endpoint: None,
            otel_traces_sampler: TracesSampler::ParentBasedAlwaysOn,
            otel_traces_sampler_arg: 1.0,
            otel_sdk_disabled: false,
        }
    }
}

/// PostgreSQL settings. The connect-and-migrate helper needs the `postgres` feature.
#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// PostgreSQL URL, e.g. `postgres://user:pass@host:5432/db`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = parse_postgres_url)]
    pub database_url: String,

    /// Maximum connections in the pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub database_max_connections: u32,

    /// How long to wait for a pooled connection.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub database_acquire_timeout: Duration,
}

/// Parses `T` from the process arguments and environment, or exits with status 2 and a
/// one-line message naming the offending setting. `default_version` (pass
/// `env!("CARGO_PKG_VERSION")`) becomes the default of `SERVICE_VERSION`.
pub fn parse<T: Parser>(default_version: &'static str) -> T {
    match try_parse_from(std::env::args_os(), default_version) {
        Ok(config) => config,
        Err(err) => exit_with(err),
    }
}

/// [`parse`] without exiting: returns the one-line message on a configuration error.
pub fn try_parse_from<T, I, A>(args: I, default_version: &'static str) -> Result<T, ConfigError>
where
    T: Parser,
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    let mut cmd = T::command();
    if cmd.get_arguments().any(|a| a.get_id() == "service_version") {
        cmd = cmd.mut_arg("service_version", |a| {
            a.default_value(default_version).required(false)
        });
    }
    let parsed = cmd
        .try_get_matches_from_mut(args)
        .and_then(|mut matches| T::from_arg_matches_mut(&mut matches));
    parsed.map_err(|err| ConfigError::from_clap(err, &cmd))
}

/// A configuration error: either help/version output to print, or a one-line message.
#[derive(Debug)]
pub struct ConfigError {
    clap: clap::Error,
    line: Option<String>,
}

impl ConfigError {
    fn from_clap(clap: clap::Error, cmd: &Command) -> Self {
        let line = match clap.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => None,
            _ => Some(one_line(&clap, cmd)),
        };
        Self { clap, line }
    }

    /// The one-line message (`error: ...`), or `None` for `--help`/`--version` output.
    pub fn message(&self) -> Option<&str> {
        self.line.as_deref()
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.line {
            Some(line) => f.write_str(line),
            None => write!(f, "{}", self.clap),
        }
    }
}

impl std::error::Error for ConfigError {}

fn exit_with(err: ConfigError) -> ! {
    match err.line {
        Some(line) => {
            eprintln!("{line}");
            std::process::exit(2)
        }
        None => err.clap.exit(),
    }
}

/// `error: invalid value 'abc' for GRPC_ADDR (--grpc-addr): invalid socket address syntax`
fn one_line(err: &clap::Error, cmd: &Command) -> String {
    let arg = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        Some(ContextValue::Strings(v)) => v.first().map(String::as_str),
        _ => None,
    };
    let found = arg.and_then(|rendered| {
        cmd.get_arguments()
            .find(|a| a.to_string() == rendered || a.get_id().as_str() == rendered)
    });
    let setting = match found {
        Some(a) => {
            let flag = a
                .get_long()
                .map(|l| format!("--{l}"))
                .unwrap_or_else(|| a.get_id().to_string());
            match a.get_env() {
                Some(env) => format!("{} ({flag})", env.to_string_lossy()),
                None => flag,
            }
        }
        None => arg.unwrap_or("a setting").to_owned(),
    };
    let hidden = found.is_some_and(|a| a.is_hide_env_values_set());
    let value = match err.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(_)) if hidden => "<hidden>".to_owned(),
        Some(ContextValue::String(v)) => v.clone(),
        _ => String::new(),
    };
    let flat = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    match err.kind() {
        ErrorKind::MissingRequiredArgument => format!("error: missing required setting {setting}"),
        ErrorKind::InvalidValue => {
            let valid = match err.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(v)) => format!("expected one of {}", v.join(", ")),
                _ => "invalid value".to_owned(),
            };
            format!("error: invalid value '{value}' for {setting}: {valid}")
        }
        ErrorKind::ValueValidation => {
            let reason = std::error::Error::source(err)
                .map(|s| flat(s.to_string()))
                .unwrap_or_else(|| "invalid value".to_owned());
            format!("error: invalid value '{value}' for {setting}: {reason}")
        }
        _ => {
            let rendered = err.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: bad configuration");
            flat(first.to_owned())
        }
    }
}

/// Durations like `30s`, `500ms`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("expected a duration like 30s or 500ms ({e})"))
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("expected a ratio between 0 and 1".to_owned()),
    }
}

fn parse_log_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("invalid log filter ({e})"))
}

// A scheme-less endpoint would silently mean https in opentelemetry-otlp 0.33.
fn parse_otlp_endpoint(s: &str) -> Result<String, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("invalid URL ({e})"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(s.to_owned()),
        _ => Err("expected an http:// or https:// URL with a host".to_owned()),
    }
}

fn parse_postgres_url(s: &str) -> Result<String, String> {
    let ok =
        (s.starts_with("postgres://") || s.starts_with("postgresql://")) && s.parse::<http::Uri>().is_ok();
    if ok {
        Ok(s.to_owned())
    } else {
        Err("expected a postgres:// URL".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Env names nobody sets, so that the ambient environment cannot change the outcome; the
    // real structs are exercised with a controlled environment in tests/processes.rs.
    #[derive(Parser, Debug)]
    struct Config {
        #[arg(long, env = "PAYPLANE_UNIT_TEST_ADDR", default_value = "127.0.0.1:1")]
        addr: SocketAddr,
        #[arg(long, env = "PAYPLANE_UNIT_TEST_URL", hide_env_values = true, value_parser = parse_postgres_url)]
        url: String,
        #[arg(long, env = "PAYPLANE_UNIT_TEST_FORMAT", value_enum, default_value_t = LogFormat::Json)]
        format: LogFormat,
        #[arg(long, env = "PAYPLANE_UNIT_TEST_RATIO", default_value_t = 1.0, value_parser = parse_ratio)]
        ratio: f64,
        #[arg(long, env = "PAYPLANE_UNIT_TEST_ENDPOINT", value_parser = parse_otlp_endpoint)]
        endpoint: Option<String>,
        #[arg(long, env = "PAYPLANE_UNIT_TEST_VERSION")]
        service_version: String,
    }

    fn parse_args(args: &[&str]) -> Result<Config, ConfigError> {
        try_parse_from(std::iter::once("svc").chain(args.iter().copied()), "1.2.3")
    }

    #[test]
    fn the_default_version_is_injected() {
        let c = parse_args(&["--url", "postgres://u@h/db"]).expect("parses");
        assert_eq!(c.service_version, "1.2.3");
        let c = parse_args(&["--url", "postgres://u@h/db", "--service-version", "2.0.0"]).expect("parses");
        assert_eq!(c.service_version, "2.0.0");
    }

    #[test]
    fn malformed_address_names_the_setting_in_one_line() {
        let e = parse_args(&["--addr", "abc", "--url", "postgres://h/db"]).unwrap_err();
        assert_eq!(
            e.message(),
            Some(
                "error: invalid value 'abc' for PAYPLANE_UNIT_TEST_ADDR (--addr): invalid socket address syntax"
            )
        );
    }

    #[test]
    fn missing_required_value_names_the_setting() {
        let e = parse_args(&[]).unwrap_err();
        assert_eq!(
            e.message(),
            Some("error: missing required setting PAYPLANE_UNIT_TEST_URL (--url)")
        );
    }

    #[test]
    fn enums_ratios_endpoints_and_secrets() {
        let url = "postgres://h/d";
        let e = parse_args(&["--format", "xml", "--url", url]).unwrap_err();
        assert_eq!(
            e.message(),
            Some(
                "error: invalid value 'xml' for PAYPLANE_UNIT_TEST_FORMAT (--format): expected one of json, text"
            )
        );
        let e = parse_args(&["--ratio", "2", "--url", url]).unwrap_err();
        assert_eq!(
            e.message(),
            Some(
                "error: invalid value '2' for PAYPLANE_UNIT_TEST_RATIO (--ratio): expected a ratio between 0 and 1"
            )
        );
        let e = parse_args(&["--endpoint", "jaeger:4317", "--url", url]).unwrap_err();
        assert!(
            e.message()
                .is_some_and(|m| m.contains("PAYPLANE_UNIT_TEST_ENDPOINT")),
            "{e}"
        );
        let e = parse_args(&["--url", "mysql://secret@h/d"]).unwrap_err();
        let m = e.message().expect("a message");
        assert!(
            m.contains("PAYPLANE_UNIT_TEST_URL") && !m.contains("secret"),
            "{m}"
        );
    }

    #[test]
    fn help_is_not_an_error_line() {
        let e = parse_args(&["--help"]).unwrap_err();
        assert_eq!(e.message(), None);
    }
}
