//! bank as JSON, under `/apps/{app}/`:
//!
//! - `POST /apps/{app}/open` `{"account": A}`: 201.
//! - `POST /apps/{app}/deposit` `{"account": A, "amount": N}`: 200 `{"balance": N}`.
//! - `POST /apps/{app}/transfer` `{"from": A, "to": B, "amount": N}`: 200
//!   `{"from_balance": N, "to_balance": M}`.
//! - `GET /apps/{app}/balance/{account}`: 200 `{"account": A, "balance": N}`.
//! - `GET /apps/{app}/audit`: 200 `{"account_count", "balance_sum", "deposit_total",
//!   "balanced"}`.
//!
//! The bank's refusals: no such account 404; an account that exists, too little money or
//! an overflow 409; a bad account name or a transfer to itself 400.

use crate::Gateway;
use crate::body::{JsonBody, rejected};
use crate::error::ApiError;
use axum::Json;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use zz_apps::bank::{self, BankError, Op, Outcome};

const KIND: &str = bank::NAME;

pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/apps/{app}/open", post(open))
        .route("/apps/{app}/deposit", post(deposit))
        .route("/apps/{app}/transfer", post(transfer))
        .route("/apps/{app}/balance/{account}", get(balance))
        .route("/apps/{app}/audit", get(audit))
}

type AppName = Result<Path<String>, PathRejection>;

/// The bank's refusal as an HTTP answer.
fn refused(error: BankError) -> ApiError {
    let status = match &error {
        BankError::NoSuchAccount { .. } => StatusCode::NOT_FOUND,
        BankError::InvalidAccountName { .. } | BankError::SameAccount { .. } => {
            StatusCode::BAD_REQUEST
        }
        BankError::AccountExists { .. }
        | BankError::TooManyAccounts { .. }
        | BankError::InsufficientFunds { .. }
        | BankError::BalanceOverflow { .. }
        | BankError::DepositTotalOverflow { .. } => StatusCode::CONFLICT,
        BankError::BadOperation { .. } => StatusCode::BAD_GATEWAY,
    };
    ApiError::new(status, error.to_string())
}

async fn run(gateway: &Gateway, app: &str, op: Op) -> Result<Outcome, ApiError> {
    let app = gateway.app(app, KIND)?;
    let result = gateway.invoke(app, bank::encode_op(&op)).await?;
    let outcome = bank::decode_result(&result).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("the replicas' answer: {error}"),
        )
    })?;
    match outcome {
        Outcome::Error(error) => Err(refused(error)),
        outcome => Ok(outcome),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Account {
    account: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deposit {
    account: String,
    amount: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Transfer {
    from: String,
    to: String,
    amount: u64,
}

async fn open(
    State(gateway): State<Arc<Gateway>>,
    app: AppName,
    JsonBody(body): JsonBody<Account>,
) -> Result<Response, ApiError> {
    let Path(app) = app.map_err(rejected)?;
    let account = body.account.clone();
    match run(
        &gateway,
        &app,
        Op::Open {
            account: body.account,
        },
    )
    .await?
    {
        Outcome::Opened => {
            let body = json!({"account": account, "balance": 0});
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        outcome => Err(ApiError::unexpected(&outcome)),
    }
}

async fn deposit(
    State(gateway): State<Arc<Gateway>>,
    app: AppName,
    JsonBody(body): JsonBody<Deposit>,
) -> Result<Response, ApiError> {
    let Path(app) = app.map_err(rejected)?;
    let op = Op::Deposit {
        account: body.account,
        amount: body.amount,
    };
    match run(&gateway, &app, op).await? {
        Outcome::Deposited { balance } => Ok(Json(json!({"balance": balance})).into_response()),
        outcome => Err(ApiError::unexpected(&outcome)),
    }
}

async fn transfer(
    State(gateway): State<Arc<Gateway>>,
    app: AppName,
    JsonBody(body): JsonBody<Transfer>,
) -> Result<Response, ApiError> {
    let Path(app) = app.map_err(rejected)?;
    let op = Op::Transfer {
        from: body.from,
        to: body.to,
        amount: body.amount,
    };
    match run(&gateway, &app, op).await? {
        Outcome::Transferred {
            from_balance,
            to_balance,
        } => Ok(
            Json(json!({"from_balance": from_balance, "to_balance": to_balance})).into_response(),
        ),
        outcome => Err(ApiError::unexpected(&outcome)),
    }
}

async fn balance(
    State(gateway): State<Arc<Gateway>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path((app, account)) = path.map_err(rejected)?;
    let op = Op::Balance {
        account: account.clone(),
    };
    match run(&gateway, &app, op).await? {
        Outcome::Balance(balance) => {
            Ok(Json(json!({"account": account, "balance": balance})).into_response())
        }
        outcome => Err(ApiError::unexpected(&outcome)),
    }
}

async fn audit(State(gateway): State<Arc<Gateway>>, app: AppName) -> Result<Response, ApiError> {
    let Path(app) = app.map_err(rejected)?;
    match run(&gateway, &app, Op::Audit).await? {
        Outcome::Audit(audit) => Ok(Json(json!({
            "account_count": audit.account_count,
            // A JSON number cannot hold every u128 exactly.
            "balance_sum": audit.balance_sum.to_string(),
            "deposit_total": audit.deposit_total,
            "balanced": audit.is_balanced(),
        }))
        .into_response()),
        outcome => Err(ApiError::unexpected(&outcome)),
    }
}
