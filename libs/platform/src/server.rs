//! The gRPC server every service runs: its own service plus `grpc.health.v1` and
//! reflection (v1 and v1alpha, which grpcurl 1.8 still asks for), behind the observe
//! (trace + metrics) and auth layers, with message, concurrency and deadline limits,
//! and a graceful drain on shutdown.

use std::{convert::Infallible, future::Future, pin::pin, time::Duration};

use tokio::{net::TcpListener, sync::oneshot};
use tonic::{
    body::Body,
    server::NamedService,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::ServingStatus;

use crate::{
    auth::{AuthLayer, PermissionTable, TokenKeys},
    config::CommonConfig,
    metrics::{Metrics, ObserveLayer, serve_admin},
};

/// HTTP/2 pings keep idle connections through load balancers and detect dead peers.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds and runs one service's server. See the module docs for what it adds.
#[derive(Debug)]
pub struct GrpcServer {
    config: CommonConfig,
    permissions: PermissionTable,
    file_descriptor_set: &'static [u8],
    metrics: Metrics,
    admin_listener: Option<TcpListener>,
}

impl GrpcServer {
    /// `file_descriptor_set` is the encoded descriptor set that holds the service's
    /// proto, served by reflection.
    pub fn new(
        config: &CommonConfig,
        permissions: PermissionTable,
        file_descriptor_set: &'static [u8],
    ) -> Self {
        Self {
            config: config.clone(),
            permissions,
            file_descriptor_set,
            metrics: Metrics::new(),
            admin_listener: None,
        }
    }

    /// Serve metrics on this listener instead of binding `ADMIN_LISTEN_ADDR`.
    pub fn with_admin_listener(mut self, listener: TcpListener) -> Self {
        self.admin_listener = Some(listener);
        self
    }

    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Serves until `shutdown` resolves, then: health goes NOT_SERVING, the listener
    /// closes (new connections are refused), open connections get GOAWAY (new calls on
    /// them are refused), in-flight calls run to completion for at most
    /// `SHUTDOWN_GRACE_SECONDS`, and the function returns.
    pub async fn serve<S>(
        self,
        service: S,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()>
    where
        S: tower_service::Service<
                http::Request<Body>,
                Response = http::Response<Body>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let config = &self.config;
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter.set_serving::<S>().await;

        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(self.file_descriptor_set)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc error details, so grpcurl can decode ErrorInfo/BadRequest.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                )
                // The descriptor set holds every microloan service; list only the ones
                // this server actually serves.
                .with_service_name(S::NAME)
                .with_service_name("grpc.health.v1.Health")
                .with_service_name("grpc.reflection.v1.ServerReflection")
                .with_service_name("grpc.reflection.v1alpha.ServerReflection")
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let admin_listener = match self.admin_listener {
            Some(listener) => listener,
            None => TcpListener::bind(config.admin_listen_addr).await?,
        };
        let (admin_stop_tx, admin_stop_rx) = oneshot::channel::<()>();
        let admin_addr = admin_listener.local_addr()?;
        let admin = tokio::spawn(serve_admin(admin_listener, self.metrics.clone(), async {
            let _ = admin_stop_rx.await;
        }));

        let keys = TokenKeys::from_config(config);
        let grpc_addr = listener.local_addr()?;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (drain_tx, drain_rx) = oneshot::channel::<()>();
        let concurrent_requests_max = config.concurrent_requests_max;
        let router = Server::builder()
            .concurrency_limit_per_connection(concurrent_requests_max)
            .max_concurrent_streams(u32::try_from(concurrent_requests_max).unwrap_or(u32::MAX))
            .timeout(config.request_timeout)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .layer(ObserveLayer::new(
                self.metrics.clone(),
                self.permissions.clone(),
            ))
            .layer(AuthLayer::new(keys, self.permissions))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(service);
        tracing::info!(
            service = S::NAME,
            %grpc_addr,
            %admin_addr,
            "serving"
        );
        let mut serving = pin!(router.serve_with_incoming_shutdown(incoming, async {
            let _ = drain_rx.await;
        }));

        let outcome = tokio::select! {
            result = &mut serving => result.map_err(anyhow::Error::from),
            () = shutdown => {
                let grace = config.shutdown_grace;
                tracing::info!(grace_s = grace.as_secs(), "shutting down: NOT_SERVING, draining in-flight calls");
                health_reporter.set_not_serving::<S>().await;
                health_reporter.set_service_status("", ServingStatus::NotServing).await;
                let _ = drain_tx.send(());
                match tokio::time::timeout(grace, &mut serving).await {
                    Ok(result) => result.map_err(anyhow::Error::from),
                    Err(_) => {
                        tracing::warn!(grace_s = grace.as_secs(), "grace period over: closing calls still in flight");
                        Ok(())
                    }
                }
            }
        };
        let _ = admin_stop_tx.send(());
        match admin.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(%err, "admin server failed"),
            Err(err) => tracing::warn!(%err, "admin server task failed"),
        }
        tracing::info!("stopped");
        outcome
    }
}
