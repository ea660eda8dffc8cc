//! The HTTP gateway: one per host, it puts the platform's apps on the web.
//!
//! Each HTTP request becomes one operation of one app, ordered by the agreement cluster
//! and answered only once f+1 of the app's execution replicas sent the same result: the
//! gateway is a BFT client (the client library's voting, retransmission and deadline)
//! with client identities of its own (`clients/gateway.toml`), not every client's keys.
//!
//! What it is trusted for: a browser that talks to it trusts it to pass requests on and
//! results back unchanged, as a web server is; the replicas' agreement guarantees what
//! the gateway hears. A client that trusts no gateway uses the client library directly.
//!
//! Routes are under `/apps/{app}/`, by the app's name; which routes an app has depends on
//! its kind ([`kv_routes`], [`bank_routes`]). Bad input is a 4xx with a one-line reason in
//! `{"error": ...}`; more requests than the bounded queue holds get 503 with Retry-After;
//! no answer within the deadline is 504.

mod bank_routes;
mod body;
mod dispatch;
mod error;
mod kv_routes;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use zz_protocol::AppId;
use zz_protocol::config::ClusterConfig;

pub use dispatch::{DispatchError, Dispatcher};
pub use error::ApiError;

/// The client key file the gateway speaks with: `clients/gateway.toml`.
pub const GATEWAY_CLIENT: &str = "gateway";
/// Client ids the gateway gets when `zz up` provisions it: its requests in flight at most.
pub const GATEWAY_CLIENT_IDS: u64 = 32;
/// Requests waiting for a free client id at most, unless `[gateway] queued_max` says
/// otherwise; more get 503.
pub const QUEUED_MAX: usize = 1024;
/// How long a request waits for its f+1 matching replies before it is answered 504.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// An app as the gateway routes to it.
#[derive(Clone, Debug)]
struct HostedApp {
    id: AppId,
    name: String,
    kind: String,
}

/// What every handler shares.
struct Gateway {
    apps: Vec<HostedApp>,
    dispatcher: Dispatcher,
    /// The largest operation the platform orders, in bytes.
    op_bytes_max: usize,
}

impl Gateway {
    /// The app named `name`, if it is of `kind`.
    fn app(&self, name: &str, kind: &str) -> Result<AppId, ApiError> {
        let Some(app) = self.apps.iter().find(|app| app.name == name) else {
            let names: Vec<&str> = self.apps.iter().map(|app| app.name.as_str()).collect();
            return Err(ApiError::not_found(format!(
                "no app named {name:?} (apps here: {})",
                names.join(", ")
            )));
        };
        if app.kind != kind {
            return Err(ApiError::not_found(format!(
                "app {name:?} is a {} app: this route is for {kind} apps",
                app.kind
            )));
        }
        Ok(app.id)
    }

    /// Order `op` for `app` and return the result f+1 replicas vouch for.
    async fn invoke(&self, app: AppId, op: Vec<u8>) -> Result<Vec<u8>, ApiError> {
        if op.len() > self.op_bytes_max {
            return Err(ApiError::too_large(op.len(), self.op_bytes_max));
        }
        Ok(self.dispatcher.invoke(app, op).await?)
    }
}

/// The gateway's routes over `dispatcher`'s clients, for the platform `config` describes.
/// A gateway on a loopback address (`loopback_only`) answers only requests whose `Host` is
/// a loopback name: a web page whose own name an attacker points at 127.0.0.1 (DNS
/// rebinding) would otherwise read its answers.
pub fn router(config: &ClusterConfig, dispatcher: Dispatcher, loopback_only: bool) -> Router {
    let apps = (config.apps.iter())
        .map(|app| HostedApp {
            id: app.id,
            name: app.name.clone(),
            kind: app.kind().to_string(),
        })
        .collect();
    let request_bytes_max = config.protocol.request_bytes_max;
    let gateway = Arc::new(Gateway {
        apps,
        dispatcher,
        // What replicas bound: the operation's bytes.
        op_bytes_max: request_bytes_max,
    });
    let router = Router::new()
        .merge(kv_routes::routes())
        .merge(bank_routes::routes())
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        // A body over the platform's request limit is refused as it streams in, never
        // buffered whole.
        .layer(DefaultBodyLimit::max(request_bytes_max))
        .with_state(gateway);
    match loopback_only {
        true => router.layer(axum::middleware::from_fn(error::loopback_host)),
        false => router,
    }
}

/// The gateway of the platform in `dir`, speaking as the clients of the key file `client`,
/// with at most `queued_max` requests waiting for one (see [`router`] for
/// `loopback_only`). Must be called inside a tokio runtime.
pub fn connect(
    dir: &Path,
    client: &str,
    queued_max: usize,
    loopback_only: bool,
) -> Result<Router, GatewayError> {
    let config = ClusterConfig::load(dir)?;
    let dispatcher = Dispatcher::connect(dir, client, 0, queued_max, DEADLINE)?;
    Ok(router(&config, dispatcher, loopback_only))
}

/// Serve `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(GatewayError::Serve)
}

/// Why the gateway could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] zz_protocol::config::ConfigError),
    #[error(transparent)]
    Client(#[from] zz_client::ClientError),
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
}
