//! `bank`: accounts holding u64 balances; money enters only by deposit and moves only by
//! transfer, so the sum of the balances always equals the deposit total.
//!
//! Objects (app keys): `acct/<name>` → balance; `meta/deposit_total` → sum of every
//! deposit; `meta/account_count` → accounts opened. All three values are u64
//! little-endian; an absent counter reads as 0.

use crate::codec::{self, DecodeError, decode_amount, encode_amount};
use serde::{Deserialize, Serialize};
use zz_execution::app::SCAN_COUNT_MAX;
use zz_execution::{App, ExecContext, StateAccess};
use zz_state_fetch::NotFetched;

/// The app's name in a cluster configuration.
pub const NAME: &str = "bank";
/// Bytes in an account name at most (and at least 1).
pub const ACCOUNT_NAME_BYTES_MAX: usize = 64;
/// Accounts a bank holds at most; bounds the scans of an audit.
pub const ACCOUNT_COUNT_MAX: u64 = 100_000;

const ACCOUNT_KEY_PREFIX: &[u8] = b"acct/";
/// The first key after every `acct/...` key (`'0'` follows `'/'`).
const ACCOUNT_KEY_END: &[u8] = b"acct0";
const DEPOSIT_TOTAL_KEY: &[u8] = b"meta/deposit_total";
const ACCOUNT_COUNT_KEY: &[u8] = b"meta/account_count";
/// Scans an audit makes at most: full pages of every account, then one that is not full.
const AUDIT_PAGE_COUNT_MAX: u64 = ACCOUNT_COUNT_MAX.div_ceil(SCAN_COUNT_MAX as u64) + 1;

const _: () = assert!(is_prefix_end(ACCOUNT_KEY_PREFIX, ACCOUNT_KEY_END));
const _: () = assert!(SCAN_COUNT_MAX > 0);

/// A `bank` operation. Account names are 1 to [`ACCOUNT_NAME_BYTES_MAX`] bytes of UTF-8.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Opens `account` with balance 0.
    Open { account: String },
    /// Adds `amount` to `account` and to the deposit total.
    Deposit { account: String, amount: u64 },
    /// Moves `amount` from `from` to `to`: both balances change or neither does.
    Transfer {
        from: String,
        to: String,
        amount: u64,
    },
    /// The balance of `account`.
    Balance { account: String },
    /// The sum of all balances and the deposit total (scans every account).
    Audit,
}

/// The answer to a `bank` operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Opened,
    /// The account's balance after the deposit.
    Deposited {
        balance: u64,
    },
    /// Both balances after the transfer.
    Transferred {
        from_balance: u64,
        to_balance: u64,
    },
    Balance(u64),
    Audit(Audit),
    /// The operation was rejected and changed nothing.
    Error(BankError),
}

/// What [`audit`] found. `balance_sum` is wide so that a broken invariant shows as a
/// mismatch rather than an overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Audit {
    /// Accounts found by the scan.
    pub account_count: u64,
    /// The sum of their balances.
    pub balance_sum: u128,
    /// The sum of every deposit ever made.
    pub deposit_total: u64,
}

impl Audit {
    /// The bank's invariant: the balances add up to the deposits.
    pub fn is_balanced(&self) -> bool {
        self.balance_sum == u128::from(self.deposit_total)
    }
}

/// Why a `bank` operation was rejected; each variant carries the values compared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum BankError {
    /// The operation's bytes do not decode to exactly one [`Op`].
    #[error("operation of {op_size} bytes does not decode")]
    BadOperation { op_size: u64 },
    #[error("account name of {name_bytes} bytes: must be 1..={name_bytes_max}")]
    InvalidAccountName {
        name_bytes: u64,
        name_bytes_max: u64,
    },
    #[error("account {account:?} already exists")]
    AccountExists { account: String },
    #[error("no account {account:?}")]
    NoSuchAccount { account: String },
    #[error("the bank already holds {account_count_max} accounts")]
    TooManyAccounts { account_count_max: u64 },
    #[error("transfer from account {account:?} to itself")]
    SameAccount { account: String },
    #[error("account {account:?} holds {balance}, cannot pay {amount}")]
    InsufficientFunds {
        account: String,
        balance: u64,
        amount: u64,
    },
    #[error("account {account:?} holds {balance}, adding {amount} overflows")]
    BalanceOverflow {
        account: String,
        balance: u64,
        amount: u64,
    },
    #[error("deposit total {deposit_total}, adding {amount} overflows")]
    DepositTotalOverflow { deposit_total: u64, amount: u64 },
}

/// The `bank` application.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bank;

impl App for Bank {
    fn name(&self) -> &'static str {
        NAME
    }

    fn execute(
        &self,
        _context: &ExecContext,
        state: &mut StateAccess<'_>,
        op: &[u8],
    ) -> Result<Vec<u8>, NotFetched> {
        let outcome = match decode_op(op) {
            Ok(op) => execute_op(state, &op)?,
            Err(_) => Outcome::Error(BankError::BadOperation {
                op_size: op.len() as u64,
            }),
        };
        Ok(encode_outcome(&outcome))
    }
}

/// Encodes an operation for a request (clients).
pub fn encode_op(op: &Op) -> Vec<u8> {
    codec::encode(op)
}

/// Decodes a request's operation; trailing bytes make it malformed.
pub fn decode_op(bytes: &[u8]) -> Result<Op, DecodeError> {
    codec::decode_exact("bank operation", bytes)
}

/// Encodes an outcome as a reply's result.
pub fn encode_outcome(outcome: &Outcome) -> Vec<u8> {
    codec::encode(outcome)
}

/// Decodes a reply's result (clients).
pub fn decode_result(bytes: &[u8]) -> Result<Outcome, DecodeError> {
    codec::decode_exact("bank outcome", bytes)
}

/// Executes one decoded operation against `state`. Every check runs, and every object
/// written is read, before the first write: a rejected operation or a `NotFetched`
/// leaves nothing buffered.
pub fn execute_op(state: &mut StateAccess<'_>, op: &Op) -> Result<Outcome, NotFetched> {
    let result = match op {
        Op::Open { account } => open(state, account),
        Op::Deposit { account, amount } => deposit(state, account, *amount),
        Op::Transfer { from, to, amount } => transfer(state, from, to, *amount),
        Op::Balance { account } => balance(state, account).map(|balance| {
            balance
                .map(Outcome::Balance)
                .ok_or_else(|| no_such_account(account))
        }),
        Op::Audit => audit(state).map(|audit| Ok(Outcome::Audit(audit))),
    };
    Ok(result?.unwrap_or_else(Outcome::Error))
}

/// Sums every account's balance (a paged scan) and reads the deposit total. For tests,
/// operators and the `Audit` operation; needs every bucket, as any scan does.
pub fn audit(state: &StateAccess<'_>) -> Result<Audit, NotFetched> {
    let deposit_total = counter(state, DEPOSIT_TOTAL_KEY)?;
    let mut account_count = 0u64;
    let mut balance_sum = 0u128;
    let mut start = ACCOUNT_KEY_PREFIX.to_vec();
    for _ in 0..AUDIT_PAGE_COUNT_MAX {
        let page = state.scan(&start, ACCOUNT_KEY_END, SCAN_COUNT_MAX)?;
        for (key, value) in &page {
            balance_sum += u128::from(decode_amount(key, value));
        }
        account_count += page.len() as u64;
        match page.last() {
            Some((last, _)) if page.len() == SCAN_COUNT_MAX => {
                start.clone_from(last);
                start.push(0);
            }
            _ => {
                return Ok(Audit {
                    account_count,
                    balance_sum,
                    deposit_total,
                });
            }
        }
    }
    panic!("invariant: at most {ACCOUNT_COUNT_MAX} accounts, found more than {account_count}");
}

/// Whether `end` is the first key after every key starting with `prefix`: the prefix with
/// its last byte incremented.
const fn is_prefix_end(prefix: &[u8], end: &[u8]) -> bool {
    if prefix.is_empty() || prefix.len() != end.len() {
        return false;
    }
    let last = prefix.len() - 1;
    let mut i = 0;
    while i < last {
        if prefix[i] != end[i] {
            return false;
        }
        i += 1;
    }
    prefix[last] < u8::MAX && prefix[last] + 1 == end[last]
}

/// An operation's answer: `Err(NotFetched)` outside, a rejection inside.
type Answer = Result<Result<Outcome, BankError>, NotFetched>;

fn open(state: &mut StateAccess<'_>, account: &str) -> Answer {
    if account.is_empty() || account.len() > ACCOUNT_NAME_BYTES_MAX {
        return Ok(Err(BankError::InvalidAccountName {
            name_bytes: account.len() as u64,
            name_bytes_max: ACCOUNT_NAME_BYTES_MAX as u64,
        }));
    }
    if balance(state, account)?.is_some() {
        return Ok(Err(BankError::AccountExists {
            account: account.to_owned(),
        }));
    }
    let account_count = counter(state, ACCOUNT_COUNT_KEY)?;
    if account_count >= ACCOUNT_COUNT_MAX {
        return Ok(Err(BankError::TooManyAccounts {
            account_count_max: ACCOUNT_COUNT_MAX,
        }));
    }
    state.put(&account_key(account), encode_amount(0));
    state.put(ACCOUNT_COUNT_KEY, encode_amount(account_count + 1));
    Ok(Ok(Outcome::Opened))
}

fn deposit(state: &mut StateAccess<'_>, account: &str, amount: u64) -> Answer {
    let Some(balance) = balance(state, account)? else {
        return Ok(Err(no_such_account(account)));
    };
    let deposit_total = counter(state, DEPOSIT_TOTAL_KEY)?;
    let Some(new_balance) = balance.checked_add(amount) else {
        return Ok(Err(BankError::BalanceOverflow {
            account: account.to_owned(),
            balance,
            amount,
        }));
    };
    let Some(new_total) = deposit_total.checked_add(amount) else {
        return Ok(Err(BankError::DepositTotalOverflow {
            deposit_total,
            amount,
        }));
    };
    state.put(&account_key(account), encode_amount(new_balance));
    state.put(DEPOSIT_TOTAL_KEY, encode_amount(new_total));
    Ok(Ok(Outcome::Deposited {
        balance: new_balance,
    }))
}

fn transfer(state: &mut StateAccess<'_>, from: &str, to: &str, amount: u64) -> Answer {
    if from == to {
        return Ok(Err(BankError::SameAccount {
            account: from.to_owned(),
        }));
    }
    let Some(from_balance) = balance(state, from)? else {
        return Ok(Err(no_such_account(from)));
    };
    let Some(to_balance) = balance(state, to)? else {
        return Ok(Err(no_such_account(to)));
    };
    let Some(from_balance) = from_balance.checked_sub(amount) else {
        return Ok(Err(BankError::InsufficientFunds {
            account: from.to_owned(),
            balance: from_balance,
            amount,
        }));
    };
    // Cannot overflow while the invariant holds (to_balance + amount <= deposit total),
    // but a rejection is cheaper to reason about than a proof.
    let Some(to_balance) = to_balance.checked_add(amount) else {
        return Ok(Err(BankError::BalanceOverflow {
            account: to.to_owned(),
            balance: to_balance,
            amount,
        }));
    };
    state.put(&account_key(from), encode_amount(from_balance));
    state.put(&account_key(to), encode_amount(to_balance));
    Ok(Ok(Outcome::Transferred {
        from_balance,
        to_balance,
    }))
}

fn balance(state: &StateAccess<'_>, account: &str) -> Result<Option<u64>, NotFetched> {
    let key = account_key(account);
    Ok(state.get(&key)?.map(|value| decode_amount(&key, &value)))
}

fn counter(state: &StateAccess<'_>, key: &[u8]) -> Result<u64, NotFetched> {
    Ok(state
        .get(key)?
        .map_or(0, |value| decode_amount(key, &value)))
}

fn account_key(account: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(ACCOUNT_KEY_PREFIX.len() + account.len());
    key.extend_from_slice(ACCOUNT_KEY_PREFIX);
    key.extend_from_slice(account.as_bytes());
    key
}

fn no_such_account(account: &str) -> BankError {
    BankError::NoSuchAccount {
        account: account.to_owned(),
    }
}

#[cfg(test)]
mod tests;
