use std::{io::IsTerminal, process::ExitCode, time::Duration};

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use payplane_cli::{
    load::{self, Live, LoadPlan, Mode, PaymentMix, mix, stats::join_counts},
    report,
    trace::{self, Lookup, jaeger::Jaeger, waterfall::Waterfall},
};
use payplane_proto::common::v1::PaymentMethod;
use payplane_runtime::{ClientArgs, Target, balance};
use tokio_util::sync::CancellationToken;

/// payplane: the tool a payplane platform engineer lives in.
#[derive(Parser, Debug)]
#[command(
    name = "payplane",
    version,
    propagate_version = true,
    after_help = "Example:\n  payplane load --rate 200/s --duration 30s"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send payments through the gateway and report throughput, latency, errors and outcomes.
    ///
    /// Sends PaymentService.CreatePayment at a fixed rate (--rate) or from N concurrent clients
    /// as fast as the answers come (--concurrency), over a channel that balances every request
    /// across all addresses of the gateway. Stops after --count payments or --duration,
    /// whichever comes first (Ctrl-C or SIGTERM stops early), then reads back the final state of the
    /// payments it made with GetPayment and prints a summary (--json for scripts).
    #[command(after_help = LOAD_EXAMPLES)]
    Load(LoadArgs),

    /// Print the delivery report: deployment frequency, lead time, change failure rate and
    /// time to restore, per service and overall, over a window.
    ///
    /// Reads the ReleaseEvents the rollout controller records (from the cluster in KUBECONFIG,
    /// or from a JSON export with --from), folds them into releases and counts, over
    /// [--since, --until): promotions per day; commit-to-promotion lead time (median, p90);
    /// the share of finished releases that reached production traffic and were rolled back or
    /// aborted; and the median time from the first failure sign to all traffic back on stable.
    /// --format html writes one self-contained page with charts (releases per day, lead-time
    /// trend).
    #[command(after_help = REPORT_EXAMPLES)]
    Report(ReportArgs),

    /// Print the audit trail of one release: who did what, when, and on which evidence.
    ///
    /// Every transition of the release (start, steps, weights, analysis measurements with
    /// their values and verdicts, pauses, approvals, freezes, promotion, abort, rollback) in
    /// order, with the actor, the images and the commit. Default: the service's latest release.
    #[command(after_help = AUDIT_EXAMPLES)]
    Audit(AuditArgs),

    /// List the releases of a service, one line each: number, revision, started, finished,
    /// outcome and lead time.
    #[command(after_help = HISTORY_EXAMPLES)]
    History(HistoryArgs),

    #[command(flatten)]
    Release(payplane_cli::rollout::Command),

    /// Draw one payment's trace from Jaeger as a waterfall: which services it crossed, in which
    /// version, how long each step took and where it failed.
    ///
    /// Takes a trace id (32 hex digits: the payment's trace_id, or the x-trace-id the gateway
    /// returns) or a payment id, which is looked up among the gateway's spans tagged payment.id
    /// over the last 7 days (a payment with refunds or recoveries has more traces: the one that
    /// created it is drawn, the others are listed). One row per span, indented under its parent:
    /// service, operation, service.version, duration, a bar placed on the trace's time line, and
    /// errors (span status ERROR or error=true) marked with their gRPC status code. Ends with the
    /// link to the trace in Jaeger's UI. --json prints the spans for scripts.
    #[command(after_help = TRACE_EXAMPLES)]
    Trace(TraceArgs),

    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  payplane completions bash > ~/.local/share/bash-completion/completions/payplane
  payplane completions zsh > \"${fpath[1]}/_payplane\"

As a kubectl plugin: put the binary on PATH as kubectl-payplane, e.g.
  ln -s \"$(command -v payplane)\" ~/.local/bin/kubectl-payplane && kubectl payplane status";

const TRACE_EXAMPLES: &str = "\
Examples:
  # A payment's trace, against the local Jaeger (ci/devenv up):
  payplane trace 0b7f3a2e-9c41-4d8e-a1b2-3c4d5e6f7a8b

  # By trace id (x-trace-id), from the local cloud's Jaeger (ci/cluster.md):
  payplane trace 4bf92f3577b34da6a3ce929d0e0e4736 --jaeger http://10.96.0.20:16686

  # The services a payment crossed, for a script:
  payplane trace 0b7f3a2e-9c41-4d8e-a1b2-3c4d5e6f7a8b --json | jq -r '.services[]'";

#[derive(Args, Debug)]
struct TraceArgs {
    /// A payment id, or a trace id (32 hex digits).
    #[arg(value_name = "PAYMENT_ID|TRACE_ID")]
    id: String,

    /// Jaeger's query API (the UI's address, port 16686).
    #[arg(long, env = "PAYPLANE_JAEGER_URL", default_value = "http://127.0.0.1:16686")]
    jaeger: String,

    /// Print the spans as JSON instead of the waterfall.
    #[arg(long)]
    json: bool,

    /// Columns to draw in (default: the terminal's width, or 100 when not on a terminal).
    #[arg(long, value_parser = clap::value_parser!(u16).range(20..))]
    width: Option<u16>,
}

const REPORT_EXAMPLES: &str = "\
Examples:
  # The last 30 days, all services of the current namespace, as a table:
  payplane report

  # October for the month-end assessment, all namespaces, as a page to open in a browser:
  payplane report -A --since 2026-10-01 --until 2026-11-01 --format html --output delivery-2026-10.html

  # From an export (kubectl get releaseevents -A -o json > events.json), one service, as CSV:
  payplane report --from events.json --service accounting --since 90d --format csv";

const AUDIT_EXAMPLES: &str = "\
Examples:
  # The latest release of accounting in the current namespace:
  payplane audit accounting

  # Release 16, as JSON for the change record:
  payplane audit accounting --release 16 -n payplane --format json > accounting-r16.json";

const HISTORY_EXAMPLES: &str = "\
Examples:
  payplane history accounting -n payplane
  payplane history gateway --from events.json";

/// Where the ReleaseEvents are read from.
#[derive(Args, Debug)]
struct SourceArgs {
    /// Read a JSON export (`kubectl get releaseevents -o json`, or an array) instead of the cluster.
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["namespace", "all_namespaces", "context"])]
    from: Option<std::path::PathBuf>,

    /// Namespace of the Rollouts (default: the kubeconfig context's namespace).
    #[arg(long, short = 'n')]
    namespace: Option<String>,

    /// All namespaces.
    #[arg(long, short = 'A', conflicts_with = "namespace")]
    all_namespaces: bool,

    /// The kubeconfig context to use (default: the current context).
    #[arg(long)]
    context: Option<String>,
}

impl SourceArgs {
    fn source(&self) -> report::source::Source {
        match &self.from {
            Some(path) => report::source::Source::File(path.clone()),
            None => report::source::Source::Cluster {
                context: self.context.clone(),
                namespace: self.namespace.clone(),
                all_namespaces: self.all_namespaces,
            },
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ReportFormat {
    Text,
    Json,
    Csv,
    Html,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum AuditFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// Start of the window: a duration before --until (30d, 2w, 12h) or a time (2026-10-01,
    /// 2026-10-01T00:00:00Z).
    #[arg(long, default_value = "30d", value_parser = report::parse_since)]
    since: report::Since,

    /// End of the window, excluded (default: now). RFC 3339 or a date (midnight UTC).
    #[arg(long, value_parser = report::parse_time)]
    until: Option<chrono::DateTime<chrono::Utc>>,

    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,

    /// Write to this file instead of stdout.
    #[arg(long, short = 'o')]
    output: Option<std::path::PathBuf>,

    /// Only this service (the chart name).
    #[arg(long)]
    service: Option<String>,

    #[command(flatten)]
    source: SourceArgs,
}

#[derive(Args, Debug)]
struct AuditArgs {
    /// The service (chart name).
    service: String,

    /// Release number (the Rollout's revision); default: the latest.
    #[arg(long)]
    release: Option<u64>,

    #[arg(long, value_enum, default_value_t = AuditFormat::Text)]
    format: AuditFormat,

    #[command(flatten)]
    source: SourceArgs,
}

#[derive(Args, Debug)]
struct HistoryArgs {
    /// The service (chart name).
    service: String,

    #[command(flatten)]
    source: SourceArgs,
}

const LOAD_EXAMPLES: &str = "\
Examples:
  # 200 payments as fast as 8 clients can, against the local platform (ci/platform-local up):
  payplane load --count 200

  # 500 payments/s for a minute, mixed currencies and methods, summary as JSON:
  payplane load --gateway 127.0.0.1:50051 --rate 500/s --duration 60s \\
      --currencies CNY,HKD --methods wallet,qr_code --amount 100..50000 --json

  # Closed loop, 64 clients, 20 000 payments, no final-state check:
  GATEWAY_URL=http://gateway.payplane.svc:50051 payplane load -c 64 -n 20000 --check-states 0";

#[derive(Args, Debug)]
struct LoadArgs {
    /// The gateway: host:port, http://host:port, dns:///name:port (re-resolved, every address
    /// gets requests), or a comma-separated list of ip:port.
    #[arg(long, env = "GATEWAY_URL", default_value = "127.0.0.1:50051")]
    gateway: Target,

    /// Fixed rate, e.g. `500/s` or `500` (open loop: sends do not wait for answers).
    #[arg(long, value_parser = parse_rate, conflicts_with = "concurrency")]
    rate: Option<f64>,

    /// Concurrent clients, each sending its next payment once the last one is answered
    /// (the default mode, with 8 clients).
    #[arg(long, short = 'c', value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: Option<u32>,

    /// Stop after this many payments (default 1000 when --duration is not given either).
    #[arg(long, short = 'n')]
    count: Option<u64>,

    /// Stop after this long, e.g. `30s`, `5m`.
    #[arg(long, short = 'd', value_parser = humantime::parse_duration)]
    duration: Option<Duration>,

    /// At most this many calls outstanding in --rate mode.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,

    /// Deadline of each call.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,

    /// Payers are payer-00001 up to this many.
    #[arg(long, default_value_t = 1000)]
    payers: u32,

    /// Merchant ids (default m-001 to m-020; the gateway must know them).
    #[arg(long, value_delimiter = ',')]
    merchants: Vec<String>,

    /// Currencies, ISO 4217.
    #[arg(long, value_delimiter = ',', default_value = "CNY")]
    currencies: Vec<String>,

    /// Payment methods: debit_card, credit_card, qr_code, bank_transfer, wallet.
    #[arg(long, value_delimiter = ',', value_parser = mix::parse_method,
          default_value = "debit_card,credit_card,qr_code,wallet")]
    methods: Vec<PaymentMethod>,

    /// Amount in minor units, fixed (`5000`) or a uniform range (`100..100000`).
    #[arg(long, value_parser = mix::parse_amount_range, default_value = "100..100000")]
    amount: (i64, i64),

    /// Business scenes.
    #[arg(long, value_delimiter = ',', default_value = "ecommerce,in_store")]
    scenes: Vec<String>,

    /// Card BINs for card methods (default UnionPay 62xxxx, Visa and Mastercard ones).
    #[arg(long, value_delimiter = ',')]
    card_bins: Vec<String>,

    /// Read back the final state of up to this many of the created payments (0: skip).
    #[arg(long, default_value_t = 1000)]
    check_states: usize,

    /// How long to wait for payments still PENDING when reading them back.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    settle_timeout: Duration,

    /// Seed of the payment generator, for a reproducible sequence of payments.
    #[arg(long)]
    seed: Option<u64>,

    /// Send a CreatePayment that failed in the transport (UNAVAILABLE, or CANCELLED/INTERNAL
    /// made on the client from a broken connection) again, with the same idempotency key, up
    /// to this many times before counting it as failed; retries are reported (0: never).
    #[arg(long, default_value_t = 3)]
    retries: u32,

    /// Print the summary as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    json: bool,

    /// No progress line.
    #[arg(long)]
    no_progress: bool,
}

/// `500/s`, `500`.
fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.trim().trim_end_matches("/s").trim();
    match n.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!("'{s}' is not a rate like 500/s")),
    }
}

impl LoadArgs {
    fn plan(&self) -> Result<LoadPlan> {
        let defaults = PaymentMix::default();
        let mix = PaymentMix {
            payers: self.payers,
            merchants: if self.merchants.is_empty() {
                defaults.merchants
            } else {
                self.merchants.clone()
            },
            currencies: self.currencies.clone(),
            methods: self.methods.clone(),
            amount_min: self.amount.0,
            amount_max: self.amount.1,
            scenes: self.scenes.clone(),
            card_bins: if self.card_bins.is_empty() {
                defaults.card_bins
            } else {
                self.card_bins.clone()
            },
            key_prefix: defaults.key_prefix,
        };
        mix.check().map_err(anyhow::Error::msg)?;
        let mode = match (self.rate, self.concurrency) {
            (Some(rate), _) => Mode::Rate(rate),
            (None, c) => Mode::Concurrency(c.unwrap_or(8) as usize),
        };
        let count = match (self.count, self.duration) {
            (None, None) => Some(1000),
            (count, _) => count,
        };
        Ok(LoadPlan {
            mode,
            count,
            duration: self.duration,
            max_in_flight: self.max_in_flight,
            timeout: self.timeout,
            mix,
            check_states: self.check_states,
            settle_timeout: self.settle_timeout,
            seed: self.seed,
            retries: self.retries,
        })
    }
}

/// Draws the live line: an indicatif bar on a terminal, a plain line every 5 s otherwise.
async fn progress(live: Live, count: Option<u64>, stop: CancellationToken) {
    let terminal = std::io::stderr().is_terminal();
    let bar = match count {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    bar.set_draw_target(if terminal {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let template = if count.is_some() {
        "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}"
    } else {
        "{spinner} {elapsed_precise} {pos} done {msg}"
    };
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    let tick = Duration::from_millis(250);
    let mut interval = tokio::time::interval(tick);
    // Throughput over the last second: completions at each of the last four ticks.
    let mut recent = std::collections::VecDeque::from([0u64; 4]);
    let mut ticks = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = interval.tick() => {}
        }
        let s = live.snapshot();
        recent.push_back(s.completed);
        let per_second = (s.completed - recent.pop_front().unwrap_or(0)) as f64 / (tick.as_secs_f64() * 4.0);
        let errors = if s.errors.is_empty() {
            String::new()
        } else {
            format!("  errors: {}", join_counts(&s.errors))
        };
        let retries = match s.retry_count() {
            0 => String::new(),
            n => format!("  retries: {n}"),
        };
        let line = format!(
            "{per_second:.0}/s  p50 {:.1} ms  p99 {:.1} ms  ok {}{errors}{retries}",
            s.latency_ms(0.5),
            s.latency_ms(0.99),
            s.ok
        );
        bar.set_position(s.completed);
        ticks += 1;
        if terminal {
            bar.set_message(line);
        } else if ticks.is_multiple_of(20) {
            eprintln!("load: {} sent, {} done, {line}", live.sent(), s.completed);
        }
    }
    bar.finish_and_clear();
}

/// Resolves at the next Ctrl-C or SIGTERM.
async fn stop_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

async fn load(args: LoadArgs) -> Result<ExitCode> {
    let plan = args.plan()?;
    let channel = balance::channel(&args.gateway, &ClientArgs::default(), None)
        .with_context(|| format!("cannot make a channel to {}", args.gateway))?;
    let (live, stop, progress_done) = (
        Live::default(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    // Ctrl-C, or SIGTERM (a load pod being deleted), stops sending; the calls in flight finish,
    // the payments are read back and the summary printed. A second one aborts.
    let signals = {
        let stop = stop.clone();
        tokio::spawn(async move {
            if stop_signal().await.is_ok() {
                eprintln!("stopping: waiting for the calls in flight (Ctrl-C again to abort)");
                stop.cancel();
                if stop_signal().await.is_ok() {
                    std::process::exit(130);
                }
            }
        })
    };
    let drawer =
        (!args.no_progress).then(|| tokio::spawn(progress(live.clone(), plan.count, progress_done.clone())));
    let summary = load::run(channel, &args.gateway.to_string(), &plan, &live, stop).await;
    progress_done.cancel();
    if let Some(d) = drawer {
        let _ = d.await;
    }
    signals.abort();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render());
    }
    if summary.sent > 0 && summary.ok == 0 {
        eprintln!(
            "error: no payment got through to {} (see the errors above)",
            args.gateway
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn report(args: ReportArgs) -> Result<ExitCode> {
    let until = args.until.unwrap_or_else(chrono::Utc::now);
    let since = args.since.resolve(until)?;
    let events = report::source::load(&args.source.source(), args.service.as_deref()).await?;
    let built = report::Report::build(&events, args.service.as_deref(), since, until)?;
    let text = match args.format {
        ReportFormat::Text => built.text(),
        ReportFormat::Json => serde_json::to_string_pretty(&built)? + "\n",
        ReportFormat::Csv => built.csv()?,
        ReportFormat::Html => report::html::render(&built),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit(args: AuditArgs) -> Result<ExitCode> {
    let events = report::source::load(&args.source.source(), Some(&args.service)).await?;
    let trail = report::Audit::build(&events, &args.service, args.release)?;
    match args.format {
        AuditFormat::Text => print!("{}", trail.text()),
        AuditFormat::Json => println!("{}", serde_json::to_string_pretty(&trail)?),
    }
    Ok(ExitCode::SUCCESS)
}

async fn history(args: HistoryArgs) -> Result<ExitCode> {
    let events = report::source::load(&args.source.source(), Some(&args.service)).await?;
    print!("{}", report::history(&events, &args.service)?);
    Ok(ExitCode::SUCCESS)
}

async fn trace(args: TraceArgs) -> Result<ExitCode> {
    let lookup = Lookup::parse(&args.id)?;
    let jaeger = Jaeger::new(&args.jaeger)?;
    let found = trace::find(&jaeger, &lookup).await?;
    let waterfall = Waterfall::build(&found.trace);
    let link = jaeger.ui_link(&waterfall.trace_id);
    if args.json {
        let json = trace::JsonTrace {
            waterfall: &waterfall,
            services: waterfall.services(),
            jaeger_url: link,
            other_trace_ids: &found.other_trace_ids,
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        let width = args
            .width
            .or_else(|| console::Term::stdout().size_checked().map(|(_rows, cols)| cols))
            .map_or(100, usize::from);
        print!(
            "{}",
            trace::render_text(&waterfall, &link, &found.other_trace_ids, width)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The command line as the user typed it: `kubectl payplane …` when run as the kubectl plugin
/// (kubectl runs `kubectl-payplane` from PATH), `payplane …` otherwise.
fn command() -> clap::Command {
    let plugin = std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n == "kubectl-payplane")
        })
        .unwrap_or(false);
    let command = Cli::command();
    if plugin {
        command.bin_name("kubectl payplane")
    } else {
        command
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let matches = command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Load(args) => load(args).await,
        Command::Report(args) => report(args).await,
        Command::Audit(args) => audit(args).await,
        Command::History(args) => history(args).await,
        Command::Release(command) => payplane_cli::rollout::run(command).await,
        Command::Trace(args) => trace(args).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "payplane", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed_and_load_args_make_a_plan() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "payplane",
            "load",
            "--rate",
            "250/s",
            "-d",
            "5s",
            "--merchants",
            "a,b",
        ])
        .unwrap();
        let Command::Load(args) = cli.command else {
            panic!("load")
        };
        let plan = args.plan().unwrap();
        assert_eq!(plan.mode, Mode::Rate(250.0));
        assert_eq!((plan.count, plan.duration), (None, Some(Duration::from_secs(5))));
        assert_eq!(plan.mix.merchants, ["a", "b"]);
        let cli = Cli::try_parse_from(["payplane", "load"]).unwrap();
        let Command::Load(args) = cli.command else {
            panic!("load")
        };
        let plan = args.plan().unwrap();
        assert_eq!((plan.mode, plan.count), (Mode::Concurrency(8), Some(1000)));
        assert!(Cli::try_parse_from(["payplane", "load", "--rate", "5", "-c", "2"]).is_err());
        assert!(Cli::try_parse_from(["payplane", "load", "--rate", "-1/s"]).is_err());
        let cli = Cli::try_parse_from(["payplane", "load", "--amount", "0..5"]).unwrap();
        let Command::Load(args) = cli.command else {
            panic!("load")
        };
        assert!(args.plan().is_err());
    }

    #[test]
    fn trace_parses() {
        let cli = Cli::try_parse_from(["payplane", "trace", "pay-1", "--json", "--width", "80"]).unwrap();
        let Command::Trace(args) = cli.command else {
            panic!("trace")
        };
        assert_eq!(
            (args.id.as_str(), args.json, args.width),
            ("pay-1", true, Some(80))
        );
        assert!(
            Cli::try_parse_from(["payplane", "trace"]).is_err(),
            "the id is required"
        );
        assert!(Cli::try_parse_from(["payplane", "trace", "x", "--width", "5"]).is_err());
    }

    #[test]
    fn report_audit_and_history_parse() {
        let cli =
            Cli::try_parse_from(["payplane", "report", "--since", "7d", "--format", "csv", "-A"]).unwrap();
        let Command::Report(args) = cli.command else {
            panic!("report")
        };
        assert_eq!(args.since, report::Since::Ago(Duration::from_secs(7 * 86_400)));
        assert_eq!(args.format, ReportFormat::Csv);
        assert!(args.source.all_namespaces);
        assert!(Cli::try_parse_from(["payplane", "report", "--from", "x.json", "-n", "a"]).is_err());
        assert!(Cli::try_parse_from(["payplane", "report", "-n", "a", "-A"]).is_err());
        assert!(Cli::try_parse_from(["payplane", "report", "--format", "pdf"]).is_err());
        let cli = Cli::try_parse_from([
            "payplane",
            "audit",
            "accounting",
            "--release",
            "3",
            "--format",
            "json",
        ])
        .unwrap();
        let Command::Audit(args) = cli.command else {
            panic!("audit")
        };
        assert_eq!(
            (args.service.as_str(), args.release, args.format),
            ("accounting", Some(3), AuditFormat::Json)
        );
        assert!(
            Cli::try_parse_from(["payplane", "history"]).is_err(),
            "the service is required"
        );
    }

    #[test]
    fn every_command_explains_itself_with_an_example() {
        let mut cli = Cli::command();
        let names: Vec<String> = cli.get_subcommands().map(|c| c.get_name().to_owned()).collect();
        for verb in [
            "load",
            "report",
            "audit",
            "history",
            "release",
            "status",
            "watch",
            "promote",
            "abort",
            "retry",
            "pause",
            "resume",
            "undo",
            "approve",
            "trace",
            "completions",
        ] {
            assert!(
                names.iter().any(|n| n == verb),
                "`payplane {verb}` exists: {names:?}"
            );
        }
        for name in names {
            let sub = cli.find_subcommand_mut(&name).unwrap();
            assert!(sub.get_about().is_some(), "{name} has a one-line description");
            let help = sub.render_long_help().to_string();
            assert!(help.contains("Example"), "{name} --help has an example:\n{help}");
        }
    }

    #[test]
    fn as_a_kubectl_plugin_the_usage_says_kubectl_payplane() {
        let mut plugin = Cli::command().bin_name("kubectl payplane");
        assert!(plugin.render_usage().to_string().contains("kubectl payplane"));
        let cli = Cli::try_parse_from([
            "kubectl-payplane",
            "promote",
            "accounting",
            "-n",
            "prod",
            "--full",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::Release(_)));
    }
}
