//! What an operator does, with the real grpcurl binary and an operator token, against
//! the four real services; every command's JSON is checked. The commands are exactly
//! those of docs/operations.md: the test fails when the document lacks one of them, and
//! `E2E_WRITE_OPERATIONS_DOC=1` rewrites the document from this run.
//!
//! Each command is run by bash with the variables an operator's shell would hold
//! (`$TOKEN`, `$ACCOUNT`, `$SCORING`, `$LEDGER`, `$NOTIFICATION`, and the ids earlier
//! commands printed), so the document shows them as an operator types them.

use std::time::Duration;

use e2e::grpcurl::{Session, Step, str_at};
use e2e::{Service, Stack, operator_token, workspace_root};
use serde_json::Value;

#[tokio::test]
async fn an_operator_runs_the_platform_with_grpcurl() {
    // SMS goes to a port nothing listens on, retried twice quickly: the notice ends
    // DEAD_LETTERED, which the operator inspects.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let sms_override =
        |key: &str, value: String| (Some(Service::Notification), key.to_owned(), value);
    let stack = Stack::start_with(&[
        sms_override(
            "NOTIFICATION_SMS_WEBHOOK_URL",
            format!("http://127.0.0.1:{closed_port}/sms"),
        ),
        sms_override(
            "NOTIFICATION_SMS_WEBHOOK_SECRET",
            "operator-test-sms-secret-0123".to_owned(),
        ),
        sms_override("NOTIFICATION_ATTEMPTS_MAX", "2".to_owned()),
        sms_override("NOTIFICATION_BACKOFF_BASE_MS", "10".to_owned()),
        sms_override("NOTIFICATION_BACKOFF_MAX_MS", "20".to_owned()),
    ])
    .await
    .expect("the four services start");

    let mut operator = Session::new();
    operator.set("TOKEN", &operator_token());
    for (service, variable) in [
        (Service::Account, "ACCOUNT"),
        (Service::Scoring, "SCORING"),
        (Service::Ledger, "LEDGER"),
        (Service::Notification, "NOTIFICATION"),
    ] {
        operator.set(variable, &format!("127.0.0.1:{}", stack.grpc_port(service)));
    }

    // --- what is there ---------------------------------------------------------------
    let listed = operator.run("List a service's APIs", "grpcurl -plaintext $ACCOUNT list");
    assert!(
        listed
            .lines()
            .any(|line| line == "microloan.account.v1.AccountService")
    );
    assert!(listed.lines().any(|line| line == "grpc.health.v1.Health"));
    let described = operator.run(
        "Describe an RPC",
        "grpcurl -plaintext $LEDGER describe microloan.ledger.v1.LedgerService.RunEndOfDay",
    );
    assert!(described.contains("rpc RunEndOfDay"), "{described}");
    let health = operator.json(
        "Health",
        "grpcurl -plaintext $SCORING grpc.health.v1.Health/Check",
    );
    assert_eq!(str_at(&health, "/status"), "SERVING");

    // --- a customer ----------------------------------------------------------------------
    let created = operator.json(
        "Create a customer",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{"request_id": "ops-create-1", "name": "王小明", "national_id": "110105199003078035", "phone": "+8613812345678", "annual_income": {"currency_code": "CNY", "minor_units": "12000000"}, "locale": "en", "device_id": "ops-device-1"}' $ACCOUNT microloan.account.v1.AccountService/CreateCustomer"#,
    );
    let customer_id = str_at(&created, "/customer/customerId").to_owned();
    assert_eq!(uuid::Uuid::parse_str(&customer_id).map(|_| ()), Ok(()));
    assert!(
        !created.to_string().contains("110105199003078035")
            && !created.to_string().contains("13812345678"),
        "PII comes back masked: {created:#}"
    );
    operator.set("CUSTOMER_ID", &customer_id);
    let fetched = operator.json(
        "Look a customer up",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"customer_id\": \"$CUSTOMER_ID\"}" $ACCOUNT microloan.account.v1.AccountService/GetCustomer"#,
    );
    assert_eq!(str_at(&fetched, "/customer/customerId"), customer_id);

    // --- a decision and its explanation ----------------------------------------------
    let decided = operator.json(
        "Score a customer",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"request_id\": \"ops-evaluate-1\", \"customer_id\": \"$CUSTOMER_ID\", \"purpose\": \"DECISION_PURPOSE_CREDIT_LINE_APPLICATION\", \"annual_income\": {\"currency_code\": \"CNY\", \"minor_units\": \"12000000\"}}" $SCORING microloan.scoring.v1.ScoringService/Evaluate"#,
    );
    let decision_id = str_at(&decided, "/decision/decisionId").to_owned();
    operator.set("DECISION_ID", &decision_id);
    let explained = operator.json(
        "Explain a decision",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"decision_id\": \"$DECISION_ID\"}" $SCORING microloan.scoring.v1.ScoringService/ExplainDecision"#,
    );
    assert_eq!(str_at(&explained, "/decision/decisionId"), decision_id);
    let contributions = explained
        .pointer("/contributions")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("feature contributions: {explained:#}"));
    assert!(!contributions.is_empty(), "{explained:#}");
    assert!(
        explained
            .pointer("/fraudChecks")
            .and_then(Value::as_array)
            .is_some_and(|checks| !checks.is_empty()),
        "every fraud rule that ran is listed: {explained:#}"
    );
    let model = operator.json(
        "The active model",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{}' $SCORING microloan.scoring.v1.ScoringService/GetModelInfo"#,
    );
    assert!(
        !str_at(&model, "/model/modelVersion").is_empty(),
        "{model:#}"
    );

    // --- the books ---------------------------------------------------------------------
    let today = operator.json(
        "The business date",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" $LEDGER microloan.ledger.v1.LedgerService/GetBusinessDate"#,
    );
    let date = today
        .pointer("/businessDate")
        .expect("a business date")
        .clone();
    for (part, variable) in [("year", "YEAR"), ("month", "MONTH"), ("day", "DAY")] {
        let value = date.get(part).and_then(Value::as_i64).expect("date part");
        operator.set(variable, &value.to_string());
    }
    let closed = operator.json(
        "Close the business day",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"request_id\": \"ops-eod-$YEAR-$MONTH-$DAY\", \"business_date\": {\"year\": $YEAR, \"month\": $MONTH, \"day\": $DAY}}" $LEDGER microloan.ledger.v1.LedgerService/RunEndOfDay"#,
    );
    assert_eq!(
        closed.pointer("/summary/businessDate"),
        Some(&date),
        "{closed:#}"
    );
    let after = operator.json(
        "The business date after end of day",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" $LEDGER microloan.ledger.v1.LedgerService/GetBusinessDate"#,
    );
    assert_ne!(
        after.pointer("/businessDate"),
        Some(&date),
        "the date advanced"
    );
    let report = operator.json(
        "The portfolio report",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{}' $LEDGER microloan.ledger.v1.LedgerService/GetPortfolioReport"#,
    );
    assert!(report.pointer("/report").is_some(), "{report:#}");
    let trial = operator.json(
        "The trial balance",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{}' $LEDGER microloan.ledger.v1.LedgerService/GetTrialBalance"#,
    );
    assert_eq!(
        trial.pointer("/balanced"),
        Some(&Value::Bool(true)),
        "{trial:#}"
    );
    let integrity = operator.json(
        "Verify the ledger",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{}' $LEDGER microloan.ledger.v1.LedgerService/VerifyIntegrity"#,
    );
    assert_eq!(
        integrity.pointer("/ok"),
        Some(&Value::Bool(true)),
        "{integrity:#}"
    );

    // --- a notice that could not be delivered -------------------------------------------
    let sent = operator.json(
        "Send a notice by SMS",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"request_id\": \"ops-send-1\", \"customer_id\": \"$CUSTOMER_ID\", \"message_class\": \"MESSAGE_CLASS_SERVICE\", \"channels\": [\"CHANNEL_SMS\"], \"raw\": {\"title\": \"Maintenance\", \"body\": \"The app is down for maintenance tonight 01:00-02:00.\"}}" $NOTIFICATION microloan.notification.v1.NotificationService/Send"#,
    );
    let notification_id = str_at(&sent, "/notifications/0/notificationId").to_owned();
    operator.set("NOTIFICATION_ID", &notification_id);
    // Delivery is asynchronous: two failed attempts, then DEAD_LETTERED. Bounded wait.
    let inspect = r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"notification_id\": \"$NOTIFICATION_ID\"}" $NOTIFICATION microloan.notification.v1.NotificationService/GetNotification"#;
    let mut dead = Value::Null;
    for _ in 0..300 {
        let probe = operator.json("Inspect a dead-lettered notice", inspect);
        operator.steps.pop();
        if str_at(&probe, "/notification/status") == "NOTIFICATION_STATUS_DEAD_LETTERED" {
            dead = probe;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!dead.is_null(), "the SMS was dead-lettered within 30 s");
    let dead = operator.json("Inspect a dead-lettered notice", inspect);
    let attempts = dead
        .pointer("/notification/attempts")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("attempts: {dead:#}"));
    assert_eq!(attempts.len(), 2, "{dead:#}");

    write_or_check_document(&operator.steps);
    stack.stop().await.expect("a clean stop");
}

/// docs/operations.md: rewritten from this run with `E2E_WRITE_OPERATIONS_DOC=1`, else
/// it must hold every command this test ran, verbatim.
fn write_or_check_document(steps: &[Step]) {
    let path = workspace_root().join("docs/operations.md");
    if std::env::var("E2E_WRITE_OPERATIONS_DOC").as_deref() == Ok("1") {
        let mut doc = String::from(OPERATIONS_HEADER);
        for step in steps {
            let lines: Vec<&str> = step.output.trim_end().lines().collect();
            let mut shown = lines[..lines.len().min(DOC_OUTPUT_LINES_MAX)].join("\n");
            if lines.len() > DOC_OUTPUT_LINES_MAX {
                shown.push_str(&format!(
                    "\n… ({} more lines)",
                    lines.len() - DOC_OUTPUT_LINES_MAX
                ));
            }
            let fence = if step.output.trim_start().starts_with('{') {
                "json"
            } else {
                "text"
            };
            doc.push_str(&format!(
                "\n### {}\n\n```sh\n{}\n```\n\n```{fence}\n{shown}\n```\n",
                step.title, step.command,
            ));
        }
        std::fs::write(&path, doc).expect("write docs/operations.md");
        return;
    }
    let doc = std::fs::read_to_string(&path).expect("docs/operations.md exists");
    for step in steps {
        assert!(
            doc.contains(&step.command),
            "docs/operations.md lacks the command of \"{}\":\n{}\n(E2E_WRITE_OPERATIONS_DOC=1 cargo nextest run -p microloan-e2e --test operator rewrites it)",
            step.title,
            step.command
        );
    }
}

/// Long answers (a model's bins, an explanation) are cut in the document, not in the test.
const DOC_OUTPUT_LINES_MAX: usize = 40;

const OPERATIONS_HEADER: &str = "# Operations: the platform through grpcurl

Every command below is run, in this order, by `tests/e2e/tests/operator.rs` against the
four real services, which checks each JSON answer; the outputs are from such a run
(ids, dates and times differ in yours). That test fails when a command here is missing,
and `E2E_WRITE_OPERATIONS_DOC=1 cargo nextest run -p microloan-e2e --test operator`
rewrites this file.

Set up the shell once. Against `make run` the services listen on the ports of
`scripts/dev-env.sh`; a token comes from `make token`:

```sh
export TOKEN=$(make -s token ROLE=operator)
export ACCOUNT=127.0.0.1:50051 SCORING=127.0.0.1:50052 LEDGER=127.0.0.1:50053 NOTIFICATION=127.0.0.1:50054
```

Later commands use the ids earlier ones printed (`CUSTOMER_ID`, `DECISION_ID`,
`NOTIFICATION_ID`; `YEAR`/`MONTH`/`DAY` from the business date): `export` them as you go.
Request JSON uses the proto field names; answers use grpcurl's JSON names (camelCase).
";
