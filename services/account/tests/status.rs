//! UpdateCustomerStatus against a real account server and a real ledger server: the
//! lifecycle, the audit trail, and closing only when the ledger holds nothing owed.

use account::Account;
use ledger::Ledger;
use microloan_platform::{auth::Role, testing};
use microloan_proto::{
    account::v1::{
        CreateCustomerRequest, CustomerStatus, UpdateCustomerStatusRequest,
        account_service_client::AccountServiceClient,
    },
    common::v1::{LoanPurpose, Money, RepaymentMethod},
    ledger::v1::{
        DisburseRequest, OpenCreditLineRequest, RepayRequest,
        ledger_service_client::LedgerServiceClient,
    },
};
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

fn cny(minor_units: i64) -> Option<Money> {
    Some(Money {
        currency_code: "CNY".into(),
        minor_units,
    })
}

fn new_customer() -> CreateCustomerRequest {
    CreateCustomerRequest {
        request_id: Uuid::now_v7().to_string(),
        name: "赵六".into(),
        national_id: "11010519491231002X".into(),
        phone: "+8613912345678".into(),
        annual_income: cny(9_000_000),
        locale: "zh-CN".into(),
        device_id: String::new(),
    }
}

fn change(customer_id: &str, status: CustomerStatus, reason: &str) -> UpdateCustomerStatusRequest {
    UpdateCustomerStatusRequest {
        request_id: Uuid::now_v7().to_string(),
        customer_id: customer_id.to_owned(),
        status: status as i32,
        reason: reason.to_owned(),
    }
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_customer_is_suspended_reactivated_and_closed_only_when_nothing_is_owed() {
    let ledger_app = testing::spawn::<Ledger>(&[]).await;
    let ledger_url = ledger_app.url();
    let app = testing::spawn::<Account>(&[
        ("LEDGER_URL", ledger_url.as_str()),
        ("CUSTOMER_AGE_MAX_YEARS", "99"),
    ])
    .await;
    let mut account = AccountServiceClient::new(app.channel().await);
    let mut ledger = LedgerServiceClient::new(ledger_app.channel().await);
    let operator = testing::token(Role::Operator, None);
    let service = testing::token(Role::Service, None);
    let customer_id = account
        .create_customer(testing::with_token(new_customer(), &service))
        .await
        .expect("created")
        .into_inner()
        .customer
        .expect("customer")
        .customer_id;

    let suspended = account
        .update_customer_status(testing::with_token(
            change(&customer_id, CustomerStatus::Suspended, "fraud review"),
            &operator,
        ))
        .await
        .expect("suspended")
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(suspended.status, CustomerStatus::Suspended as i32);
    assert_eq!(suspended.status_reason, "fraud review");
    let status = account
        .update_customer_status(testing::with_token(
            change(&customer_id, CustomerStatus::Active, "cleared"),
            &service,
        ))
        .await
        .expect_err("operators only");
    assert_eq!(status.code(), Code::PermissionDenied);
    account
        .update_customer_status(testing::with_token(
            change(&customer_id, CustomerStatus::Active, "cleared"),
            &operator,
        ))
        .await
        .expect("reactivated");

    // A loan in the ledger: closing is refused until it is paid off.
    let credit_line_id = Uuid::now_v7().to_string();
    ledger
        .open_credit_line(testing::with_token(
            OpenCreditLineRequest {
                request_id: Uuid::now_v7().to_string(),
                customer_id: customer_id.clone(),
                credit_line_id: credit_line_id.clone(),
                limit: cny(1_000_000),
            },
            &service,
        ))
        .await
        .expect("line");
    let loan_id = Uuid::now_v7().to_string();
    let disbursed = ledger
        .disburse(testing::with_token(
            DisburseRequest {
                request_id: Uuid::now_v7().to_string(),
                customer_id: customer_id.clone(),
                loan_id: loan_id.clone(),
                credit_line_id,
                principal: cny(100_000),
                term_months: 5,
                repayment_method: RepaymentMethod::EqualPrincipal as i32,
                daily_rate: "0.0004".into(),
                penalty_daily_rate: String::new(),
                purpose: LoanPurpose::Consumption as i32,
            },
            &service,
        ))
        .await
        .expect("disbursed");
    assert!(disbursed.into_inner().loan.is_some());

    let refused = account
        .update_customer_status(testing::with_token(
            change(&customer_id, CustomerStatus::Closed, "customer asked"),
            &operator,
        ))
        .await
        .expect_err("owes money");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "OUTSTANDING_BALANCE");

    ledger
        .repay(testing::with_token(
            RepayRequest {
                request_id: Uuid::now_v7().to_string(),
                customer_id: customer_id.clone(),
                loan_id,
                amount: None,
                pay_off: true,
                external_reference: String::new(),
            },
            &service,
        ))
        .await
        .expect("paid off");
    let closed = account
        .update_customer_status(testing::with_token(
            change(&customer_id, CustomerStatus::Closed, "customer asked"),
            &operator,
        ))
        .await
        .expect("closed")
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(closed.status, CustomerStatus::Closed as i32);
    let reopen = account
        .update_customer_status(testing::with_token(
            change(&customer_id, CustomerStatus::Active, "changed mind"),
            &operator,
        ))
        .await
        .expect_err("closed is terminal");
    assert_eq!(reason(&reopen), "CUSTOMER_NOT_ACTIVE");

    let pool = sqlx::PgPool::connect(&app.database_url)
        .await
        .expect("connect");
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE rpc = 'UpdateCustomerStatus'")
            .fetch_one(&pool)
            .await
            .expect("audit");
    assert_eq!(audited, 3, "suspend, reactivate, close");
    pool.close().await;
    app.stop().await.expect("clean stop");
    ledger_app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn bad_changes_name_their_fields_and_a_ledger_outage_is_unavailable() {
    // Nothing listens on the ledger address: closing cannot check what is owed.
    let nowhere = testing::free_local_addr().await;
    let ledger_url = format!("http://{nowhere}");
    let app = testing::spawn::<Account>(&[
        ("LEDGER_URL", ledger_url.as_str()),
        ("CUSTOMER_AGE_MAX_YEARS", "99"),
    ])
    .await;
    let mut account = AccountServiceClient::new(app.channel().await);
    let operator = testing::token(Role::Operator, None);
    let customer_id = account
        .create_customer(testing::with_token(new_customer(), &operator))
        .await
        .expect("created")
        .into_inner()
        .customer
        .expect("customer")
        .customer_id;

    let mut bad = change(&customer_id, CustomerStatus::Unspecified, "  ");
    bad.request_id = "spaces are not allowed".into();
    let status = account
        .update_customer_status(testing::with_token(bad, &operator))
        .await
        .expect_err("invalid");
    let fields: Vec<String> = status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(fields, ["request_id", "status", "reason"]);
    let unknown = account
        .update_customer_status(testing::with_token(
            change(&Uuid::now_v7().to_string(), CustomerStatus::Suspended, "x"),
            &operator,
        ))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);

    let outage = account
        .update_customer_status(testing::with_token(
            change(&customer_id, CustomerStatus::Closed, "customer asked"),
            &operator,
        ))
        .await
        .expect_err("ledger down");
    assert_eq!(outage.code(), Code::Unavailable);
    assert_eq!(reason(&outage), "DEPENDENCY_UNAVAILABLE");
    // Unchanged: still active, nothing audited.
    let pool = sqlx::PgPool::connect(&app.database_url)
        .await
        .expect("connect");
    let status: i16 = sqlx::query_scalar("SELECT status FROM customers")
        .fetch_one(&pool)
        .await
        .expect("row");
    assert_eq!(status, CustomerStatus::Active as i16);
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE rpc = 'UpdateCustomerStatus'")
            .fetch_one(&pool)
            .await
            .expect("audit");
    assert_eq!(audited, 0);
    pool.close().await;
    app.stop().await.expect("clean stop");
}
