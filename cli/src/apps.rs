//! `zz kv ...` and `zz bank ...`: one request to a running platform's app, answered once
//! f+1 of the app's execution replicas vouch for the result.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Duration;
use zz_apps::{bank, kv};
use zz_client::ClientPool;
use zz_protocol::AppId;
use zz_protocol::config::{ClusterConfig, read_client_file};

/// How long a CLI request waits for its result.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct KvArgs {
    /// The cluster directory of a running platform.
    #[arg(long)]
    pub dir: PathBuf,
    /// The client key file to speak with (`clients/NAME.toml`, see `zz client add`).
    #[arg(long, default_value = zz_protocol::config::DEFAULT_CLIENT)]
    pub client: String,
    /// The kv app to address, by name (another instance: `zz up --apps kv,kv:NAME`).
    #[arg(long, default_value = kv::NAME)]
    pub app: String,
    #[command(subcommand)]
    pub command: KvCommand,
}

#[derive(Subcommand, Debug)]
pub enum KvCommand {
    /// Set KEY to VALUE.
    Put { key: String, value: String },
    /// Print the value of KEY.
    Get { key: String },
    /// Remove KEY.
    Del { key: String },
    /// Print the objects with START <= key < END (END empty: no bound).
    Scan {
        start: String,
        #[arg(default_value = "")]
        end: String,
        /// Objects at most.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

#[derive(Args, Debug)]
pub struct BankArgs {
    /// The cluster directory of a running platform.
    #[arg(long)]
    pub dir: PathBuf,
    /// The client key file to speak with (`clients/NAME.toml`, see `zz client add`).
    #[arg(long, default_value = zz_protocol::config::DEFAULT_CLIENT)]
    pub client: String,
    /// The bank app to address, by name (another instance: `zz up --apps bank,bank:NAME`).
    #[arg(long, default_value = bank::NAME)]
    pub app: String,
    #[command(subcommand)]
    pub command: BankCommand,
}

#[derive(Subcommand, Debug)]
pub enum BankCommand {
    /// Open ACCOUNT with balance 0.
    Open { account: String },
    /// Add AMOUNT to ACCOUNT.
    Deposit { account: String, amount: u64 },
    /// Move AMOUNT from FROM to TO.
    Transfer {
        from: String,
        to: String,
        amount: u64,
    },
    /// Print the balance of ACCOUNT.
    Balance { account: String },
    /// Print the sum of all balances and of all deposits (they must be equal).
    Audit,
}

/// Send one operation to the app named `app_name`, of `kind`, and return the result f+1
/// replicas vouch for.
async fn invoke(
    dir: &Path,
    client: &str,
    (app_name, kind): (&str, &str),
    op: Vec<u8>,
) -> Result<Vec<u8>> {
    let config = ClusterConfig::load(dir)?;
    let Some(app) = config.app_by_name(app_name) else {
        bail!(
            "{}: hosts no app named {app_name} (zz up --apps {kind}:{app_name})",
            dir.display()
        );
    };
    if app.kind() != kind {
        bail!("{app_name} is a {} app, not a {kind} app", app.kind());
    }
    let app: AppId = app.id;
    // One of the file's ids per process, so concurrent invocations seldom share one;
    // timestamps come from the clock, so a later invocation with the same id is still newer.
    let held = read_client_file(dir, client)?.clients.len() as u32;
    let offset = std::process::id() % held.max(1);
    let pool = ClientPool::connect_as(dir, client, offset, 1).context("cannot start a client")?;
    let result = pool
        .client(0)
        .invoke_with_deadline(app, op, REQUEST_DEADLINE)
        .await
        .with_context(|| format!("no answer from {}", dir.display()))?;
    Ok(result)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub async fn run_kv(args: &KvArgs) -> Result<()> {
    let op = match &args.command {
        KvCommand::Put { key, value } => kv::Op::Put {
            key: key.clone().into_bytes(),
            value: value.clone().into_bytes(),
        },
        KvCommand::Get { key } => kv::Op::Get {
            key: key.clone().into_bytes(),
        },
        KvCommand::Del { key } => kv::Op::Delete {
            key: key.clone().into_bytes(),
        },
        KvCommand::Scan { start, end, limit } => kv::Op::Scan {
            start: start.clone().into_bytes(),
            end: end.clone().into_bytes(),
            limit: *limit,
        },
    };
    let app = (args.app.as_str(), kv::NAME);
    let result = invoke(&args.dir, &args.client, app, kv::encode_op(&op)).await?;
    match kv::decode_result(&result)? {
        kv::Outcome::Value(Some(value)) => println!("{}", text(&value)),
        kv::Outcome::Value(None) => bail!("no such key"),
        kv::Outcome::Previous(_) => println!("ok"),
        kv::Outcome::Swapped => println!("swapped"),
        kv::Outcome::Mismatch { .. } => bail!("compare-and-swap failed"),
        kv::Outcome::Objects { objects, resume } => {
            for (key, value) in objects {
                println!("{}\t{}", text(&key), text(&value));
            }
            if let Some(resume) = resume {
                eprintln!("(more from {:?})", text(&resume));
            }
        }
        kv::Outcome::Error(error) => bail!("{error}"),
    }
    Ok(())
}

pub async fn run_bank(args: &BankArgs) -> Result<()> {
    let op = match &args.command {
        BankCommand::Open { account } => bank::Op::Open {
            account: account.clone(),
        },
        BankCommand::Deposit { account, amount } => bank::Op::Deposit {
            account: account.clone(),
            amount: *amount,
        },
        BankCommand::Transfer { from, to, amount } => bank::Op::Transfer {
            from: from.clone(),
            to: to.clone(),
            amount: *amount,
        },
        BankCommand::Balance { account } => bank::Op::Balance {
            account: account.clone(),
        },
        BankCommand::Audit => bank::Op::Audit,
    };
    let app = (args.app.as_str(), bank::NAME);
    let result = invoke(&args.dir, &args.client, app, bank::encode_op(&op)).await?;
    match bank::decode_result(&result)? {
        bank::Outcome::Opened => println!("opened"),
        bank::Outcome::Deposited { balance } => println!("{balance}"),
        bank::Outcome::Transferred {
            from_balance,
            to_balance,
        } => println!("{from_balance} {to_balance}"),
        bank::Outcome::Balance(balance) => println!("{balance}"),
        bank::Outcome::Audit(audit) => println!(
            "accounts {}, balances {}, deposits {}",
            audit.account_count, audit.balance_sum, audit.deposit_total
        ),
        bank::Outcome::Error(error) => bail!("{error}"),
    }
    Ok(())
}
