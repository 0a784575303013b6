//! Client channels that balance per request over every address of a target.
//!
//! gRPC keeps one long-lived HTTP/2 connection per peer, so balancing connections (as a
//! ClusterIP Service does) does not balance requests. Here the channel holds a connection to
//! every address the target resolves to and picks one per request (tower's power-of-two-choices
//! over pending requests, via [`Channel::balance_channel`]). A background task re-resolves the
//! target (for Kubernetes, a headless Service name) every `resolve_interval` and adds or
//! removes endpoints, so that each ready pod gets an equal share of requests.

use std::{
    collections::HashSet,
    fmt,
    future::Future,
    net::SocketAddr,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use clap::Args;
use tokio::sync::mpsc::Sender;
use tonic::transport::{Channel, Endpoint, channel::Change};
use tower::Layer;

use crate::{
    config::parse_duration,
    error::{Error, Result},
    grpc_tracing::{ClientTrace, ClientTraceLayer},
};

/// A balanced channel with client tracing: hand it to any generated client,
/// e.g. `RoutingServiceClient::new(channel)`.
pub type BalancedChannel = ClientTrace<Channel>;

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
}

impl Default for ClientArgs {
    fn default() -> Self {
        Self {
            client_resolve_interval: Duration::from_secs(5),
            client_connect_timeout: Duration::from_secs(2),
            client_default_deadline: Duration::from_secs(10),
            client_keepalive_interval: Duration::from_secs(10),
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
}

/// A balanced, traced channel to `target`. `service_version` goes on client spans. Must be
/// called within a Tokio runtime; the re-resolution task ends when the channel is dropped.
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
    tokio::spawn(discover(resolver, changes, args.clone()));
    Ok(ClientTraceLayer::new(service_version).layer(channel))
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

async fn discover<R: Resolve>(resolver: R, changes: Sender<Change<SocketAddr, Endpoint>>, args: ClientArgs) {
    let mut current: HashSet<SocketAddr> = HashSet::new();
    let mut tick = tokio::time::interval(args.client_resolve_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = changes.closed() => return,
            _ = tick.tick() => {}
        }
        let resolved: HashSet<SocketAddr> = match resolver.resolve().await {
            Ok(addrs) if !addrs.is_empty() => addrs.into_iter().collect(),
            // A failed or empty lookup is more often DNS trouble than every peer gone: keep
            // the endpoints we have (calls to dead ones fail fast) rather than drop them all.
            Ok(_) => {
                tracing::warn!("upstream resolved to no addresses; keeping the current ones");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot resolve upstream; keeping the current addresses");
                continue;
            }
        };
        for gone in current.difference(&resolved) {
            tracing::info!(addr = %gone, "upstream address removed");
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
            tracing::info!(addr = %new, "upstream address added");
            if changes.send(Change::Insert(*new, endpoint)).await.is_err() {
                return;
            }
        }
        current = resolved;
    }
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
}
