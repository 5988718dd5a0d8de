//! gRPC clients to peer services. One [`PeerChannel`] per peer:
//! - balances calls across every address the peer's host name resolves to, and
//!   re-resolves periodically, so behind a headless Kubernetes Service each call can go
//!   to another pod and a scaled Deployment takes load at once;
//! - bounds connect time and every call's deadline (sent as `grpc-timeout` too);
//! - carries the caller's W3C trace context and a short-lived service token.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use tokio::sync::mpsc::Sender;
use tonic::transport::channel::Change;
use tonic::{
    body::Body,
    transport::{Channel, Endpoint},
};

use crate::{
    auth::{Role, TokenKeys, unix_now},
    config::CommonConfig,
    telemetry,
};

/// Most addresses one peer is balanced over; more are ignored (and logged).
const ENDPOINTS_MAX: usize = 64;
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Lifetime of the service token a client presents; re-minted before it runs out.
const SERVICE_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);
const SERVICE_TOKEN_REFRESH_BEFORE_SECONDS: u64 = 60;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// Deadline of each call unless the request carries a shorter one.
    pub call_timeout: Duration,
    /// How often the peer's host name is resolved again.
    pub dns_refresh: Duration,
    /// The calling service's name, the token's subject.
    pub caller: String,
    /// Key to mint the caller's service tokens with (the shared `AUTH_JWT_SECRET`).
    pub token_keys: Option<TokenKeys>,
}

impl ClientOptions {
    /// Options for a service calling its peers with its own service token.
    pub fn for_service(config: &CommonConfig) -> Self {
        Self::new(config.identity.name, TokenKeys::from_config(config))
    }

    pub fn new(caller: &str, token_keys: TokenKeys) -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(5),
            dns_refresh: Duration::from_secs(5),
            caller: caller.to_owned(),
            token_keys: Some(token_keys),
        }
    }
}

/// A balanced, deadline-bounded, traced and authenticated channel to one peer.
/// Wrap it in a generated client: `LedgerServiceClient::new(peer_channel)`.
#[derive(Clone)]
pub struct PeerChannel {
    channel: Channel,
    call_timeout: Duration,
    grpc_timeout: http::HeaderValue,
    token: Option<Arc<ServiceToken>>,
}

impl std::fmt::Debug for PeerChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerChannel")
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

struct ServiceToken {
    keys: TokenKeys,
    subject: String,
    cached: Mutex<Option<(http::HeaderValue, u64)>>,
}

impl ServiceToken {
    fn header(&self) -> Option<http::HeaderValue> {
        let now = unix_now();
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some((value, expires_at)) = cached.as_ref()
            && expires_at.saturating_sub(now) > SERVICE_TOKEN_REFRESH_BEFORE_SECONDS
        {
            return Some(value.clone());
        }
        let token = self
            .keys
            .mint(&self.subject, Role::Service, None, SERVICE_TOKEN_TTL)
            .map_err(|err| tracing::error!(%err, "cannot mint service token"))
            .ok()?;
        let value = http::HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
        *cached = Some((value.clone(), now + SERVICE_TOKEN_TTL.as_secs()));
        Some(value)
    }
}

/// Opens a channel to `url` (`http://host:port`). Connections are made lazily, so a
/// peer that is down at start-up does not stop this service from starting.
pub fn connect(url: &str, options: &ClientOptions) -> anyhow::Result<PeerChannel> {
    connect_with_resolver(url, options, system_resolver)
}

/// Resolves a host name to socket addresses; the system resolver in production.
pub type Resolver = fn(String, u16) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>;

fn system_resolver(
    host: String,
    port: u16,
) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
    Box::pin(async move {
        tokio::net::lookup_host((host.as_str(), port))
            .await
            .map(|addrs| addrs.collect())
    })
}

/// [`connect`] with another resolver: lets tests stand in for a DNS server that
/// answers with several pods' addresses, and change its answer.
pub fn connect_with_resolver(
    url: &str,
    options: &ClientOptions,
    resolver: Resolver,
) -> anyhow::Result<PeerChannel> {
    let uri: http::Uri = url.parse()?;
    let scheme = uri.scheme_str().unwrap_or("http").to_owned();
    let host = uri
        .host()
        .ok_or_else(|| anyhow::anyhow!("{url} has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(ENDPOINTS_MAX);
    tokio::spawn(resolve_forever(
        host,
        port,
        scheme,
        options.clone(),
        resolver,
        changes,
    ));
    let timeout_ms = options.call_timeout.as_millis().clamp(1, 99_999_999);
    Ok(PeerChannel {
        channel,
        call_timeout: options.call_timeout,
        grpc_timeout: http::HeaderValue::from_str(&format!("{timeout_ms}m"))?,
        token: options.token_keys.clone().map(|keys| {
            Arc::new(ServiceToken {
                keys,
                subject: options.caller.clone(),
                cached: Mutex::new(None),
            })
        }),
    })
}

/// Keeps the balancer's endpoint set equal to what `host` resolves to. Ends when the
/// channel is dropped.
async fn resolve_forever(
    host: String,
    port: u16,
    scheme: String,
    options: ClientOptions,
    resolver: Resolver,
    changes: Sender<Change<SocketAddr, Endpoint>>,
) {
    let mut current: HashSet<SocketAddr> = HashSet::new();
    while !changes.is_closed() {
        match tokio::time::timeout(RESOLVE_TIMEOUT, resolver(host.clone(), port)).await {
            Ok(Ok(addrs)) => {
                if addrs.len() > ENDPOINTS_MAX {
                    tracing::warn!(%host, resolved = addrs.len(), "too many peer addresses; using the first {ENDPOINTS_MAX}");
                }
                let fresh: HashSet<SocketAddr> = addrs.into_iter().take(ENDPOINTS_MAX).collect();
                for gone in current.difference(&fresh) {
                    if changes.send(Change::Remove(*gone)).await.is_err() {
                        return;
                    }
                }
                for added in fresh.difference(&current) {
                    let endpoint = match endpoint(&scheme, *added, &options) {
                        Ok(endpoint) => endpoint,
                        Err(err) => {
                            tracing::warn!(%err, %added, "bad endpoint");
                            continue;
                        }
                    };
                    if changes
                        .send(Change::Insert(*added, endpoint))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if fresh != current {
                    tracing::debug!(%host, endpoints = fresh.len(), "peer endpoints changed");
                }
                current = fresh;
            }
            Ok(Err(err)) => {
                tracing::warn!(%host, %err, "cannot resolve peer; keeping last endpoints")
            }
            Err(_) => tracing::warn!(%host, "resolving peer timed out; keeping last endpoints"),
        }
        tokio::time::sleep(options.dns_refresh).await;
    }
}

fn endpoint(scheme: &str, addr: SocketAddr, options: &ClientOptions) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(format!("{scheme}://{addr}"))?
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true))
}

impl tower_service::Service<http::Request<Body>> for PeerChannel {
    type Response = http::Response<Body>;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower_service::Service::poll_ready(&mut self.channel, cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let headers = request.headers_mut();
        telemetry::inject(headers);
        if !headers.contains_key("grpc-timeout") {
            headers.insert("grpc-timeout", self.grpc_timeout.clone());
        }
        if let Some(value) = self.token.as_ref().and_then(|token| token.header()) {
            headers.insert(http::header::AUTHORIZATION, value);
        }
        let call_timeout = self.call_timeout;
        let future = self.channel.call(request);
        Box::pin(async move {
            match tokio::time::timeout(call_timeout, future).await {
                Ok(result) => result.map_err(|err| {
                    let err: tower::BoxError = err.into();
                    if is_timeout(err.as_ref()) {
                        deadline_exceeded(call_timeout)
                    } else {
                        err
                    }
                }),
                Err(_) => Err(deadline_exceeded(call_timeout)),
            }
        })
    }
}

/// A `Status` as the error reaches the caller as that status (tonic downcasts it), so a
/// slow peer is DEADLINE_EXCEEDED as the gRPC spec says, not CANCELLED or UNKNOWN.
fn deadline_exceeded(call_timeout: Duration) -> tower::BoxError {
    Box::new(tonic::Status::deadline_exceeded(format!(
        "peer did not answer within {} ms",
        call_timeout.as_millis()
    )))
}

/// Whether tonic's own `grpc-timeout` enforcement ended the call.
fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    // Error chains are short; the bound guards against a cyclic `source`.
    for _ in 0..16 {
        match current {
            Some(err) if err.is::<tonic::TimeoutExpired>() => return true,
            Some(err) => current = err.source(),
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use tonic_health::{
        ServingStatus,
        pb::{HealthCheckRequest, health_check_response, health_client::HealthClient},
    };

    use super::*;

    /// What the stand-in DNS answers right now.
    static ANSWER: StdMutex<Vec<SocketAddr>> = StdMutex::new(Vec::new());

    fn test_resolver(
        _host: String,
        _port: u16,
    ) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        let answer = ANSWER.lock().expect("answer").clone();
        Box::pin(async move { Ok(answer) })
    }

    /// A real gRPC server (health only) whose service `pod` reports `status`, so each
    /// answer tells which pod served it.
    async fn pod(ip: [u8; 4], status: ServingStatus) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((ip, 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter.set_service_status("pod", status).await;
        tokio::spawn(async move {
            let _reporter = reporter;
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
        });
        addr
    }

    async fn who_answers(client: &mut HealthClient<PeerChannel>, calls: usize) -> (usize, usize) {
        let (mut serving, mut not_serving) = (0, 0);
        for _ in 0..calls {
            let status = client
                .check(HealthCheckRequest {
                    service: "pod".into(),
                })
                .await
                .expect("check")
                .into_inner()
                .status;
            if status == health_check_response::ServingStatus::Serving as i32 {
                serving += 1;
            } else {
                not_serving += 1;
            }
        }
        (serving, not_serving)
    }

    /// A peer that accepts connections but never answers costs a caller at most its
    /// deadline, and the caller sees DEADLINE_EXCEEDED.
    #[tokio::test]
    async fn a_peer_that_never_answers_is_deadline_exceeded() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Accepts and holds every connection, saying nothing (a hung process).
        let held = tokio::spawn(async move {
            let mut sockets = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                sockets.push(socket);
            }
        });
        let mut options = ClientOptions::new("test", TokenKeys::from_secret(&[7; 32]));
        options.call_timeout = Duration::from_millis(300);
        let channel = connect(&format!("http://{addr}"), &options).expect("connect");
        let started = std::time::Instant::now();
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .expect_err("no answer");
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        held.abort();
    }

    /// Behind a headless Service a name resolves to every pod: calls spread over all of
    /// them, and a pod that leaves the answer stops getting calls after a refresh.
    #[tokio::test]
    async fn calls_spread_over_every_resolved_address_and_follow_changes() {
        let pod_a = pod([127, 0, 0, 1], ServingStatus::Serving).await;
        let pod_b = pod([127, 0, 0, 2], ServingStatus::NotServing).await;
        *ANSWER.lock().expect("answer") = vec![pod_a, pod_b];
        let mut options = ClientOptions::new("test", TokenKeys::from_secret(&[7; 32]));
        options.dns_refresh = Duration::from_millis(50);
        let channel = connect_with_resolver(
            &format!("http://peer.example:{}", pod_a.port()),
            &options,
            test_resolver,
        )
        .expect("connect");
        let mut client = HealthClient::new(channel);

        let (on_a, on_b) = who_answers(&mut client, 200).await;
        assert!(on_a > 0 && on_b > 0, "a: {on_a}, b: {on_b}");

        *ANSWER.lock().expect("answer") = vec![pod_b];
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (on_a, on_b) = who_answers(&mut client, 50).await;
        assert_eq!((on_a, on_b), (0, 50));
    }
}
