//! The bank's invariant, checked the way a replica runs it: random sequences of operations
//! from several accounts, each executed through the `App` trait against a real
//! `ObjectStore` and applied with `ObjectStore::apply`. After every step the audit shows
//! the balances summing to the deposit total, no balance exceeds the total (an underflow
//! would wrap far past it), and every outcome is the one a plain in-memory model predicts.

mod common;

use proptest::prelude::*;
use std::collections::BTreeMap;
use zz_apps::bank::{self, Audit, Bank, BankError, Op, Outcome};
use zz_execution::StateAccess;
use zz_state_fetch::ObjectStore;

const ACCOUNTS: &[&str] = &["alice", "bob", "carol", "dave"];

fn account() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => proptest::sample::select(ACCOUNTS).prop_map(str::to_owned),
        1 => Just(String::new()),
    ]
}

/// Mostly small amounts; sometimes near `u64::MAX`, to reach the overflow checks.
fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => 0..300u64,
        1 => (u64::MAX - 300)..=u64::MAX,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => account().prop_map(|account| Op::Open { account }),
        3 => (account(), amount()).prop_map(|(account, amount)| Op::Deposit { account, amount }),
        6 => (account(), account(), amount())
            .prop_map(|(from, to, amount)| Op::Transfer { from, to, amount }),
        1 => account().prop_map(|account| Op::Balance { account }),
        1 => Just(Op::Audit),
    ]
}

/// The bank as a map, with the same checks in the same order.
#[derive(Default)]
struct Model {
    balances: BTreeMap<String, u64>,
    deposit_total: u64,
}

impl Model {
    fn apply(&mut self, op: &Op) -> Outcome {
        self.try_apply(op).unwrap_or_else(Outcome::Error)
    }

    fn balance(&self, account: &str) -> Result<u64, BankError> {
        self.balances
            .get(account)
            .copied()
            .ok_or_else(|| BankError::NoSuchAccount {
                account: account.to_owned(),
            })
    }

    fn try_apply(&mut self, op: &Op) -> Result<Outcome, BankError> {
        match op {
            Op::Open { account } => {
                if account.is_empty() {
                    return Err(BankError::InvalidAccountName {
                        name_bytes: 0,
                        name_bytes_max: bank::ACCOUNT_NAME_BYTES_MAX as u64,
                    });
                }
                if self.balances.contains_key(account) {
                    return Err(BankError::AccountExists {
                        account: account.clone(),
                    });
                }
                self.balances.insert(account.clone(), 0);
                Ok(Outcome::Opened)
            }
            Op::Deposit { account, amount } => {
                let balance = self.balance(account)?;
                let overflow = BankError::BalanceOverflow {
                    account: account.clone(),
                    balance,
                    amount: *amount,
                };
                let balance = balance.checked_add(*amount).ok_or(overflow)?;
                self.deposit_total = self.deposit_total.checked_add(*amount).ok_or(
                    BankError::DepositTotalOverflow {
                        deposit_total: self.deposit_total,
                        amount: *amount,
                    },
                )?;
                self.balances.insert(account.clone(), balance);
                Ok(Outcome::Deposited { balance })
            }
            Op::Transfer { from, to, amount } => {
                if from == to {
                    return Err(BankError::SameAccount {
                        account: from.clone(),
                    });
                }
                let (from_balance, to_balance) = (self.balance(from)?, self.balance(to)?);
                let from_balance =
                    from_balance
                        .checked_sub(*amount)
                        .ok_or(BankError::InsufficientFunds {
                            account: from.clone(),
                            balance: from_balance,
                            amount: *amount,
                        })?;
                // The invariant makes the recipient's overflow impossible here.
                let to_balance = to_balance + amount;
                self.balances.insert(from.clone(), from_balance);
                self.balances.insert(to.clone(), to_balance);
                Ok(Outcome::Transferred {
                    from_balance,
                    to_balance,
                })
            }
            Op::Balance { account } => Ok(Outcome::Balance(self.balance(account)?)),
            Op::Audit => Ok(Outcome::Audit(self.audit())),
        }
    }

    fn audit(&self) -> Audit {
        Audit {
            account_count: self.balances.len() as u64,
            balance_sum: self.balances.values().map(|&b| u128::from(b)).sum(),
            deposit_total: self.deposit_total,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn balances_always_sum_to_deposits(
        funds in proptest::collection::vec(0..500u64, 3),
        random_ops in proptest::collection::vec(op(), 1..60),
    ) {
        // Most sequences start with three funded accounts, so that transfers mostly
        // succeed; dave is left for the random operations to open (or not).
        let ops: Vec<Op> = ACCOUNTS[..3]
            .iter()
            .zip(&funds)
            .flat_map(|(&account, &amount)| {
                let account = account.to_owned();
                [Op::Open { account: account.clone() }, Op::Deposit { account, amount }]
            })
            .chain(random_ops)
            .collect();
        let mut store = ObjectStore::new(common::params());
        let mut model = Model::default();
        for (step, op) in ops.iter().enumerate() {
            let reply = common::execute(&Bank, &mut store, step as u64, &bank::encode_op(op));
            let outcome = bank::decode_result(&reply).unwrap();
            prop_assert_eq!(&outcome, &model.apply(op), "step {} op {:?}", step, op);

            let audit = bank::audit(&StateAccess::new(&store)).unwrap();
            prop_assert!(audit.is_balanced(), "step {}: {:?}", step, audit);
            prop_assert_eq!(audit, model.audit());
            for (account, &expected) in &model.balances {
                let reply = common::execute(
                    &Bank,
                    &mut store,
                    step as u64,
                    &bank::encode_op(&Op::Balance { account: account.clone() }),
                );
                let Outcome::Balance(balance) = bank::decode_result(&reply).unwrap() else {
                    panic!("balance of an open account {account:?}");
                };
                prop_assert!(balance <= audit.deposit_total);
                prop_assert_eq!(balance, expected);
            }
        }
    }
}
