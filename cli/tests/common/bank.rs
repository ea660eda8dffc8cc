//! A bank workload the activation tests share: accounts opened with a deposit each,
//! concurrent transfers around the ring of accounts, and an audit that the money is all
//! there.

use std::time::Duration;
use zz_apps::bank::{self, Op, Outcome};
use zz_client::{Client, ClientPool};
use zz_protocol::AppId;

pub const ACCOUNTS: u64 = 4;
pub const OPENING_DEPOSIT: u64 = 1_000;

/// One bank operation, which must complete within 30 s.
pub async fn call(client: &Client, app: AppId, op: Op) -> Outcome {
    let result = client
        .invoke_with_deadline(app, bank::encode_op(&op), Duration::from_secs(30))
        .await
        .unwrap_or_else(|error| panic!("{op:?}: {error}"));
    bank::decode_result(&result).expect("a bank outcome")
}

/// Open accounts a0..a3 with the opening deposit each.
pub async fn open_accounts(client: &Client, app: AppId) {
    for index in 0..ACCOUNTS {
        let account = format!("a{index}");
        let open = Op::Open {
            account: account.clone(),
        };
        assert_eq!(call(client, app, open).await, Outcome::Opened);
        let deposit = Op::Deposit {
            account,
            amount: OPENING_DEPOSIT,
        };
        assert!(matches!(
            call(client, app, deposit).await,
            Outcome::Deposited { .. }
        ));
    }
}

/// Clients 1..=4 of `pool` each make `count` transfers, 20 ms apart, in the background.
pub fn spawn_transfers(
    pool: &ClientPool,
    app: AppId,
    count: u64,
) -> Vec<tokio::task::JoinHandle<()>> {
    (1..=4u32)
        .map(|index| {
            let client = pool.client(index);
            tokio::spawn(async move {
                for i in 0..count {
                    let from = (index as u64 + i) % ACCOUNTS;
                    let op = Op::Transfer {
                        from: format!("a{from}"),
                        to: format!("a{}", (from + 1) % ACCOUNTS),
                        amount: 1 + i % 9,
                    };
                    call(&client, app, op).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect()
}

/// The audit finds every deposited unit, in deposits and in balances.
pub async fn assert_conserved(client: &Client, app: AppId) {
    let Outcome::Audit(audit) = call(client, app, Op::Audit).await else {
        panic!("audit failed")
    };
    assert_eq!(audit.deposit_total, ACCOUNTS * OPENING_DEPOSIT);
    assert_eq!(audit.balance_sum, (ACCOUNTS * OPENING_DEPOSIT) as u128);
}
