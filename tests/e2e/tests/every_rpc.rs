//! Every RPC of the four services, called with the real grpcurl binary against the four
//! real binaries `make run` starts (issues #8-#11: "every RPC works through grpcurl").
//! The calls follow a customer's life in a sensible order, each with realistic
//! arguments, and each JSON answer is checked on a value that could be wrong. The set of
//! RPCs called must equal the set the services expose through reflection (`grpcurl
//! list` + `describe`): a new RPC without a call here fails the test.
//!
//! The commands and their outputs are docs/grpcurl.md: the test fails when the document
//! lacks one of the commands, and `E2E_WRITE_GRPCURL_DOC=1` rewrites it from this run.
//! Each command runs in bash with the variables a developer's shell would hold (`$TOKEN`,
//! `$SERVICE_TOKEN`, `$CUSTOMER_TOKEN`, the four addresses and the ids earlier commands
//! printed), so the document shows them as typed.

use std::collections::BTreeSet;

use e2e::grpcurl::{Session, Step, at, str_at};
use e2e::{Service, Stack, customer_token, operator_token, service_token, workspace_root};
use serde_json::Value;

/// grpcurl's exit code when `-max-time` ends a call: 64 + DEADLINE_EXCEEDED (4).
const EXIT_MAX_TIME: i32 = 68;

/// An int64 (grpcurl prints them as JSON strings) or an int32 (a number).
fn int_at(value: &Value, pointer: &str) -> i64 {
    match at(value, pointer) {
        Value::String(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("not an integer at {pointer} in {value:#}")),
        Value::Number(number) => number.as_i64().expect("an integer"),
        other => panic!("not an integer at {pointer}: {other}"),
    }
}

fn array_at<'a>(value: &'a Value, pointer: &str) -> &'a Vec<Value> {
    at(value, pointer)
        .as_array()
        .unwrap_or_else(|| panic!("no array at {pointer} in {value:#}"))
}

/// A server stream's answers: grpcurl prints one JSON object per message.
fn json_stream(stdout: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|error| panic!("not a JSON stream ({error}):\n{stdout}"))
}

const SERVICES: [(Service, &str, &str); 4] = [
    (
        Service::Account,
        "ACCOUNT",
        "microloan.account.v1.AccountService",
    ),
    (
        Service::Scoring,
        "SCORING",
        "microloan.scoring.v1.ScoringService",
    ),
    (
        Service::Ledger,
        "LEDGER",
        "microloan.ledger.v1.LedgerService",
    ),
    (
        Service::Notification,
        "NOTIFICATION",
        "microloan.notification.v1.NotificationService",
    ),
];

/// The ledger-only customer and loan the ledger's own write RPCs are shown on (as
/// account calls them with a service token), and two platform funding sub-accounts.
const LEDGER_CUSTOMER_ID: &str = "0193a000-0000-7000-8000-00000000c001";
const LEDGER_LINE_ID: &str = "0193a000-0000-7000-8000-00000000a001";
const LEDGER_LOAN_ID: &str = "0193a000-0000-7000-8000-00000000b001";
const FUNDING_A: &str = "0193a000-0000-7000-8000-00000000f001";
const FUNDING_B: &str = "0193a000-0000-7000-8000-00000000f002";

#[tokio::test]
async fn every_rpc_answers_through_grpcurl() {
    // `make run`'s configuration, except that a limit increase may be asked for right
    // after the line opens (the default cooldown is 30 days from opening).
    let stack = Stack::start_with(&[(
        Some(Service::Account),
        "LIMIT_INCREASE_COOLDOWN_DAYS".to_owned(),
        "0".to_owned(),
    )])
    .await
    .expect("the four services start");
    let mut s = Session::new();
    s.set("TOKEN", &operator_token());
    s.set("SERVICE_TOKEN", &service_token());
    for (service, variable, _) in SERVICES {
        s.set(variable, &format!("127.0.0.1:{}", stack.grpc_port(service)));
    }

    // --- what the services expose (reflection) -----------------------------------------
    let mut exposed = BTreeSet::new();
    for (_, variable, name) in SERVICES {
        let listed = s.run(
            &format!("The services on ${variable}"),
            &format!("grpcurl -plaintext ${variable} list"),
        );
        assert!(
            listed.lines().any(|line| line == name),
            "{name} in:\n{listed}"
        );
        let methods = s.run(
            &format!("The RPCs of {name}"),
            &format!("grpcurl -plaintext ${variable} list {name}"),
        );
        let described = s.run(
            &format!("Describe {name}"),
            &format!("grpcurl -plaintext ${variable} describe {name}"),
        );
        for method in methods.lines().filter(|line| !line.trim().is_empty()) {
            let short = method
                .strip_prefix(&format!("{name}."))
                .unwrap_or_else(|| panic!("{method} is not a method of {name}"));
            assert!(
                described.contains(&format!("rpc {short} (")),
                "describe {name} lacks rpc {short}:\n{described}"
            );
            exposed.insert(format!("{name}/{short}"));
        }
    }
    assert_eq!(exposed.len(), 40, "the four services' RPCs: {exposed:#?}");

    // --- a customer (account) ---------------------------------------------------------
    let created = s.json(
        "AccountService/CreateCustomer (operator)",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{"request_id": "rpc-create-1", "name": "李华", "national_id": "110105199003078035", "phone": "+8613812345678", "annual_income": {"currency_code": "CNY", "minor_units": "18000000"}, "locale": "en", "device_id": "rpc-device-1"}' $ACCOUNT microloan.account.v1.AccountService/CreateCustomer"#,
    );
    assert_eq!(
        str_at(&created, "/customer/status"),
        "CUSTOMER_STATUS_ACTIVE"
    );
    assert_ne!(str_at(&created, "/customer/nameMasked"), "李华", "masked");
    let customer_id = str_at(&created, "/customer/customerId").to_owned();
    s.set("CUSTOMER_ID", &customer_id);
    s.set("CUSTOMER_TOKEN", &customer_token(&customer_id));

    let fetched = s.json(
        "AccountService/GetCustomer (the customer's own token)",
        r#"grpcurl -plaintext -H "authorization: Bearer $CUSTOMER_TOKEN" -d "{\"customer_id\": \"$CUSTOMER_ID\"}" $ACCOUNT microloan.account.v1.AccountService/GetCustomer"#,
    );
    assert_eq!(str_at(&fetched, "/customer/customerId"), customer_id);
    assert_eq!(
        int_at(&fetched, "/customer/annualIncome/minorUnits"),
        18_000_000
    );

    let suspended = s.json(
        "AccountService/UpdateCustomerStatus: suspend (operator)",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"request_id\": \"rpc-suspend-1\", \"customer_id\": \"$CUSTOMER_ID\", \"status\": \"CUSTOMER_STATUS_SUSPENDED\", \"reason\": \"identity documents under review\"}" $ACCOUNT microloan.account.v1.AccountService/UpdateCustomerStatus"#,
    );
    assert_eq!(
        str_at(&suspended, "/customer/status"),
        "CUSTOMER_STATUS_SUSPENDED"
    );
    let reactivated = s.json(
        "AccountService/UpdateCustomerStatus: reactivate (operator)",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"request_id\": \"rpc-reactivate-1\", \"customer_id\": \"$CUSTOMER_ID\", \"status\": \"CUSTOMER_STATUS_ACTIVE\", \"reason\": \"documents verified\"}" $ACCOUNT microloan.account.v1.AccountService/UpdateCustomerStatus"#,
    );
    assert_eq!(
        str_at(&reactivated, "/customer/status"),
        "CUSTOMER_STATUS_ACTIVE"
    );

    let contact = s.json(
        "AccountService/GetContactPoint (service: notification's SMS destination)",
        r#"grpcurl -plaintext -H "authorization: Bearer $SERVICE_TOKEN" -d "{\"customer_id\": \"$CUSTOMER_ID\", \"purpose\": \"SMS delivery of a repayment reminder\"}" $ACCOUNT microloan.account.v1.AccountService/GetContactPoint"#,
    );
    assert_eq!(str_at(&contact, "/phone"), "+8613812345678", "unmasked");
    assert_eq!(str_at(&contact, "/locale"), "en");

    // --- what scoring knows, and the application ----------------------------------------
    // A client stream: three batches in one call (grpcurl reads concatenated JSON
    // messages from stdin with -d @).
    let ingested = s.json(
        "ScoringService/IngestSignals: a client stream of three batches (service)",
        r#"grpcurl -plaintext -H "authorization: Bearer $SERVICE_TOKEN" -d @ $SCORING microloan.scoring.v1.ScoringService/IngestSignals <<EOF
{"request_id": "rpc-signals-1", "signals": [
  {"behaviour_event": {"customer_id": "$CUSTOMER_ID", "flow": "BEHAVIOUR_FLOW_INCOME", "category": "BEHAVIOUR_CATEGORY_SALARY", "amount": {"currency_code": "CNY", "minor_units": "1500000"}, "occur_time": "$(date -u -d '-60 days' +%FT%TZ)"}},
  {"behaviour_event": {"customer_id": "$CUSTOMER_ID", "flow": "BEHAVIOUR_FLOW_INCOME", "category": "BEHAVIOUR_CATEGORY_SALARY", "amount": {"currency_code": "CNY", "minor_units": "1500000"}, "occur_time": "$(date -u -d '-30 days' +%FT%TZ)"}}]}
{"request_id": "rpc-signals-2", "signals": [
  {"behaviour_event": {"customer_id": "$CUSTOMER_ID", "flow": "BEHAVIOUR_FLOW_SPEND", "category": "BEHAVIOUR_CATEGORY_GROCERIES", "amount": {"currency_code": "CNY", "minor_units": "45000"}, "occur_time": "$(date -u -d '-20 days' +%FT%TZ)"}},
  {"behaviour_event": {"customer_id": "$CUSTOMER_ID", "flow": "BEHAVIOUR_FLOW_SPEND", "category": "BEHAVIOUR_CATEGORY_UTILITIES", "amount": {"currency_code": "CNY", "minor_units": "30000"}, "occur_time": "$(date -u -d '-10 days' +%FT%TZ)"}}]}
{"request_id": "rpc-signals-3", "signals": [
  {"social_edge": {"source_party_id": "$CUSTOMER_ID", "target_party_id": "ext:colleague-1", "kind": "SOCIAL_EDGE_KIND_CONTACT", "weight": "1", "occur_time": "$(date -u -d '-90 days' +%FT%TZ)"}},
  {"identity_sighting": {"customer_id": "$CUSTOMER_ID", "kind": "IDENTIFIER_KIND_DEVICE", "identifier": "rpc-device-1", "context": "SIGHTING_CONTEXT_LOGIN", "observe_time": "$(date -u -d '-1 days' +%FT%TZ)"}}]}
EOF"#,
    );
    assert_eq!(int_at(&ingested, "/batchesReceived"), 3, "{ingested:#}");
    assert_eq!(int_at(&ingested, "/signalsAccepted"), 6, "{ingested:#}");
    assert_eq!(int_at(&ingested, "/behaviourEvents"), 4, "{ingested:#}");

    let applied = s.json(
        "AccountService/ApplyForCreditLine (the customer)",
        r#"grpcurl -plaintext -H "authorization: Bearer $CUSTOMER_TOKEN" -d "{\"request_id\": \"rpc-apply-1\", \"customer_id\": \"$CUSTOMER_ID\", \"requested_limit\": {\"currency_code\": \"CNY\", \"minor_units\": \"500000\"}, \"device_id\": \"rpc-device-1\", \"data_consent\": true}" $ACCOUNT microloan.account.v1.AccountService/ApplyForCreditLine"#,
    );
    assert_eq!(
        str_at(&applied, "/outcome"),
        "DECISION_OUTCOME_APPROVED",
        "{applied:#}"
    );
    let opened_limit = int_at(&applied, "/creditLine/limit/minorUnits");
    assert!(
        (50_000..=500_000).contains(&opened_limit),
        "at most the 5,000 CNY asked for: {applied:#}"
    );
    s.set("DECISION_ID", str_at(&applied, "/decisionId"));

    let explained = s.json(
        "ScoringService/ExplainDecision (operator)",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"decision_id\": \"$DECISION_ID\"}" $SCORING microloan.scoring.v1.ScoringService/ExplainDecision"#,
    );
    assert_eq!(
        str_at(&explained, "/decision/customerId"),
        customer_id,
        "{explained:#}"
    );
    assert!(!array_at(&explained, "/contributions").is_empty());

    let evaluated = s.json(
        "ScoringService/Evaluate: a drawdown check (service)",
        r#"grpcurl -plaintext -H "authorization: Bearer $SERVICE_TOKEN" -d "{\"request_id\": \"rpc-evaluate-1\", \"customer_id\": \"$CUSTOMER_ID\", \"purpose\": \"DECISION_PURPOSE_DRAWDOWN\", \"current_limit\": {\"currency_code\": \"CNY\", \"minor_units\": \"500000\"}, \"drawdown_amount\": {\"currency_code\": \"CNY\", \"minor_units\": \"100000\"}}" $SCORING microloan.scoring.v1.ScoringService/Evaluate"#,
    );
    assert_eq!(
        str_at(&evaluated, "/decision/purpose"),
        "DECISION_PURPOSE_DRAWDOWN",
        "{evaluated:#}"
    );
    assert_eq!(str_at(&evaluated, "/decision/customerId"), customer_id);

    let model = s.json(
        "ScoringService/GetModelInfo (operator)",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{}' $SCORING microloan.scoring.v1.ScoringService/GetModelInfo"#,
    );
    assert_eq!(
        str_at(&model, "/model/modelVersion"),
        str_at(&explained, "/decision/modelVersion"),
        "the decision was made by the active model"
    );

    // --- the line ------------------------------------------------------------------------
    let line = s.json(
        "AccountService/GetCreditLine (the customer)",
        r#"grpcurl -plaintext -H "authorization: Bearer $CUSTOMER_TOKEN" -d "{\"customer_id\": \"$CUSTOMER_ID\"}" $ACCOUNT microloan.account.v1.AccountService/GetCreditLine"#,
    );
    assert_eq!(
        str_at(&line, "/creditLine/status"),
        "CREDIT_LINE_STATUS_ACTIVE"
    );
    assert_eq!(int_at(&line, "/creditLine/limit/minorUnits"), opened_limit);
    assert_eq!(
        int_at(&line, "/creditLine/available/minorUnits"),
        opened_limit
    );

    let increase = s.json(
        "AccountService/RequestLimitIncrease (the customer)",
        r#"grpcurl -plaintext -H "authorization: Bearer $CUSTOMER_TOKEN" -d "{\"request_id\": \"rpc-increase-1\", \"customer_id\": \"$CUSTOMER_ID\", \"requested_limit\": {\"currency_code\": \"CNY\", \"minor_units\": \"800000\"}, \"device_id\": \"rpc-device-1\"}" $ACCOUNT microloan.account.v1.AccountService/RequestLimitIncrease"#,
    );
    let increased_limit = int_at(&increase, "/creditLine/limit/minorUnits");
    if str_at(&increase, "/outcome") == "DECISION_OUTCOME_APPROVED" {
        assert!(
            increased_limit > opened_limit && increased_limit <= 800_000,
            "{increase:#}"
        );
    } else {
        assert_eq!(increased_limit, opened_limit, "{increase:#}");
    }

    let adjusted = s.json(
        "AccountService/AdjustCreditLine (operator)",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"request_id\": \"rpc-adjust-1\", \"customer_id\": \"$CUSTOMER_ID\", \"new_limit\": {\"currency_code\": \"CNY\", \"minor_units\": \"300000\"}, \"source\": \"CREDIT_LINE_CHANGE_SOURCE_OPERATOR\", \"reasons\": [{\"code\": \"OPERATOR_REVIEW\", \"description\": \"limit set after a call with the customer\"}], \"note\": \"customer asked for a lower limit\"}" $ACCOUNT microloan.account.v1.AccountService/AdjustCreditLine"#,
    );
    assert_eq!(
        int_at(&adjusted, "/creditLine/limit/minorUnits"),
        300_000,
        "{adjusted:#}"
    );

    // --- a loan ----------------------------------------------------------------------------
    let quoted = s.json(
        "AccountService/QuoteLoan (the customer)",
        r#"grpcurl -plaintext -H "authorization: Bearer $CUSTOMER_TOKEN" -d "{\"customer_id\": \"$CUSTOMER_ID\", \"principal\": {\"currency_code\": \"CNY\", \"minor_units\": \"100000\"}, \"term_months\": 5, \"repayment_method\": \"REPAYMENT_METHOD_EQUAL_INSTALLMENT\", \"purpose\": \"LOAN_PURPOSE_EDUCATION\"}" $ACCOUNT microloan.account.v1.AccountService/QuoteLoan"#,
    );
    assert_eq!(
        array_at(&quoted, "/quote/schedule/installments").len(),
        5,
        "{quoted:#}"
    );
    assert_eq!(
        int_at(&quoted, "/quote/schedule/totalPrincipal/minorUnits"),
        100_000
    );
    s.set("QUOTE_ID", str_at(&quoted, "/quote/quoteId"));

    let borrowed = s.json(
        "AccountService/Borrow on the quote (the customer)",
        r#"grpcurl -plaintext -H "authorization: Bearer $CUSTOMER_TOKEN" -d "{\"request_id\": \"rpc-borrow-1\", \"customer_id\": \"$CUSTOMER_ID\", \"principal\": {\"currency_code\": \"CNY\", \"minor_units\": \"100000\"}, \"term_months\": 5, \"repayment_method\": \"REPAYMENT_METHOD_EQUAL_INSTALLMENT\", \"quote_id\": \"$QUOTE_ID\", \"device_id\": \"rpc-device-1\", \"purpose\": \"LOAN_PURPOSE_EDUCATION\"}" $ACCOUNT microloan.account.v1.AccountService/Borrow"#,
    );
    assert_eq!(str_at(&borrowed, "/loan/status"), "LOAN_STATUS_ACTIVE");
    assert_eq!(str_at(&borrowed, "/loan/purpose"), "LOAN_PURPOSE_EDUCATION");
    assert_eq!(
        int_at(&borrowed, "/creditLine/utilised/minorUnits"),
        100_000
    );
    assert_eq!(
        int_at(&borrowed, "/creditLine/available/minorUnits"),
        200_000
    );
    let loan_id = str_at(&borrowed, "/loan/loanId").to_owned();
    s.set("LOAN_ID", &loan_id);

    let listed = s.json(
        "AccountService/ListLoans (the customer)",
        r#"grpcurl -plaintext -H "authorization: Bearer $CUSTOMER_TOKEN" -d "{\"customer_id\": \"$CUSTOMER_ID\", \"statuses\": [\"LOAN_STATUS_ACTIVE\"]}" $ACCOUNT microloan.account.v1.AccountService/ListLoans"#,
    );
    let loans = array_at(&listed, "/loans");
    assert_eq!(loans.len(), 1, "{listed:#}");
    assert_eq!(str_at(&loans[0], "/loanId"), loan_id);

    let repaid = s.json(
        "AccountService/Repay: part of the loan (the customer)",
        r#"grpcurl -plaintext -H "authorization: Bearer $CUSTOMER_TOKEN" -d "{\"request_id\": \"rpc-repay-1\", \"customer_id\": \"$CUSTOMER_ID\", \"loan_id\": \"$LOAN_ID\", \"amount\": {\"currency_code\": \"CNY\", \"minor_units\": \"20000\"}, \"external_reference\": \"alipay-2026-0001\"}" $ACCOUNT microloan.account.v1.AccountService/Repay"#,
    );
    assert_eq!(int_at(&repaid, "/repayment/amount/minorUnits"), 20_000);
    assert!(
        int_at(&repaid, "/loan/outstandingPrincipal/minorUnits") < 100_000,
        "{repaid:#}"
    );

    // --- the books (ledger) -------------------------------------------------------------
    let today = s.json(
        "LedgerService/GetBusinessDate",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" $LEDGER microloan.ledger.v1.LedgerService/GetBusinessDate"#,
    );
    assert_eq!(str_at(&today, "/timeZone"), "Asia/Shanghai");
    let date = at(&today, "/businessDate").clone();
    for (part, variable) in [("year", "YEAR"), ("month", "MONTH"), ("day", "DAY")] {
        s.set(variable, &int_at(&date, &format!("/{part}")).to_string());
    }

    let loan = s.json(
        "LedgerService/GetLoan",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"loan_id\": \"$LOAN_ID\"}" $LEDGER microloan.ledger.v1.LedgerService/GetLoan"#,
    );
    assert_eq!(str_at(&loan, "/loan/customerId"), customer_id, "{loan:#}");
    assert_eq!(int_at(&loan, "/loan/principal/minorUnits"), 100_000);

    let ledger_loans = s.json(
        "LedgerService/ListLoans",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"customer_id\": \"$CUSTOMER_ID\", \"page_size\": 10}" $LEDGER microloan.ledger.v1.LedgerService/ListLoans"#,
    );
    assert_eq!(
        str_at(&ledger_loans, "/loans/0/loanId"),
        loan_id,
        "{ledger_loans:#}"
    );

    let payoff = s.json(
        "LedgerService/QuotePayoff",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"loan_id\": \"$LOAN_ID\"}" $LEDGER microloan.ledger.v1.LedgerService/QuotePayoff"#,
    );
    assert_eq!(
        int_at(&payoff, "/quote/principal/minorUnits"),
        int_at(&repaid, "/loan/outstandingPrincipal/minorUnits"),
        "{payoff:#}"
    );

    let headroom = s.json(
        "LedgerService/GetAccount by key: the customer's available headroom",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"key\": {\"code\": \"ACCOUNT_CODE_CREDIT_LINE_AVAILABLE\", \"currency_code\": \"CNY\", \"customer_id\": \"$CUSTOMER_ID\"}}" $LEDGER microloan.ledger.v1.LedgerService/GetAccount"#,
    );
    assert_eq!(
        str_at(&headroom, "/account/customerId"),
        customer_id,
        "{headroom:#}"
    );
    assert_eq!(
        str_at(&headroom, "/account/code"),
        "ACCOUNT_CODE_CREDIT_LINE_AVAILABLE"
    );

    let transfers = s.json(
        "LedgerService/ListTransfers of the customer",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"customer_id\": \"$CUSTOMER_ID\", \"page_size\": 50}" $LEDGER microloan.ledger.v1.LedgerService/ListTransfers"#,
    );
    assert!(
        array_at(&transfers, "/transfers")
            .iter()
            .any(|transfer| transfer.pointer("/code")
                == Some(&Value::from("TRANSFER_CODE_DISBURSEMENT_PRINCIPAL"))),
        "{transfers:#}"
    );

    s.set("FUNDING_A", FUNDING_A);
    s.set("FUNDING_B", FUNDING_B);
    let accounts = s.json(
        "LedgerService/CreateAccounts: two platform funding sub-accounts (service)",
        r#"grpcurl -plaintext -H "authorization: Bearer $SERVICE_TOKEN" -d "{\"request_id\": \"rpc-accounts-1\", \"accounts\": [{\"account_id\": \"$FUNDING_A\", \"code\": \"ACCOUNT_CODE_FUNDING\", \"currency_code\": \"CNY\", \"sub_account\": 61}, {\"account_id\": \"$FUNDING_B\", \"code\": \"ACCOUNT_CODE_FUNDING\", \"currency_code\": \"CNY\", \"sub_account\": 62}]}" $LEDGER microloan.ledger.v1.LedgerService/CreateAccounts"#,
    );
    let results = array_at(&accounts, "/results");
    assert_eq!(results.len(), 2, "{accounts:#}");
    assert!(
        results.iter().all(|result| result.pointer("/status")
            == Some(&Value::from("CREATE_ACCOUNT_STATUS_CREATED"))),
        "{accounts:#}"
    );

    let moved = s.json(
        "LedgerService/CreateTransfers between them (service)",
        r#"grpcurl -plaintext -H "authorization: Bearer $SERVICE_TOKEN" -d "{\"request_id\": \"rpc-transfers-1\", \"transfers\": [{\"transfer_id\": \"0193a000-0000-7000-8000-0000000e0001\", \"debit_account_id\": \"$FUNDING_A\", \"credit_account_id\": \"$FUNDING_B\", \"amount\": {\"currency_code\": \"CNY\", \"minor_units\": \"100\"}, \"code\": \"TRANSFER_CODE_MANUAL_ADJUSTMENT\", \"description\": \"move 1.00 CNY between funding pools\"}]}" $LEDGER microloan.ledger.v1.LedgerService/CreateTransfers"#,
    );
    assert_eq!(
        str_at(&moved, "/results/0/status"),
        "CREATE_TRANSFER_STATUS_CREATED",
        "{moved:#}"
    );

    // The ledger's own write RPCs as account calls them (service token), on a customer
    // only the ledger knows.
    s.set("LEDGER_CUSTOMER_ID", LEDGER_CUSTOMER_ID);
    s.set("LEDGER_LINE_ID", LEDGER_LINE_ID);
    s.set("LEDGER_LOAN_ID", LEDGER_LOAN_ID);
    let opened = s.json(
        "LedgerService/OpenCreditLine (service)",
        r#"grpcurl -plaintext -H "authorization: Bearer $SERVICE_TOKEN" -d "{\"request_id\": \"rpc-open-1\", \"customer_id\": \"$LEDGER_CUSTOMER_ID\", \"credit_line_id\": \"$LEDGER_LINE_ID\", \"limit\": {\"currency_code\": \"CNY\", \"minor_units\": \"1000000\"}}" $LEDGER microloan.ledger.v1.LedgerService/OpenCreditLine"#,
    );
    assert_eq!(
        int_at(&opened, "/creditLine/limit/minorUnits"),
        1_000_000,
        "{opened:#}"
    );
    let changed = s.json(
        "LedgerService/ChangeCreditLimit (service)",
        r#"grpcurl -plaintext -H "authorization: Bearer $SERVICE_TOKEN" -d "{\"request_id\": \"rpc-limit-1\", \"customer_id\": \"$LEDGER_CUSTOMER_ID\", \"new_limit\": {\"currency_code\": \"CNY\", \"minor_units\": \"1200000\"}}" $LEDGER microloan.ledger.v1.LedgerService/ChangeCreditLimit"#,
    );
    assert_eq!(
        int_at(&changed, "/creditLine/available/minorUnits"),
        1_200_000,
        "{changed:#}"
    );
    let disbursed = s.json(
        "LedgerService/Disburse (service)",
        r#"grpcurl -plaintext -H "authorization: Bearer $SERVICE_TOKEN" -d "{\"request_id\": \"rpc-disburse-1\", \"customer_id\": \"$LEDGER_CUSTOMER_ID\", \"loan_id\": \"$LEDGER_LOAN_ID\", \"credit_line_id\": \"$LEDGER_LINE_ID\", \"principal\": {\"currency_code\": \"CNY\", \"minor_units\": \"50000\"}, \"term_months\": 10, \"repayment_method\": \"REPAYMENT_METHOD_EQUAL_PRINCIPAL\", \"daily_rate\": \"0.0005\", \"purpose\": \"LOAN_PURPOSE_SMALL_BUSINESS\"}" $LEDGER microloan.ledger.v1.LedgerService/Disburse"#,
    );
    assert_eq!(
        array_at(&disbursed, "/loan/schedule/installments").len(),
        10,
        "{disbursed:#}"
    );
    assert_eq!(
        int_at(&disbursed, "/creditLine/available/minorUnits"),
        1_150_000
    );
    let ledger_repaid = s.json(
        "LedgerService/Repay (service)",
        r#"grpcurl -plaintext -H "authorization: Bearer $SERVICE_TOKEN" -d "{\"request_id\": \"rpc-ledger-repay-1\", \"customer_id\": \"$LEDGER_CUSTOMER_ID\", \"loan_id\": \"$LEDGER_LOAN_ID\", \"amount\": {\"currency_code\": \"CNY\", \"minor_units\": \"5000\"}}" $LEDGER microloan.ledger.v1.LedgerService/Repay"#,
    );
    assert_eq!(
        int_at(&ledger_repaid, "/repayment/amount/minorUnits"),
        5_000,
        "{ledger_repaid:#}"
    );
    let written_off = s.json(
        "LedgerService/WriteOff (operator)",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"request_id\": \"rpc-writeoff-1\", \"loan_id\": \"$LEDGER_LOAN_ID\", \"reason\": \"WRITE_OFF_REASON_DECEASED\", \"note\": \"death certificate received\"}" $LEDGER microloan.ledger.v1.LedgerService/WriteOff"#,
    );
    assert_eq!(
        str_at(&written_off, "/loan/status"),
        "LOAN_STATUS_WRITTEN_OFF",
        "{written_off:#}"
    );
    assert_eq!(
        int_at(&written_off, "/principal/minorUnits"),
        int_at(&ledger_repaid, "/loan/outstandingPrincipal/minorUnits")
    );

    // --- paying off, closing the day, the reports ---------------------------------------
    let paid_off = s.json(
        "AccountService/Repay: pay off (the customer)",
        r#"grpcurl -plaintext -H "authorization: Bearer $CUSTOMER_TOKEN" -d "{\"request_id\": \"rpc-payoff-1\", \"customer_id\": \"$CUSTOMER_ID\", \"loan_id\": \"$LOAN_ID\", \"pay_off\": true}" $ACCOUNT microloan.account.v1.AccountService/Repay"#,
    );
    assert_eq!(
        str_at(&paid_off, "/loan/status"),
        "LOAN_STATUS_PAID_OFF",
        "{paid_off:#}"
    );
    assert_eq!(
        int_at(&paid_off, "/creditLine/available/minorUnits"),
        300_000,
        "the headroom is back"
    );

    let closed = s.json(
        "LedgerService/RunEndOfDay (operator)",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"request_id\": \"rpc-eod-$YEAR-$MONTH-$DAY\", \"business_date\": {\"year\": $YEAR, \"month\": $MONTH, \"day\": $DAY}}" $LEDGER microloan.ledger.v1.LedgerService/RunEndOfDay"#,
    );
    assert_eq!(at(&closed, "/summary/businessDate"), &date, "{closed:#}");
    assert_ne!(at(&closed, "/summary/nextBusinessDate"), &date);

    let trial = s.json(
        "LedgerService/GetTrialBalance",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{"currency_code": "CNY"}' $LEDGER microloan.ledger.v1.LedgerService/GetTrialBalance"#,
    );
    assert_eq!(at(&trial, "/balanced"), &Value::Bool(true), "{trial:#}");
    let integrity = s.json(
        "LedgerService/VerifyIntegrity",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{}' $LEDGER microloan.ledger.v1.LedgerService/VerifyIntegrity"#,
    );
    assert_eq!(at(&integrity, "/ok"), &Value::Bool(true), "{integrity:#}");
    let report = s.json(
        "LedgerService/GetPortfolioReport",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d '{"currency_code": "CNY"}' $LEDGER microloan.ledger.v1.LedgerService/GetPortfolioReport"#,
    );
    // Both loans are closed: one paid off, one written off.
    assert!(
        report.pointer("/report/activeLoans").is_none(),
        "no active loan (a zero int64 is omitted): {report:#}"
    );
    assert_eq!(int_at(&report, "/report/loansPaidOff"), 1, "{report:#}");
    assert_eq!(int_at(&report, "/report/loansWrittenOff"), 1, "{report:#}");
    assert_eq!(
        int_at(&report, "/report/cumulativeDisbursed/minorUnits"),
        150_000
    );

    let review = s.json(
        "ScoringService/RunPortfolioReview: a dry run for one customer (operator)",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"request_id\": \"rpc-review-1\", \"customer_ids\": [\"$CUSTOMER_ID\"], \"dry_run\": true}" $SCORING microloan.scoring.v1.ScoringService/RunPortfolioReview"#,
    );
    assert_eq!(at(&review, "/dryRun"), &Value::Bool(true), "{review:#}");
    assert_eq!(int_at(&review, "/linesReviewed"), 1, "{review:#}");

    // --- notices (notification) ---------------------------------------------------------
    let preferences = s.json(
        "NotificationService/SetPreferences (the customer)",
        r#"grpcurl -plaintext -H "authorization: Bearer $CUSTOMER_TOKEN" -d "{\"request_id\": \"rpc-prefs-1\", \"preferences\": {\"customer_id\": \"$CUSTOMER_ID\", \"locale\": \"zh-CN\", \"channels\": [{\"channel\": \"CHANNEL_IN_APP\", \"enabled\": true, \"marketing_enabled\": false}]}}" $NOTIFICATION microloan.notification.v1.NotificationService/SetPreferences"#,
    );
    assert_eq!(
        str_at(&preferences, "/preferences/locale"),
        "zh-CN",
        "{preferences:#}"
    );
    let read_back = s.json(
        "NotificationService/GetPreferences (the customer)",
        r#"grpcurl -plaintext -H "authorization: Bearer $CUSTOMER_TOKEN" -d "{\"customer_id\": \"$CUSTOMER_ID\"}" $NOTIFICATION microloan.notification.v1.NotificationService/GetPreferences"#,
    );
    assert_eq!(str_at(&read_back, "/preferences/locale"), "zh-CN");
    assert_eq!(
        str_at(&read_back, "/preferences/channels/0/channel"),
        "CHANNEL_IN_APP",
        "{read_back:#}"
    );

    let first = s.json(
        "NotificationService/Send: an in-app notice (operator)",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"request_id\": \"rpc-send-1\", \"customer_id\": \"$CUSTOMER_ID\", \"message_class\": \"MESSAGE_CLASS_SERVICE\", \"channels\": [\"CHANNEL_IN_APP\"], \"raw\": {\"title\": \"Maintenance\", \"body\": \"The app is down for maintenance tonight 01:00-02:00.\"}}" $NOTIFICATION microloan.notification.v1.NotificationService/Send"#,
    );
    assert_eq!(
        str_at(&first, "/notifications/0/channel"),
        "CHANNEL_IN_APP",
        "{first:#}"
    );
    let first_id = str_at(&first, "/notifications/0/notificationId").to_owned();
    s.set("NOTIFICATION_ID", &first_id);
    let got = s.json(
        "NotificationService/GetNotification (the customer)",
        r#"grpcurl -plaintext -H "authorization: Bearer $CUSTOMER_TOKEN" -d "{\"notification_id\": \"$NOTIFICATION_ID\"}" $NOTIFICATION microloan.notification.v1.NotificationService/GetNotification"#,
    );
    assert_eq!(str_at(&got, "/notification/customerId"), customer_id);
    assert_eq!(
        str_at(&got, "/notification/status"),
        "NOTIFICATION_STATUS_SENT",
        "in-app notices are stored, so sent at once: {got:#}"
    );
    let second = s.json(
        "NotificationService/Send: a second one (operator)",
        r#"grpcurl -plaintext -H "authorization: Bearer $TOKEN" -d "{\"request_id\": \"rpc-send-2\", \"customer_id\": \"$CUSTOMER_ID\", \"message_class\": \"MESSAGE_CLASS_SERVICE\", \"channels\": [\"CHANNEL_IN_APP\"], \"raw\": {\"title\": \"Maintenance done\", \"body\": \"The app is back.\"}}" $NOTIFICATION microloan.notification.v1.NotificationService/Send"#,
    );
    let second_id = str_at(&second, "/notifications/0/notificationId").to_owned();
    let listed_notices = s.json(
        "NotificationService/ListNotifications (the customer)",
        r#"grpcurl -plaintext -H "authorization: Bearer $CUSTOMER_TOKEN" -d "{\"customer_id\": \"$CUSTOMER_ID\", \"channels\": [\"CHANNEL_IN_APP\"], \"page_size\": 50}" $NOTIFICATION microloan.notification.v1.NotificationService/ListNotifications"#,
    );
    let ids: Vec<&str> = array_at(&listed_notices, "/notifications")
        .iter()
        .filter_map(|notice| notice.pointer("/notificationId").and_then(Value::as_str))
        .collect();
    assert!(
        ids.contains(&first_id.as_str()) && ids.contains(&second_id.as_str()),
        "{listed_notices:#}"
    );
    // A server stream: resuming after the first notice replays the later ones, then the
    // stream stays open (heartbeats) until -max-time ends it.
    let streamed = s.run_expecting(
        "NotificationService/Subscribe: resume after the first notice, 3 s (the customer)",
        r#"grpcurl -plaintext -max-time 3 -H "authorization: Bearer $CUSTOMER_TOKEN" -d "{\"customer_id\": \"$CUSTOMER_ID\", \"resume_after_id\": \"$NOTIFICATION_ID\"}" $NOTIFICATION microloan.notification.v1.NotificationService/Subscribe"#,
        EXIT_MAX_TIME,
    );
    let items = json_stream(&streamed);
    let replayed: Vec<&str> = items
        .iter()
        .filter_map(|item| {
            item.pointer("/notification/notificationId")
                .and_then(Value::as_str)
        })
        .collect();
    assert!(
        replayed.contains(&second_id.as_str()) && !replayed.contains(&first_id.as_str()),
        "the notice after the resume point, not the one before: {items:#?}"
    );

    // Every RPC the services expose was called, and nothing else.
    assert_eq!(
        s.called, exposed,
        "called (left) vs exposed through reflection (right)"
    );
    write_or_check_document(&s.steps);
    stack.stop().await.expect("a clean stop");
}

/// Long answers (descriptions, schedules) are cut in the document, not in the test.
const DOC_OUTPUT_LINES_MAX: usize = 40;

/// docs/grpcurl.md: rewritten from this run with `E2E_WRITE_GRPCURL_DOC=1`, else it must
/// hold every command this test ran, verbatim.
fn write_or_check_document(steps: &[Step]) {
    let path = workspace_root().join("docs/grpcurl.md");
    if std::env::var("E2E_WRITE_GRPCURL_DOC").as_deref() != Ok("1") {
        let doc = std::fs::read_to_string(&path).expect("docs/grpcurl.md exists");
        let missing: Vec<&str> = steps
            .iter()
            .filter(|step| !doc.contains(&step.command))
            .map(|step| step.title.as_str())
            .collect();
        assert!(
            missing.is_empty(),
            "docs/grpcurl.md lacks the commands of {missing:#?}\n(E2E_WRITE_GRPCURL_DOC=1 cargo nextest run -p microloan-e2e -E 'test(every_rpc)' rewrites it)"
        );
        return;
    }
    // An index first: each step numbered, so an RPC is found by name.
    let mut doc = String::from(HEADER);
    doc.push_str("\n| # | step |\n| ---: | :--- |\n");
    for (number, step) in steps.iter().enumerate() {
        doc.push_str(&format!("| {} | {} |\n", number + 1, step.title));
    }
    for (number, step) in steps.iter().enumerate() {
        let lines: Vec<&str> = step.output.trim_end().lines().collect();
        let cut = lines.len().saturating_sub(DOC_OUTPUT_LINES_MAX);
        let shown = lines
            .iter()
            .take(DOC_OUTPUT_LINES_MAX)
            .copied()
            .chain((cut > 0).then_some(""))
            .collect::<Vec<_>>()
            .join("\n");
        let more = if cut > 0 {
            format!("… ({cut} more lines)")
        } else {
            String::new()
        };
        doc.push_str(&format!(
            "\n## {}. {}\n\n```sh\n{}\n```\n\n```\n{shown}{more}\n```\n",
            number + 1,
            step.title,
            step.command,
        ));
    }
    std::fs::write(&path, doc).expect("write docs/grpcurl.md");
}

const HEADER: &str = "# Every RPC through grpcurl

All 40 RPCs of the four services (AccountService 12, ScoringService 5, LedgerService 17,
NotificationService 6), called with grpcurl in the order of a customer's life. Every
command below is run, in this order, by `tests/e2e/tests/every_rpc.rs` against the four
real binaries `make run` starts (with `LIMIT_INCREASE_COOLDOWN_DAYS=0` for account, so a
limit increase can be asked for right after the line opens), which checks a value in
each JSON answer and that the RPCs called are exactly the ones the services list through
reflection. The outputs are from such a run (ids, dates and times differ in yours). The
test fails when a command here is missing, and
`E2E_WRITE_GRPCURL_DOC=1 cargo nextest run -p microloan-e2e -E 'test(every_rpc)'`
rewrites this file.

Set up the shell once against `make run` (ports from `scripts/dev-env.sh`; tokens from
`make token`):

```sh
export ACCOUNT=127.0.0.1:50051 SCORING=127.0.0.1:50052 LEDGER=127.0.0.1:50053 NOTIFICATION=127.0.0.1:50054
export TOKEN=$(make -s token ROLE=operator) SERVICE_TOKEN=$(make -s token ROLE=service)
```

After CreateCustomer: `export CUSTOMER_ID=<customerId>` and
`export CUSTOMER_TOKEN=$(make -s token ROLE=customer CUSTOMER_ID=$CUSTOMER_ID)`. Later
commands use the ids earlier ones printed (`DECISION_ID`, `QUOTE_ID`, `LOAN_ID`,
`NOTIFICATION_ID`; `YEAR`/`MONTH`/`DAY` from GetBusinessDate) and a few fixed ones
(`FUNDING_A`, `FUNDING_B`, `LEDGER_CUSTOMER_ID`, `LEDGER_LINE_ID`, `LEDGER_LOAN_ID`:
any new UUIDs): `export` them as you go. Request JSON uses the proto field names;
answers use grpcurl's JSON names (camelCase, int64 as strings). Subscribe is a server
stream: `-max-time` ends it, and grpcurl then exits with 68 (64 + DEADLINE_EXCEEDED).
";
