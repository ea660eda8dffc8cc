//! The gateway's error answers: a status and a one-line reason, as `{"error": reason}`.

use crate::dispatch::DispatchError;
use axum::Json;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Seconds a client refused for a full queue should wait before trying again.
const RETRY_AFTER_SECONDS: &str = "1";

/// An HTTP error answer. See the module documentation.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: String,
    /// More fields for the JSON body (a failed compare-and-swap's current value).
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    pub fn new(status: StatusCode, reason: impl Into<String>) -> ApiError {
        ApiError {
            status,
            reason: reason.into(),
            details: None,
        }
    }

    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, reason)
    }

    pub fn not_found(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, reason)
    }

    pub fn conflict(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, reason)
    }

    pub fn too_large(bytes: usize, bytes_max: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("an operation of {bytes} bytes: the platform orders at most {bytes_max}"),
        )
    }

    /// The replicas vouched for an answer that does not decode.
    pub fn undecodable(error: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("the replicas' answer: {error}"),
        )
    }

    /// The replicas vouched for an answer that does not fit the request.
    pub fn unexpected(outcome: &impl std::fmt::Debug) -> ApiError {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("the replicas answered {outcome:?}, which does not fit the request"),
        )
    }

    pub fn with_detail(mut self, key: &str, value: serde_json::Value) -> ApiError {
        (self.details.get_or_insert_default()).insert(key.to_string(), value);
        self
    }
}

impl From<DispatchError> for ApiError {
    fn from(error: DispatchError) -> ApiError {
        let status = match error {
            DispatchError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            DispatchError::Deadline(_) => StatusCode::GATEWAY_TIMEOUT,
            DispatchError::Client(_) => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(status, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.details.unwrap_or_default();
        // One line, whatever the cause said.
        let reason = self.reason.replace(['\n', '\r'], " ");
        body.insert("error".to_string(), json!(reason));
        let mut response = (self.status, Json(serde_json::Value::Object(body))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            let retry = header::HeaderValue::from_static(RETRY_AFTER_SECONDS);
            response.headers_mut().insert(header::RETRY_AFTER, retry);
        }
        response
    }
}

/// No route matched.
pub async fn no_route(uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no route {} (apps are under /apps/NAME/; see the README for their routes)",
        uri.path()
    ))
}

/// The route exists, but not for this method.
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{method} is not a method of {} (see the README for its routes)",
            uri.path()
        ),
    )
}

/// Requests whose `Host` is not a loopback name are refused (421): see [`crate::router`].
pub async fn loopback_host(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = (request.headers().get(header::HOST))
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let name = match host.rsplit_once(':') {
        // "[::1]:80" or "127.0.0.1:80"; a bare "[::1]" has no port.
        Some((name, port)) if !port.contains(']') => name,
        _ => host,
    };
    if matches!(name, "127.0.0.1" | "localhost" | "[::1]") {
        return next.run(request).await;
    }
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        format!("Host {host:?}: this gateway answers only to 127.0.0.1 or localhost"),
    )
    .into_response()
}
