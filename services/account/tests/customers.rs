//! CreateCustomer and GetCustomer against a real account server (port 0) and its own
//! database: validation, eligibility, idempotency, uniqueness, PII at rest, the
//! CustomerCreated event and the audit log.

use account::Account;
use microloan_platform::{
    auth::Role,
    testing::{self, TestApp},
};
use microloan_proto::{
    account::v1::{
        CreateCustomerRequest, CustomerStatus, GetContactPointRequest, GetCustomerRequest,
        account_service_client::AccountServiceClient,
    },
    common::v1::Money,
};
use sqlx::PgPool;
use tonic::{Code, Status, transport::Channel};
use tonic_types::StatusExt;

/// A valid id for a birth date.
fn national_id_born(birth: &str, serial: u32) -> String {
    microloan_domain::national_id::with_check_character(&format!("110105{birth}{serial:03}"))
        .expect("17 digits")
}

fn new_customer(request_id: &str, serial: u32) -> CreateCustomerRequest {
    CreateCustomerRequest {
        request_id: request_id.to_owned(),
        name: "王小明".into(),
        national_id: national_id_born("19900307", serial),
        phone: "+8613812345678".into(),
        annual_income: Some(Money {
            currency_code: "CNY".into(),
            minor_units: 12_000_000,
        }),
        locale: "en".into(),
        device_id: "device-42".into(),
    }
}

async fn client(app: &TestApp) -> AccountServiceClient<Channel> {
    AccountServiceClient::new(app.channel().await)
}

fn as_role<T>(role: Role, message: T) -> tonic::Request<T> {
    testing::with_token(message, &testing::token(role, None))
}

fn reason_and_metadata(status: &Status) -> (String, std::collections::HashMap<String, String>) {
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("no ErrorInfo on {status:?}"));
    assert_eq!(info.domain, "microloan.account");
    (info.reason, info.metadata)
}

fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

async fn pool(app: &TestApp) -> PgPool {
    PgPool::connect(&app.database_url).await.expect("connect")
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

#[tokio::test]
async fn a_new_customer_is_stored_sealed_and_returned_masked() {
    let app = testing::spawn::<Account>(&[]).await;
    let mut account = client(&app).await;
    let created = account
        .create_customer(as_role(Role::Service, new_customer("create-1", 1)))
        .await
        .expect("created")
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(created.status, CustomerStatus::Active as i32);
    assert_eq!(created.name_masked, "王**");
    assert_eq!(created.phone_masked, "+86 138****5678");
    assert_eq!(created.national_id_masked.len(), 18);
    assert!(created.national_id_masked.starts_with("110***********"));
    assert_eq!(created.locale, "en");
    assert_eq!(
        created.annual_income.as_ref().map(|m| m.minor_units),
        Some(12_000_000)
    );

    // The customer reads their own record; another customer's token cannot.
    let own = testing::token(Role::Customer, Some(&created.customer_id));
    let fetched = account
        .get_customer(testing::with_token(
            GetCustomerRequest {
                customer_id: created.customer_id.clone(),
            },
            &own,
        ))
        .await
        .expect("own record")
        .into_inner()
        .customer
        .expect("customer");
    assert_eq!(fetched, created);
    let stranger = testing::token(Role::Customer, Some("0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f"));
    let status = account
        .get_customer(testing::with_token(
            GetCustomerRequest {
                customer_id: created.customer_id.clone(),
            },
            &stranger,
        ))
        .await
        .expect_err("another customer's record");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(reason_and_metadata(&status).0, "NOT_RESOURCE_OWNER");

    // At rest: no plaintext PII anywhere in the row, and the event carries none.
    let pool = pool(&app).await;
    let row_text: String = sqlx::query_scalar("SELECT row_to_json(c)::text FROM customers c")
        .fetch_one(&pool)
        .await
        .expect("row");
    for plaintext in ["13812345678", "19900307", "王小明"] {
        assert!(!row_text.contains(plaintext), "{plaintext} stored in clear");
    }
    let payload: Vec<u8> = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE event_type = 'EVENT_TYPE_CUSTOMER_CREATED'",
    )
    .fetch_one(&pool)
    .await
    .expect("CustomerCreated in the outbox");
    let payload = String::from_utf8_lossy(&payload);
    assert!(payload.contains(&created.customer_id));
    assert!(!payload.contains("13812345678") && !payload.contains("王"));
    // A service call is not an operator change: nothing audited.
    assert_eq!(count(&pool, "SELECT count(*) FROM audit_log").await, 0);
    pool.close().await;
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_retry_returns_the_same_customer_and_a_reused_key_changes_nothing() {
    let app = testing::spawn::<Account>(&[]).await;
    let mut account = client(&app).await;
    let first = account
        .create_customer(as_role(Role::Operator, new_customer("retry-1", 2)))
        .await
        .expect("created")
        .into_inner();
    let again = account
        .create_customer(as_role(Role::Operator, new_customer("retry-1", 2)))
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(first, again);

    let mut other_body = new_customer("retry-1", 3);
    other_body.name = "李四".into();
    let status = account
        .create_customer(as_role(Role::Operator, other_body))
        .await
        .expect_err("key reused");
    assert_eq!(status.code(), Code::AlreadyExists);
    let (reason, metadata) = reason_and_metadata(&status);
    assert_eq!(reason, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(
        metadata.get("request_id").map(String::as_str),
        Some("retry-1")
    );

    // The same national id under a new key: CUSTOMER_EXISTS naming the customer.
    let status = account
        .create_customer(as_role(Role::Operator, new_customer("retry-2", 2)))
        .await
        .expect_err("duplicate national id");
    assert_eq!(status.code(), Code::AlreadyExists);
    let (reason, metadata) = reason_and_metadata(&status);
    assert_eq!(reason, "CUSTOMER_EXISTS");
    assert_eq!(
        metadata.get("customer_id"),
        first
            .customer
            .as_ref()
            .map(|customer| &customer.customer_id)
    );

    let pool = pool(&app).await;
    assert_eq!(count(&pool, "SELECT count(*) FROM customers").await, 1);
    assert_eq!(count(&pool, "SELECT count(*) FROM outbox").await, 1);
    // The operator's one successful creation is audited, with masked values only.
    let audit: (String, String, String) =
        sqlx::query_as("SELECT role, rpc, after::text FROM audit_log")
            .fetch_one(&pool)
            .await
            .expect("one audit row");
    assert_eq!(
        (audit.0.as_str(), audit.1.as_str()),
        ("operator", "CreateCustomer")
    );
    assert!(audit.2.contains("+86 138****5678") && !audit.2.contains("13812345678"));
    pool.close().await;
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn concurrent_retries_of_one_request_create_one_customer() {
    let app = testing::spawn::<Account>(&[]).await;
    let channel = app.channel().await;
    let calls = (0..8).map(|_| {
        let mut account = AccountServiceClient::new(channel.clone());
        async move {
            account
                .create_customer(as_role(Role::Service, new_customer("race-1", 4)))
                .await
                .map(|response| response.into_inner())
        }
    });
    let results = futures::future::join_all(calls).await;
    let ids: std::collections::HashSet<String> = results
        .into_iter()
        .map(|result| {
            result
                .expect("every retry succeeds")
                .customer
                .expect("customer")
                .customer_id
        })
        .collect();
    assert_eq!(ids.len(), 1);
    let pool = pool(&app).await;
    assert_eq!(count(&pool, "SELECT count(*) FROM customers").await, 1);
    pool.close().await;
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn bad_input_names_every_field_and_creates_nothing() {
    let app = testing::spawn::<Account>(&[]).await;
    let mut account = client(&app).await;
    let too_many_digits = CreateCustomerRequest {
        request_id: "bad id with spaces".into(),
        name: "Robert'); DROP TABLE customers;--".into(),
        national_id: "11010519900307001".into(),
        phone: "+86 138 1234 5678".into(),
        annual_income: Some(Money {
            currency_code: "CNY".into(),
            minor_units: -1,
        }),
        locale: "zh".into(),
        device_id: String::new(),
    };
    let status = account
        .create_customer(as_role(Role::Service, too_many_digits))
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        [
            "request_id",
            "name",
            "national_id",
            "phone",
            "annual_income",
            "locale"
        ]
    );
    for (field, request) in [
        (
            "name",
            CreateCustomerRequest {
                name: "😀".into(),
                ..new_customer("u1", 5)
            },
        ),
        (
            "name",
            CreateCustomerRequest {
                name: "名".repeat(65),
                ..new_customer("u2", 5)
            },
        ),
        (
            "annual_income",
            CreateCustomerRequest {
                annual_income: None,
                ..new_customer("u3", 5)
            },
        ),
        (
            "device_id",
            CreateCustomerRequest {
                device_id: "d".repeat(129),
                ..new_customer("u4", 5)
            },
        ),
        (
            "request_id",
            CreateCustomerRequest {
                request_id: String::new(),
                ..new_customer("", 5)
            },
        ),
    ] {
        let status = account
            .create_customer(as_role(Role::Service, request))
            .await
            .expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert_eq!(violated_fields(&status), [field]);
    }

    // Eligible by format, too young by age: FAILED_PRECONDITION with the rule.
    let minor = CreateCustomerRequest {
        national_id: national_id_born("20150101", 6),
        ..new_customer("minor-1", 6)
    };
    let status = account
        .create_customer(as_role(Role::Service, minor))
        .await
        .expect_err("too young");
    assert_eq!(status.code(), Code::FailedPrecondition);
    let (reason, metadata) = reason_and_metadata(&status);
    assert_eq!(reason, "CUSTOMER_NOT_ELIGIBLE");
    assert_eq!(metadata.get("rule").map(String::as_str), Some("age"));

    let status = account
        .get_customer(as_role(
            Role::Service,
            GetCustomerRequest {
                customer_id: "not-a-uuid".into(),
            },
        ))
        .await
        .expect_err("malformed id");
    assert_eq!(violated_fields(&status), ["customer_id"]);
    let status = account
        .get_customer(as_role(
            Role::Service,
            GetCustomerRequest {
                customer_id: "0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f".into(),
            },
        ))
        .await
        .expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound);

    let pool = pool(&app).await;
    assert_eq!(count(&pool, "SELECT count(*) FROM customers").await, 0);
    assert_eq!(count(&pool, "SELECT count(*) FROM outbox").await, 0);
    pool.close().await;
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn notification_reads_the_contact_point_unmasked_and_every_read_is_audited() {
    let app = testing::spawn::<Account>(&[]).await;
    let mut account = client(&app).await;
    let created = account
        .create_customer(as_role(Role::Service, new_customer("contact-1", 7)))
        .await
        .expect("created")
        .into_inner()
        .customer
        .expect("customer");
    let read = |purpose: &str| GetContactPointRequest {
        customer_id: created.customer_id.clone(),
        purpose: purpose.to_owned(),
    };
    let contact = account
        .get_contact_point(as_role(Role::Service, read("notification n1 SMS")))
        .await
        .expect("contact point")
        .into_inner();
    assert_eq!(contact.phone, "+8613812345678");
    assert_eq!(contact.locale, "en");
    assert_eq!(contact.status, CustomerStatus::Active as i32);

    // Only services: not the customer, not an operator.
    for role in [Role::Operator] {
        let status = account
            .get_contact_point(as_role(role, read("curious")))
            .await
            .expect_err("staff other than services");
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    let own = testing::token(Role::Customer, Some(&created.customer_id));
    let status = account
        .get_contact_point(testing::with_token(read("mine"), &own))
        .await
        .expect_err("customer");
    assert_eq!(status.code(), Code::PermissionDenied);

    let status = account
        .get_contact_point(as_role(Role::Service, read("")))
        .await
        .expect_err("no purpose");
    assert_eq!(violated_fields(&status), ["purpose"]);
    let status = account
        .get_contact_point(as_role(
            Role::Service,
            GetContactPointRequest {
                customer_id: "nope".into(),
                purpose: "p".repeat(129),
            },
        ))
        .await
        .expect_err("both fields bad");
    assert_eq!(violated_fields(&status), ["customer_id", "purpose"]);

    let pool = pool(&app).await;
    let purposes: Vec<String> = sqlx::query_scalar(
        "SELECT after->>'purpose' FROM audit_log WHERE rpc = 'GetContactPoint' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .expect("audit rows");
    assert_eq!(purposes, ["notification n1 SMS"]);
    pool.close().await;
    app.stop().await.expect("clean stop");
}
