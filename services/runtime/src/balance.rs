//! Client channels that balance per request over the healthy addresses of a target.
//!
//! gRPC keeps one long-lived HTTP/2 connection per peer, so balancing connections (as a
//! ClusterIP Service does) does not balance requests. Here the channel holds a connection to
//! every address the target resolves to and picks one per request (tower's power-of-two-choices
//! over pending requests, via [`Channel::balance_channel`]). A background task re-resolves the
//! target (for Kubernetes, a headless Service name) every `resolve_interval`, so that each
//! ready pod gets an equal share of requests.
//!
//! DNS alone is slow to drop a pod: the cluster DNS caches answers for up to 30 s. So, with
//! `CLIENT_HEALTH_CHECK` on (the default), every resolved address also gets a health watcher: a small
//! connection of its own with a `grpc.health.v1.Health/Watch` stream for service `""` (polling
//! `Check` every second where Watch is UNIMPLEMENTED, and while the address is not serving; a
//! server with no health service at all counts as healthy, as for gRPC's own clients).
//! An address is in the balancer only while it reports SERVING: it is added as soon as it
//! does (not at the next re-resolution), and removed as soon as it reports anything else or its
//! watch breaks (then reconnected with backoff). Our servers report NOT_SERVING when shutdown
//! begins, so a pod stops getting calls within moments of being told to stop, whatever DNS
//! still says. An address that leaves DNS loses its watcher; a failed or empty lookup keeps
//! the addresses there are.
//!
//! Calls that fail in a way proving the server never saw them (put on a connection in the
//! moment its server's GOAWAY was arriving, e.g. at the maximum connection age) are sent again
//! at once on another connection, whatever their method: see [`crate::retry`].
//!
//! When no address is healthy (or none was ever resolved), calls fail at once with UNAVAILABLE
//! naming the target rather than wait. A call made while the channel's first health answers
//! are still coming in waits for them (within its deadline); a call that got into the balancer
//! just as its last address went away fails at its deadline, with UNAVAILABLE if no address has
//! come back by then.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    str::FromStr,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use clap::{ArgAction, Args, builder::BoolishValueParser};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tonic::{
    Status,
    body::Body,
    transport::{Channel, Endpoint, channel::Change},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tower::{Layer, Service, retry::Retry};

use crate::{
    config::parse_duration,
    error::{Error, Result},
    grpc_tracing::{ClientTrace, ClientTraceLayer},
    observe::code_name,
    retry::{Replayable, TransparentRetry},
};

/// A balanced channel with client tracing: hand it to any generated client,
/// e.g. `RoutingServiceClient::new(channel)`.
pub type BalancedChannel = ClientTrace<HealthGate>;

/// Client settings shared by a service's outgoing channels.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// How often upstream names are re-resolved.
    #[arg(long, env = "CLIENT_RESOLVE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub client_resolve_interval: Duration,

    /// Timeout for establishing a connection to one upstream address.
    #[arg(long, env = "CLIENT_CONNECT_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub client_connect_timeout: Duration,

    /// Deadline for a call that sets none of its own (`Request::set_timeout` sets a shorter one).
    #[arg(long, env = "CLIENT_DEFAULT_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub client_default_deadline: Duration,

    /// Interval of HTTP/2 keepalive pings on client connections.
    #[arg(long, env = "CLIENT_KEEPALIVE_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub client_keepalive_interval: Duration,

    /// Watch each upstream address's `grpc.health.v1` status and send calls only to addresses
    /// that report SERVING. Off: every resolved address gets calls until DNS drops it, which
    /// on Kubernetes keeps a rolled-back canary pod getting calls for up to the DNS cache's 30 s.
    /// (The few CANCELLED/INTERNAL calls once seen with it on were calls racing a server's
    /// GOAWAY, with it off too; the channel now sends those again, see [`crate::retry`].)
    #[arg(long, env = "CLIENT_HEALTH_CHECK", default_value_t = true, action = ArgAction::Set,
          value_parser = BoolishValueParser::new())]
    pub client_health_check: bool,
}

impl Default for ClientArgs {
    fn default() -> Self {
        Self {
            client_resolve_interval: Duration::from_secs(5),
            client_connect_timeout: Duration::from_secs(2),
            client_default_deadline: Duration::from_secs(10),
            client_keepalive_interval: Duration::from_secs(10),
            client_health_check: true,
        }
    }
}

/// Where a channel sends requests: a DNS name with a port (re-resolved), or fixed addresses.
///
/// Parsed from `host:port`, `dns:///host:port`, `http://host:port`, or a comma-separated list
/// of `ip:port` (`127.0.0.1:5001,127.0.0.2:5001`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Dns { host: String, port: u16 },
    Static(Vec<SocketAddr>),
}

impl FromStr for Target {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidTarget {
            target: s.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = s.trim();
        if trimmed.contains(',') || trimmed.parse::<SocketAddr>().is_ok() {
            let addrs = trimmed
                .split(',')
                .map(|a| a.trim().parse::<SocketAddr>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| invalid("expected a comma-separated list of ip:port"))?;
            return Ok(Target::Static(addrs));
        }
        let rest = ["dns:///", "http://"]
            .iter()
            .find_map(|p| trimmed.strip_prefix(p))
            .unwrap_or(trimmed);
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected host:port"))?;
        let port = port.parse::<u16>().map_err(|_| invalid("invalid port"))?;
        if host.is_empty() || host.contains(['/', ' ', '@']) {
            return Err(invalid("invalid host name"));
        }
        Ok(Target::Dns {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Dns { host, port } => write!(f, "{host}:{port}"),
            Target::Static(addrs) => {
                let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                f.write_str(&list.join(","))
            }
        }
    }
}

/// Source of the current set of addresses; [`Target`] resolves through the system resolver
/// (so `/etc/hosts` and the Kubernetes search domains apply). Implement it to steer a
/// channel yourself.
pub trait Resolve: Send + Sync + 'static {
    fn resolve(&self) -> impl Future<Output = std::io::Result<Vec<SocketAddr>>> + Send;

    /// What the addresses are of, for logs and errors (e.g. `routing-headless:50051`).
    fn name(&self) -> String {
        "upstream".to_owned()
    }
}

impl Resolve for Target {
    async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        match self {
            Target::Static(addrs) => Ok(addrs.clone()),
            Target::Dns { host, port } => {
                Ok(tokio::net::lookup_host((host.as_str(), *port)).await?.collect())
            }
        }
    }

    fn name(&self) -> String {
        self.to_string()
    }
}

/// A resolver whose addresses are set in code: tests, or discovery from another source.
#[derive(Clone, Debug, Default)]
pub struct StaticResolver(Arc<Mutex<Vec<SocketAddr>>>);

impl StaticResolver {
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self(Arc::new(Mutex::new(addrs.into_iter().collect())))
    }

    /// Replaces the addresses; channels pick the change up at their next re-resolution.
    pub fn set(&self, addrs: impl IntoIterator<Item = SocketAddr>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = addrs.into_iter().collect();
    }
}

impl Resolve for StaticResolver {
    async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        Ok(self.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// The current addresses, comma-separated.
    fn name(&self) -> String {
        let addrs = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Target::Static(addrs).to_string()
    }
}

/// A balanced, traced channel to `target`. `service_version` goes on client spans. Must be
/// called within a Tokio runtime; the re-resolution task (and the health watchers) end when
/// the channel is dropped.
pub fn channel(target: &Target, args: &ClientArgs, service_version: Option<&str>) -> Result<BalancedChannel> {
    channel_with_resolver(target.clone(), args, service_version)
}

/// [`channel`] over any [`Resolve`].
pub fn channel_with_resolver<R: Resolve>(
    resolver: R,
    args: &ClientArgs,
    service_version: Option<&str>,
) -> Result<BalancedChannel> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(Error::NoRuntime("balance::channel"));
    }
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    let target: Arc<str> = resolver.name().into();
    let availability = if args.client_health_check {
        let (availability, watched) = watch::channel(Availability::Starting);
        tokio::spawn(discover_healthy(resolver, changes, args.clone(), availability));
        Some(watched)
    } else {
        tokio::spawn(discover(resolver, changes, args.clone()));
        None
    };
    let gate = HealthGate {
        inner: Replayable::new(
            Retry::new(TransparentRetry::default(), channel),
            args.client_default_deadline,
        ),
        availability,
        target,
        default_deadline: args.client_default_deadline,
    };
    Ok(ClientTraceLayer::new(service_version).layer(gate))
}

fn endpoint(addr: SocketAddr, args: &ClientArgs) -> Result<Endpoint> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|source| Error::Endpoint { addr, source })?
        .connect_timeout(args.client_connect_timeout)
        .timeout(args.client_default_deadline)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(args.client_keepalive_interval)
        .keep_alive_while_idle(true);
    Ok(endpoint)
}

/// The addresses of one lookup; an error (logged) when it failed or came back empty, in which
/// case the caller keeps the addresses it has: that is more often DNS trouble than every peer
/// gone, and calls to dead ones fail fast.
async fn lookup<R: Resolve>(resolver: &R) -> Result<HashSet<SocketAddr>, String> {
    match resolver.resolve().await {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs.into_iter().collect()),
        Ok(_) => {
            tracing::warn!(target_name = %resolver.name(),
                "upstream resolved to no addresses; keeping the current ones");
            Err("resolved to no addresses".to_owned())
        }
        Err(e) => {
            tracing::warn!(target_name = %resolver.name(), error = %e,
                "cannot resolve upstream; keeping the current addresses");
            Err(format!("cannot resolve: {e}"))
        }
    }
}

/// Discovery without health checking: every resolved address is in the balancer.
async fn discover<R: Resolve>(
    resolver: R,
    changes: mpsc::Sender<Change<SocketAddr, Endpoint>>,
    args: ClientArgs,
) {
    let mut current: HashSet<SocketAddr> = HashSet::new();
    let mut tick = tokio::time::interval(args.client_resolve_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = changes.closed() => return,
            _ = tick.tick() => {}
        }
        let Ok(resolved) = lookup(&resolver).await else {
            continue;
        };
        for gone in current.difference(&resolved) {
            tracing::info!(addr = %gone, reason = "no longer resolved", "upstream address removed");
            if changes.send(Change::Remove(*gone)).await.is_err() {
                return;
            }
        }
        for new in resolved.difference(&current) {
            let endpoint = match endpoint(*new, &args) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping upstream address");
                    continue;
                }
            };
            tracing::info!(addr = %new, reason = "resolved", "upstream address added");
            if changes.send(Change::Insert(*new, endpoint)).await.is_err() {
                return;
            }
        }
        current = resolved;
    }
}

/// Whether a health-checked channel has an address to send calls to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Availability {
    /// The first lookup or the first health answers are still outstanding.
    Starting,
    /// At least one address is in the balancer.
    Ready,
    /// No address is: the message says why (it names the target).
    Unavailable(String),
}

/// What a health watcher last learnt about its address.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Health {
    Serving,
    /// Not serving, unknown, or unreachable: the reason, for logs and errors.
    Unhealthy(String),
}

/// A health watcher's news about `addr`; `watcher` tells a replaced watcher's late news apart.
struct Report {
    addr: SocketAddr,
    watcher: u64,
    health: Health,
}

/// A resolved address, its watcher (aborted on drop) and what the balancer knows of it.
struct Upstream {
    watcher: u64,
    task: tokio::task::AbortHandle,
    health: Option<Health>,
    in_balancer: bool,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long a health answer (connecting included) may take before the address counts as
/// unhealthy.
fn health_answer_timeout(args: &ClientArgs) -> Duration {
    args.client_connect_timeout + Duration::from_secs(1)
}

/// Discovery with health checking: resolved addresses are watched, and only those reporting
/// SERVING are in the balancer. Publishes whether any is, for [`HealthGate`].
async fn discover_healthy<R: Resolve>(
    resolver: R,
    changes: mpsc::Sender<Change<SocketAddr, Endpoint>>,
    args: ClientArgs,
    availability: watch::Sender<Availability>,
) {
    let (reports_tx, mut reports) = mpsc::unbounded_channel::<Report>();
    let mut upstreams: HashMap<SocketAddr, Upstream> = HashMap::new();
    let mut next_watcher: u64 = 0;
    let mut lookup_error: Option<String> = None;
    // Until every address has answered once (or this passes), calls wait rather than fail.
    let mut starting_until: Option<Instant> = None;
    let mut started = false;
    let mut tick = tokio::time::interval(args.client_resolve_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let start_backstop = async {
            match starting_until {
                Some(at) if !started => tokio::time::sleep_until(at).await,
                _ => std::future::pending().await,
            }
        };
        let mut change = None;
        tokio::select! {
            () = changes.closed() => return,
            _ = tick.tick() => {
                match lookup(&resolver).await {
                    Ok(resolved) => {
                        lookup_error = None;
                        let gone: Vec<SocketAddr> =
                            upstreams.keys().filter(|a| !resolved.contains(a)).copied().collect();
                        for addr in gone {
                            if let Some(upstream) = upstreams.remove(&addr)
                                && upstream.in_balancer
                            {
                                tracing::info!(target_name = %resolver.name(), %addr,
                                    reason = "no longer resolved", "upstream address removed");
                                if changes.send(Change::Remove(addr)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        for addr in resolved {
                            if upstreams.contains_key(&addr) {
                                continue;
                            }
                            next_watcher += 1;
                            let task = tokio::spawn(watch_health(
                                addr,
                                next_watcher,
                                args.clone(),
                                reports_tx.clone(),
                            ));
                            upstreams.insert(addr, Upstream {
                                watcher: next_watcher,
                                task: task.abort_handle(),
                                health: None,
                                in_balancer: false,
                            });
                        }
                    }
                    Err(reason) => lookup_error = Some(reason),
                }
                if starting_until.is_none() {
                    starting_until = Some(Instant::now() + health_answer_timeout(&args) + Duration::from_secs(1));
                }
            }
            Some(report) = reports.recv() => {
                if let Some(upstream) = upstreams.get_mut(&report.addr)
                    && upstream.watcher == report.watcher
                {
                    tracing::debug!(target_name = %resolver.name(), addr = %report.addr,
                        health = ?report.health, "upstream health");
                    match (&report.health, upstream.in_balancer) {
                        (Health::Serving, false) => change = Some(report.addr),
                        (Health::Unhealthy(_), true) => change = Some(report.addr),
                        _ => {}
                    }
                    upstream.health = Some(report.health);
                }
            }
            () = start_backstop => started = true,
        }
        if let Some(addr) = change
            && let Some(upstream) = upstreams.get_mut(&addr)
        {
            let name = resolver.name();
            let sent = match &upstream.health {
                Some(Health::Serving) => match endpoint(addr, &args) {
                    Ok(endpoint) => {
                        tracing::info!(target_name = %name, %addr, reason = "health check reports SERVING",
                            "upstream address added");
                        upstream.in_balancer = true;
                        changes.send(Change::Insert(addr, endpoint)).await
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "skipping upstream address");
                        Ok(())
                    }
                },
                Some(Health::Unhealthy(reason)) => {
                    tracing::info!(target_name = %name, %addr, reason = %reason, "upstream address removed");
                    upstream.in_balancer = false;
                    changes.send(Change::Remove(addr)).await
                }
                None => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
        if !started && starting_until.is_some() && upstreams.values().all(|u| u.health.is_some()) {
            started = true;
        }
        if started {
            let now = current_availability(&resolver.name(), &upstreams, lookup_error.as_deref());
            availability.send_if_modified(|a| {
                let modified = *a != now;
                *a = now;
                modified
            });
        }
    }
}

fn current_availability(
    name: &str,
    upstreams: &HashMap<SocketAddr, Upstream>,
    lookup_error: Option<&str>,
) -> Availability {
    if upstreams.values().any(|u| u.in_balancer) {
        return Availability::Ready;
    }
    if upstreams.is_empty() {
        let why = lookup_error.unwrap_or("resolved to no addresses");
        return Availability::Unavailable(format!("no address for {name}: {why}"));
    }
    let mut reasons: Vec<String> = upstreams
        .iter()
        .map(|(addr, u)| match &u.health {
            Some(Health::Unhealthy(reason)) => format!("{addr}: {reason}"),
            Some(Health::Serving) | None => format!("{addr}: no health answer yet"),
        })
        .collect();
    reasons.sort();
    let shown = reasons.len().min(3);
    let more = if reasons.len() > shown {
        format!("; and {} more", reasons.len() - shown)
    } else {
        String::new()
    };
    Availability::Unavailable(format!(
        "no healthy address for {name} ({}{more})",
        reasons[..shown].join("; ")
    ))
}

/// Tells the discovery task about one address, once per change.
struct Reporter {
    addr: SocketAddr,
    watcher: u64,
    last: Option<Health>,
    reports: mpsc::UnboundedSender<Report>,
}

impl Reporter {
    /// False once the discovery task is gone.
    fn report(&mut self, health: Health) -> bool {
        if self.last.as_ref() == Some(&health) {
            return true;
        }
        self.last = Some(health.clone());
        self.reports
            .send(Report {
                addr: self.addr,
                watcher: self.watcher,
                health,
            })
            .is_ok()
    }
}

const HEALTH_POLL_INTERVAL: Duration = Duration::from_secs(1);
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How a Watch stream ended.
enum WatchEnd {
    /// The server has no Watch: poll Check instead.
    Unimplemented,
    /// The address reported something other than SERVING (reported already).
    NotServing,
    /// The call or stream failed; `served` if it had reported SERVING first.
    Broken { reason: String, served: bool },
    /// The discovery task is gone.
    Closed,
}

/// Watches one address's health on its own connection until aborted.
async fn watch_health(
    addr: SocketAddr,
    watcher: u64,
    args: ClientArgs,
    reports: mpsc::UnboundedSender<Report>,
) {
    let mut reporter = Reporter {
        addr,
        watcher,
        last: None,
        reports,
    };
    let endpoint = match endpoint(addr, &args) {
        Ok(e) => e,
        Err(e) => {
            reporter.report(Health::Unhealthy(e.to_string()));
            return;
        }
    };
    let timeout = health_answer_timeout(&args);
    let mut client = HealthClient::new(endpoint.connect_lazy());
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        match watch_once(&mut client, &mut reporter, timeout).await {
            WatchEnd::Closed => return,
            // A Watch stream held open on a server that is shutting down would keep its
            // connection, and so its drain, going until the drain timeout: poll instead.
            WatchEnd::NotServing => {
                if !poll_health(&mut client, &mut reporter, timeout, true).await {
                    return;
                }
                backoff = RECONNECT_BACKOFF_MIN;
            }
            WatchEnd::Unimplemented => {
                poll_health(&mut client, &mut reporter, timeout, false).await;
                return;
            }
            WatchEnd::Broken { reason, served } => {
                if !reporter.report(Health::Unhealthy(reason)) {
                    return;
                }
                if served {
                    backoff = RECONNECT_BACKOFF_MIN;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
            }
        }
    }
}

fn health_request() -> HealthCheckRequest {
    HealthCheckRequest {
        service: String::new(),
    }
}

/// One Watch call: reports SERVING as it comes, returns at anything else.
async fn watch_once(
    client: &mut HealthClient<Channel>,
    reporter: &mut Reporter,
    timeout: Duration,
) -> WatchEnd {
    let broken = |reason: String, served| WatchEnd::Broken { reason, served };
    let mut stream = match tokio::time::timeout(timeout, client.watch(health_request())).await {
        Err(_) => return broken(format!("no answer to health Watch within {timeout:?}"), false),
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => return WatchEnd::Unimplemented,
        Ok(Err(status)) => return broken(format!("health Watch failed: {}", describe(&status)), false),
        Ok(Ok(response)) => response.into_inner(),
    };
    let mut served = false;
    loop {
        // The server sends the current status at once, then each change.
        let next = if served {
            Ok(stream.message().await)
        } else {
            tokio::time::timeout(timeout, stream.message()).await
        };
        let health = match next {
            Err(_) => return broken(format!("no health status within {timeout:?}"), served),
            Ok(Ok(Some(response))) => health_of(response.status),
            Ok(Ok(None)) => return broken("health Watch stream ended".to_owned(), served),
            Ok(Err(status)) => {
                return broken(
                    format!("health Watch stream broke: {}", describe(&status)),
                    served,
                );
            }
        };
        let serving = health == Health::Serving;
        if !reporter.report(health) {
            return WatchEnd::Closed;
        }
        if !serving {
            return WatchEnd::NotServing;
        }
        served = true;
    }
}

/// Polls Check every second and reports each answer; returns true at the first SERVING if
/// `until_serving`, false when the discovery task is gone.
async fn poll_health(
    client: &mut HealthClient<Channel>,
    reporter: &mut Reporter,
    timeout: Duration,
    until_serving: bool,
) -> bool {
    let mut tick = tokio::time::interval(HEALTH_POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut warned = false;
    loop {
        let health = match tokio::time::timeout(timeout, client.check(health_request())).await {
            Err(_) => Health::Unhealthy(format!("no answer to health Check within {timeout:?}")),
            Ok(Ok(response)) => health_of(response.into_inner().status),
            // No health service at all: as gRPC clients do, take the server as healthy.
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
                if !warned {
                    tracing::warn!(addr = %reporter.addr,
                        "upstream has no grpc.health.v1 service; treating it as healthy");
                    warned = true;
                }
                Health::Serving
            }
            Ok(Err(status)) if status.code() == tonic::Code::NotFound => {
                Health::Unhealthy("SERVICE_UNKNOWN".to_owned())
            }
            Ok(Err(status)) => Health::Unhealthy(format!("health Check failed: {}", describe(&status))),
        };
        let serving = health == Health::Serving;
        if !reporter.report(health) {
            return false;
        }
        if serving && until_serving {
            return true;
        }
        tick.tick().await;
    }
}

fn health_of(status: i32) -> Health {
    match ServingStatus::try_from(status) {
        Ok(ServingStatus::Serving) => Health::Serving,
        Ok(other) => Health::Unhealthy(other.as_str_name().to_owned()),
        Err(_) => Health::Unhealthy(format!("unknown health status {status}")),
    }
}

/// `CODE: message: source: source…`, for logs.
fn describe(status: &Status) -> String {
    let mut out = format!("{}: {}", code_name(status.code()), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        out.push_str(&format!(": {e}"));
        source = e.source();
    }
    out
}

/// The channel under [`BalancedChannel`]: with health checking on, it fails calls at once with
/// UNAVAILABLE (naming the target) while no address is healthy, and bounds a call's wait for
/// an address by its deadline; with it off, it passes calls straight through.
#[derive(Clone, Debug)]
pub struct HealthGate {
    inner: Transport,
    availability: Option<watch::Receiver<Availability>>,
    target: Arc<str>,
    default_deadline: Duration,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The balancing channel, sending again the calls it can prove the server never saw.
type Transport = Replayable<Retry<TransparentRetry, Channel>>;

impl Service<http::Request<Body>> for HealthGate {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let Some(mut availability) = self.availability.clone() else {
            return Box::pin(self.inner.call(request));
        };
        // Call the instance that was polled ready; leave a fresh clone behind.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let deadline = call_deadline(request.headers(), self.default_deadline);
        let target = self.target.clone();
        Box::pin(async move {
            let call = async {
                let now = availability
                    .wait_for(|a| *a != Availability::Starting)
                    .await
                    .map(|a| a.clone());
                if let Ok(Availability::Unavailable(why)) = now {
                    return Ok(Status::unavailable(why).into_http());
                }
                inner.call(request).await
            };
            match tokio::time::timeout(deadline, call).await {
                Ok(result) => result,
                Err(_) => {
                    let status = match &*availability.borrow() {
                        Availability::Unavailable(why) => Status::unavailable(why.clone()),
                        Availability::Starting => {
                            Status::unavailable(format!("no health answer yet from any address of {target}"))
                        }
                        Availability::Ready => Status::deadline_exceeded(format!(
                            "deadline of {deadline:?} exceeded waiting for {target}"
                        )),
                    };
                    Ok(status.into_http())
                }
            }
        })
    }
}

/// The call's `grpc-timeout`, capped at the default deadline.
pub(crate) fn call_deadline(headers: &http::HeaderMap, default: Duration) -> Duration {
    headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(default, |d| d.min(default))
}

/// `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        let dns = |h: &str, p| Target::Dns {
            host: h.to_owned(),
            port: p,
        };
        assert_eq!(
            "routing:50051".parse::<Target>().ok(),
            Some(dns("routing", 50051))
        );
        assert_eq!(
            "dns:///routing.payplane.svc:50051".parse::<Target>().ok(),
            Some(dns("routing.payplane.svc", 50051))
        );
        assert_eq!(
            "http://localhost:1".parse::<Target>().ok(),
            Some(dns("localhost", 1))
        );
        let two: Vec<SocketAddr> = vec!["127.0.0.1:1".parse().unwrap(), "127.0.0.2:2".parse().unwrap()];
        assert_eq!(
            "127.0.0.1:1, 127.0.0.2:2".parse::<Target>().ok(),
            Some(Target::Static(two))
        );
        assert!("routing".parse::<Target>().is_err());
        assert!("routing:http".parse::<Target>().is_err());
        assert!("127.0.0.1:1,nope".parse::<Target>().is_err());
    }

    #[test]
    fn parses_grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("200m"), Some(Duration::from_millis(200)));
        assert_eq!(parse_grpc_timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_grpc_timeout("123456789m"), None, "more than 8 digits");
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout("10x"), None);
        assert_eq!(parse_grpc_timeout("-1S"), None);
        let mut headers = http::HeaderMap::new();
        let ten = Duration::from_secs(10);
        assert_eq!(call_deadline(&headers, ten), ten);
        headers.insert("grpc-timeout", http::HeaderValue::from_static("250m"));
        assert_eq!(call_deadline(&headers, ten), Duration::from_millis(250));
        headers.insert("grpc-timeout", http::HeaderValue::from_static("60S"));
        assert_eq!(call_deadline(&headers, ten), ten, "capped at the default");
    }
}
