//! kv as REST, under `/apps/{app}/keys`:
//!
//! - `PUT /apps/{app}/keys/{key}`: the body is the value; 201 when the key was new, 200
//!   when it replaced a value.
//! - `GET /apps/{app}/keys/{key}`: 200 with the value, 404 when absent.
//! - `DELETE /apps/{app}/keys/{key}`: 200, or 404 when absent.
//! - `GET /apps/{app}/keys?prefix=P&limit=N` (or `start=S&end=E`): the objects in key
//!   order as JSON, at most `limit` (100 unless given), and `next`, the key to go on
//!   from when the answer was cut short.
//! - `POST /apps/{app}/keys/{key}/cas` with `{"expected": V|null, "new": V|null}` (both
//!   required): sets the key to `new` (null: deletes it) iff its value is `expected`
//!   (null: absent); 200, or 409 with the `current` value.
//!
//! Keys come from the path (percent-decoded); JSON carries keys and values as UTF-8
//! strings, bytes that are not UTF-8 replaced.

use crate::Gateway;
use crate::body::{JsonBody, RawBody, rejected};
use crate::error::ApiError;
use axum::Json;
use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use zz_apps::kv::{self, Op, Outcome};

const KIND: &str = kv::NAME;
/// Objects a scan returns unless `limit` says otherwise.
const SCAN_LIMIT_DEFAULT: u32 = 100;

pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/apps/{app}/keys", get(scan))
        .route(
            "/apps/{app}/keys/{key}",
            get(get_key).put(put_key).delete(delete_key),
        )
        .route("/apps/{app}/keys/{key}/cas", post(compare_and_swap))
}

type AppKey = Result<Path<(String, String)>, PathRejection>;

async fn run(gateway: &Gateway, app: &str, op: Op) -> Result<Outcome, ApiError> {
    let app = gateway.app(app, KIND)?;
    let result = gateway.invoke(app, kv::encode_op(&op)).await?;
    let outcome = kv::decode_result(&result).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("the replicas' answer: {error}"),
        )
    })?;
    match outcome {
        Outcome::Error(error) => Err(ApiError::new(StatusCode::BAD_GATEWAY, error.to_string())),
        outcome => Ok(outcome),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn get_key(State(gateway): State<Arc<Gateway>>, path: AppKey) -> Result<Response, ApiError> {
    let Path((app, key)) = path.map_err(rejected)?;
    let op = Op::Get {
        key: key.clone().into_bytes(),
    };
    match run(&gateway, &app, op).await? {
        Outcome::Value(Some(value)) => {
            let octets = [(header::CONTENT_TYPE, "application/octet-stream")];
            Ok((octets, value).into_response())
        }
        Outcome::Value(None) => Err(ApiError::not_found(format!("no key {key:?}"))),
        outcome => Err(ApiError::unexpected(&outcome)),
    }
}

async fn put_key(
    State(gateway): State<Arc<Gateway>>,
    path: AppKey,
    RawBody(value): RawBody,
) -> Result<Response, ApiError> {
    let Path((app, key)) = path.map_err(rejected)?;
    let op = Op::Put {
        key: key.into_bytes(),
        value: value.to_vec(),
    };
    match run(&gateway, &app, op).await? {
        Outcome::Previous(None) => {
            Ok((StatusCode::CREATED, Json(json!({"created": true}))).into_response())
        }
        Outcome::Previous(Some(_)) => Ok(Json(json!({"created": false})).into_response()),
        outcome => Err(ApiError::unexpected(&outcome)),
    }
}

async fn delete_key(
    State(gateway): State<Arc<Gateway>>,
    path: AppKey,
) -> Result<Response, ApiError> {
    let Path((app, key)) = path.map_err(rejected)?;
    let op = Op::Delete {
        key: key.clone().into_bytes(),
    };
    match run(&gateway, &app, op).await? {
        Outcome::Previous(Some(_)) => Ok(Json(json!({"deleted": true})).into_response()),
        Outcome::Previous(None) => Err(ApiError::not_found(format!("no key {key:?}"))),
        outcome => Err(ApiError::unexpected(&outcome)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanQuery {
    prefix: Option<String>,
    start: Option<String>,
    end: Option<String>,
    limit: Option<u32>,
}

/// The smallest key after every key that starts with `prefix` (empty: no bound).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    end
}

async fn scan(
    State(gateway): State<Arc<Gateway>>,
    app: Result<Path<String>, PathRejection>,
    query: Result<Query<ScanQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(app) = app.map_err(rejected)?;
    let Query(query) = query.map_err(rejected)?;
    let (start, end) = match (query.prefix, query.start, query.end) {
        (Some(prefix), None, None) => {
            let end = prefix_end(prefix.as_bytes());
            (prefix.into_bytes(), end)
        }
        (None, start, end) => (
            start.unwrap_or_default().into_bytes(),
            end.unwrap_or_default().into_bytes(),
        ),
        _ => {
            return Err(ApiError::bad_request(
                "give prefix, or start and end, not both",
            ));
        }
    };
    let limit = query.limit.unwrap_or(SCAN_LIMIT_DEFAULT);
    if limit == 0 || limit as usize > zz_apps::kv::SCAN_COUNT_MAX {
        return Err(ApiError::bad_request(format!(
            "limit {limit}: must be 1..={}",
            zz_apps::kv::SCAN_COUNT_MAX
        )));
    }
    match run(&gateway, &app, Op::Scan { start, end, limit }).await? {
        Outcome::Objects { objects, resume } => {
            let objects: Vec<_> = (objects.iter())
                .map(|(key, value)| json!({"key": text(key), "value": text(value)}))
                .collect();
            let next = resume.as_deref().map(text);
            Ok(Json(json!({"objects": objects, "next": next})).into_response())
        }
        outcome => Err(ApiError::unexpected(&outcome)),
    }
}

/// Both fields are required; null means absent (`expected`) or delete (`new`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Swap {
    expected: serde_json::Value,
    new: serde_json::Value,
}

/// A value or null; anything else is 400.
fn value_or_null(field: &str, value: serde_json::Value) -> Result<Option<Vec<u8>>, ApiError> {
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(text) => Ok(Some(text.into_bytes())),
        other => Err(ApiError::bad_request(format!(
            "{field}: a string or null, not {other}"
        ))),
    }
}

async fn compare_and_swap(
    State(gateway): State<Arc<Gateway>>,
    path: AppKey,
    JsonBody(swap): JsonBody<Swap>,
) -> Result<Response, ApiError> {
    let Path((app, key)) = path.map_err(rejected)?;
    let op = Op::CompareAndSwap {
        key: key.clone().into_bytes(),
        expected: value_or_null("expected", swap.expected)?,
        new: value_or_null("new", swap.new)?,
    };
    match run(&gateway, &app, op).await? {
        Outcome::Swapped => Ok(Json(json!({"swapped": true})).into_response()),
        Outcome::Mismatch { current } => Err(ApiError::conflict(format!(
            "compare-and-swap of {key:?} failed: its value is not the expected one"
        ))
        .with_detail("current", json!(current.as_deref().map(text)))),
        outcome => Err(ApiError::unexpected(&outcome)),
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_ends_at_the_next_key_after_all_that_start_with_it() {
        assert_eq!(prefix_end(b"ab"), b"ac");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"");
        assert_eq!(prefix_end(b""), b"");
    }
}
