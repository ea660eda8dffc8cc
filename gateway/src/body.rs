//! Request bodies and query strings, decoded with errors that say what is wrong (400):
//! axum's own extractors answer 422 for a missing field, or plain text.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

/// A JSON body of type `T`; anything else is 400 with serde's one-line reason.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        // A cross-origin page can send text/plain without asking first; JSON it cannot.
        let content_type = request.headers().get(header::CONTENT_TYPE);
        let json = content_type
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a body with Content-Type: application/json",
            ));
        }
        let bytes = body_bytes(request, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|error| ApiError::bad_request(format!("malformed JSON body: {error}")))
    }
}

/// The whole body, at most the platform's request limit (the router's body limit refuses
/// more as it streams in: 413).
pub async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))
}

/// A raw body (a kv value), at most the platform's request limit.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        body_bytes(request, state).await.map(RawBody)
    }
}

/// An axum extractor's rejection (a path or query that does not decode) as an [`ApiError`].
pub fn rejected(rejection: impl axum::response::IntoResponse + std::fmt::Display) -> ApiError {
    let reason = rejection.to_string();
    let status = rejection.into_response().status();
    ApiError::new(status, reason)
}
