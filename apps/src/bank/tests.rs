use super::*;
use zz_state_fetch::{ObjectStore, StateParams};

fn store() -> ObjectStore {
    ObjectStore::new(StateParams::new(3).unwrap())
}

/// Executes `op` in its own request and applies its writes, as a replica does. A
/// rejected operation must buffer no writes.
fn run(store: &mut ObjectStore, op: Op) -> Outcome {
    let mut state = StateAccess::new(store);
    let outcome = execute_op(&mut state, &op).unwrap();
    let writes = state.into_writes();
    if matches!(outcome, Outcome::Error(_)) {
        assert_eq!(writes, vec![], "rejected {op:?} buffered writes");
    }
    store.apply(writes).unwrap();
    outcome
}

fn open(account: &str) -> Op {
    Op::Open {
        account: account.to_owned(),
    }
}

fn deposit(account: &str, amount: u64) -> Op {
    Op::Deposit {
        account: account.to_owned(),
        amount,
    }
}

fn transfer(from: &str, to: &str, amount: u64) -> Op {
    Op::Transfer {
        from: from.to_owned(),
        to: to.to_owned(),
        amount,
    }
}

fn balance_of(store: &mut ObjectStore, account: &str) -> Outcome {
    run(
        store,
        Op::Balance {
            account: account.to_owned(),
        },
    )
}

fn audit_of(store: &ObjectStore) -> Audit {
    audit(&StateAccess::new(store)).unwrap()
}

fn error(outcome: Outcome) -> BankError {
    match outcome {
        Outcome::Error(error) => error,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// A bank with alice holding 100 and bob 0.
fn alice_and_bob() -> ObjectStore {
    let mut s = store();
    assert_eq!(run(&mut s, open("alice")), Outcome::Opened);
    assert_eq!(run(&mut s, open("bob")), Outcome::Opened);
    assert_eq!(
        run(&mut s, deposit("alice", 100)),
        Outcome::Deposited { balance: 100 }
    );
    s
}

#[test]
fn open_deposit_transfer_balance() {
    let mut s = alice_and_bob();
    assert_eq!(balance_of(&mut s, "bob"), Outcome::Balance(0));
    assert_eq!(
        run(&mut s, transfer("alice", "bob", 30)),
        Outcome::Transferred {
            from_balance: 70,
            to_balance: 30
        }
    );
    // Transferring everything, and transferring nothing, are ordinary.
    assert_eq!(
        run(&mut s, transfer("alice", "bob", 70)),
        Outcome::Transferred {
            from_balance: 0,
            to_balance: 100
        }
    );
    assert_eq!(
        run(&mut s, transfer("alice", "bob", 0)),
        Outcome::Transferred {
            from_balance: 0,
            to_balance: 100
        }
    );
    assert_eq!(balance_of(&mut s, "alice"), Outcome::Balance(0));
    assert_eq!(balance_of(&mut s, "bob"), Outcome::Balance(100));
    let expected = Audit {
        account_count: 2,
        balance_sum: 100,
        deposit_total: 100,
    };
    assert_eq!(audit_of(&s), expected);
    assert_eq!(run(&mut s, Op::Audit), Outcome::Audit(expected));
}

#[test]
fn open_rejects_duplicates_and_bad_names() {
    let mut s = alice_and_bob();
    assert_eq!(
        error(run(&mut s, open("alice"))),
        BankError::AccountExists {
            account: "alice".into()
        }
    );
    // Reopening did not reset the balance.
    assert_eq!(balance_of(&mut s, "alice"), Outcome::Balance(100));
    assert_eq!(
        error(run(&mut s, open(""))),
        BankError::InvalidAccountName {
            name_bytes: 0,
            name_bytes_max: 64
        }
    );
    let long = "x".repeat(ACCOUNT_NAME_BYTES_MAX + 1);
    assert!(matches!(
        error(run(&mut s, open(&long))),
        BankError::InvalidAccountName { name_bytes: 65, .. }
    ));
    let longest = "x".repeat(ACCOUNT_NAME_BYTES_MAX);
    assert_eq!(run(&mut s, open(&longest)), Outcome::Opened);
}

#[test]
fn open_rejects_past_the_account_count_max() {
    let mut s = store();
    s.apply(vec![(
        [zz_execution::app::APP_KEY_PREFIX, ACCOUNT_COUNT_KEY].concat(),
        Some(encode_amount(ACCOUNT_COUNT_MAX)),
    )])
    .unwrap();
    assert_eq!(
        error(run(&mut s, open("one-too-many"))),
        BankError::TooManyAccounts {
            account_count_max: ACCOUNT_COUNT_MAX
        }
    );
}

#[test]
fn deposit_rejects_missing_accounts_and_overflow() {
    let mut s = alice_and_bob();
    assert_eq!(
        error(run(&mut s, deposit("carol", 1))),
        BankError::NoSuchAccount {
            account: "carol".into()
        }
    );
    assert_eq!(
        error(run(&mut s, deposit("alice", u64::MAX))),
        BankError::BalanceOverflow {
            account: "alice".into(),
            balance: 100,
            amount: u64::MAX
        }
    );
    // Bob's balance would fit, the deposit total would not.
    assert_eq!(
        error(run(&mut s, deposit("bob", u64::MAX - 50))),
        BankError::DepositTotalOverflow {
            deposit_total: 100,
            amount: u64::MAX - 50
        }
    );
    assert!(audit_of(&s).is_balanced());
    assert_eq!(audit_of(&s).deposit_total, 100);
}

#[test]
fn transfer_rejects_each_bad_case_and_changes_nothing() {
    let mut s = alice_and_bob();
    assert_eq!(
        error(run(&mut s, transfer("alice", "alice", 1))),
        BankError::SameAccount {
            account: "alice".into()
        }
    );
    assert_eq!(
        error(run(&mut s, transfer("carol", "bob", 1))),
        BankError::NoSuchAccount {
            account: "carol".into()
        }
    );
    assert_eq!(
        error(run(&mut s, transfer("alice", "carol", 1))),
        BankError::NoSuchAccount {
            account: "carol".into()
        }
    );
    assert_eq!(
        error(run(&mut s, transfer("alice", "bob", 101))),
        BankError::InsufficientFunds {
            account: "alice".into(),
            balance: 100,
            amount: 101
        }
    );
    assert_eq!(balance_of(&mut s, "alice"), Outcome::Balance(100));
    assert_eq!(balance_of(&mut s, "bob"), Outcome::Balance(0));
}

#[test]
fn transfer_rejects_recipient_overflow() {
    // Unreachable through operations while the invariant holds; built by hand.
    let mut s = store();
    let key = |account| [zz_execution::app::APP_KEY_PREFIX, &account_key(account)].concat();
    s.apply(vec![
        (key("rich"), Some(encode_amount(u64::MAX))),
        (key("poor"), Some(encode_amount(1))),
    ])
    .unwrap();
    assert_eq!(
        error(run(&mut s, transfer("poor", "rich", 1))),
        BankError::BalanceOverflow {
            account: "rich".into(),
            balance: u64::MAX,
            amount: 1
        }
    );
}

#[test]
fn balance_of_a_missing_account_is_an_error() {
    let mut s = store();
    assert_eq!(
        error(balance_of(&mut s, "nobody")),
        BankError::NoSuchAccount {
            account: "nobody".into()
        }
    );
}

#[test]
fn audit_pages_through_more_accounts_than_one_scan_returns() {
    let mut s = store();
    let count = SCAN_COUNT_MAX as u64 + 3;
    let mut writes: Vec<_> = (0..count)
        .map(|i| {
            let key = [
                zz_execution::app::APP_KEY_PREFIX,
                &account_key(&format!("a{i}")),
            ]
            .concat();
            (key, Some(encode_amount(2)))
        })
        .collect();
    let meta = |key: &[u8], value| {
        (
            [zz_execution::app::APP_KEY_PREFIX, key].concat(),
            Some(encode_amount(value)),
        )
    };
    writes.push(meta(DEPOSIT_TOTAL_KEY, 2 * count));
    writes.push(meta(ACCOUNT_COUNT_KEY, count));
    s.apply(writes).unwrap();
    let found = audit_of(&s);
    assert_eq!(found.account_count, count);
    assert_eq!(found.balance_sum, u128::from(2 * count));
    assert!(found.is_balanced());
}

#[test]
fn malformed_operations_are_answered_with_an_error() {
    let mut s = alice_and_bob();
    let context = ExecContext {
        app: zz_protocol::AppId(1),
        client: zz_protocol::ClientId(1),
        timestamp_ms: 0,
        seed: 0,
    };
    let mut trailing = encode_op(&Op::Audit);
    trailing.push(0);
    // Tag of `Open`, then a string of length 1 that is not UTF-8.
    let not_utf8 = [0u8, 1, 0xff];
    for bad in [&[][..], &[9], &trailing, &not_utf8] {
        let mut state = StateAccess::new(&s);
        let reply = Bank.execute(&context, &mut state, bad).unwrap();
        assert!(state.into_writes().is_empty());
        assert_eq!(
            decode_result(&reply).unwrap(),
            Outcome::Error(BankError::BadOperation {
                op_size: bad.len() as u64
            })
        );
    }
    assert!(audit_of(&s).is_balanced());
    assert_eq!(balance_of(&mut s, "alice"), Outcome::Balance(100));
}
