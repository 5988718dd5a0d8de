//! Borrowing and repaying: QuoteLoan, Borrow, Repay, ListLoans. Money moves only in
//! the ledger; account checks what it owns (customer and line status, the product's
//! drawdown bounds), asks scoring, and keeps the purpose and the quote.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use microloan_domain::{
    DailyRate,
    loan::{RepaymentMethod, Schedule, TermMonths, apr_of_schedule, build_schedule},
};
use microloan_platform::{
    auth::Caller,
    convert,
    idempotency::{self, RequestKey},
};
use microloan_proto::{
    account::v1 as proto,
    common::v1 as common,
    google::r#type::Date,
    ledger::v1::{self as ledger, GetBusinessDateRequest},
    scoring::v1::{EvaluateRequest, EvaluationContext},
};
use prost::Message;
use uuid::Uuid;

use crate::{
    error::AccountError,
    grpc::{AccountApi, OwnedKey, cny, decode_stored, push_id, push_request_and_customer},
    lines::{
        Balance, CustomerHashes, Replayed, derived_id, ensure_customer_active, ensure_line_open,
        evaluation_context, found_customer, line_to_proto, owned_line_and_hashes,
    },
    peers::{from_peer, reason_of},
    store::customers::CustomerRow,
    store::lines::{
        DrawdownRecord, LineRow, QuoteRow, bump_version, close_unchanged, find_quote, insert_quote,
        record_drawdown,
    },
};

/// Longest device id and quote id (account.proto).
const DEVICE_CHARS_MAX: usize = 128;
const QUOTE_ID_CHARS_MAX: usize = 512;
const EXTERNAL_REFERENCE_CHARS_MAX: usize = 128;

/// A drawdown's terms, parsed (QuoteLoan and Borrow).
#[derive(Debug, Clone, Copy)]
struct Terms {
    customer_id: Uuid,
    principal_minor: i64,
    term: TermMonths,
    method: RepaymentMethod,
}

fn parse_terms(
    violations: &mut Vec<(&'static str, String)>,
    customer_id: &str,
    principal: Option<&common::Money>,
    term_months: i32,
    repayment_method: i32,
    offered_terms: &[u32],
) -> Option<Terms> {
    let customer_id = push_id(violations, "customer_id", customer_id);
    let principal_minor = match principal {
        None => {
            violations.push(("principal", "is required".into()));
            None
        }
        Some(money) if money.currency_code != "CNY" => {
            violations.push(("principal", "must be CNY".into()));
            None
        }
        Some(money) if money.minor_units <= 0 => {
            violations.push(("principal", "must be positive".into()));
            None
        }
        Some(money) => Some(money.minor_units),
    };
    let term = TermMonths::parse(i64::from(term_months), offered_terms)
        .map_err(|err| violations.push(("term_months", err.to_string())))
        .ok();
    let method = match common::RepaymentMethod::try_from(repayment_method) {
        Ok(common::RepaymentMethod::Unspecified | common::RepaymentMethod::EqualPrincipal) => {
            Some(RepaymentMethod::EqualPrincipal)
        }
        Ok(common::RepaymentMethod::EqualInstallment) => Some(RepaymentMethod::EqualInstallment),
        Err(_) => {
            violations.push(("repayment_method", "is not a RepaymentMethod".into()));
            None
        }
    };
    Some(Terms {
        customer_id: customer_id?,
        principal_minor: principal_minor?,
        term: term?,
        method: method?,
    })
}

fn method_number(method: RepaymentMethod) -> i16 {
    match method {
        RepaymentMethod::EqualPrincipal => common::RepaymentMethod::EqualPrincipal as i16,
        RepaymentMethod::EqualInstallment => common::RepaymentMethod::EqualInstallment as i16,
    }
}

fn date(date: NaiveDate) -> Option<Date> {
    Some(Date {
        year: date.year(),
        month: i32::try_from(date.month()).unwrap_or(0),
        day: i32::try_from(date.day()).unwrap_or(0),
    })
}

fn naive_date(date: Option<&Date>) -> Option<NaiveDate> {
    let date = date?;
    NaiveDate::from_ymd_opt(
        date.year,
        u32::try_from(date.month).ok()?,
        u32::try_from(date.day).ok()?,
    )
}

/// The schedule as the proto shows a quote's (no payments, status UNSPECIFIED).
fn schedule_to_proto(schedule: &Schedule) -> common::RepaymentSchedule {
    common::RepaymentSchedule {
        installments: schedule
            .installments()
            .iter()
            .map(|item| common::Installment {
                sequence: i32::try_from(item.sequence).unwrap_or(i32::MAX),
                due_date: date(item.due_date),
                principal: Some(cny(item.principal_minor)),
                interest: Some(cny(item.interest_minor)),
                total: Some(cny(item.total_minor)),
                remaining_principal: Some(cny(item.remaining_principal_minor)),
                period_days: i32::try_from(item.period_days).unwrap_or(i32::MAX),
                ..common::Installment::default()
            })
            .collect(),
        total_principal: Some(cny(schedule.total_principal_minor())),
        total_interest: Some(cny(schedule.total_interest_minor())),
        total_repayable: Some(cny(schedule.total_repayable_minor())),
        first_due_date: date(schedule.first_due_date()),
        maturity_date: date(schedule.maturity_date()),
    }
}

/// The end of today in Asia/Shanghai (UTC+8 all year since 1991), as a UTC instant.
fn end_of_shanghai_day(now: DateTime<Utc>) -> DateTime<Utc> {
    let offset = chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset");
    let local = now.with_timezone(&offset).date_naive();
    let next = local.succ_opt().unwrap_or(local);
    offset
        .from_local_datetime(&next.and_hms_opt(0, 0, 0).unwrap_or_default())
        .single()
        .map_or(now, |time| time.with_timezone(&Utc))
}

impl AccountApi {
    /// CUSTOMER_NOT_ACTIVE, LINE_CLOSED / LINE_FROZEN, then the drawdown bounds, in the
    /// documented order; returns the line and the customer's keyed hashes (read with it).
    async fn drawdown_preconditions(
        &self,
        caller: &Caller,
        terms: &Terms,
    ) -> Result<(LineRow, CustomerHashes), AccountError> {
        let owned = self
            .owned_customer_line_and_hashes(caller, terms.customer_id)
            .await?;
        self.drawdown_checks(terms, owned)
    }

    /// [`Self::drawdown_preconditions`] on the customer, line and hashes already read.
    fn drawdown_checks(
        &self,
        terms: &Terms,
        (customer, line, hashes): (CustomerRow, LineRow, CustomerHashes),
    ) -> Result<(LineRow, CustomerHashes), AccountError> {
        ensure_customer_active(&customer)?;
        ensure_line_open(&line)?;
        let product = &self.rules.product;
        if terms.principal_minor < product.drawdown_min_minor {
            return Err(AccountError::FailedPrecondition {
                reason: "DRAWDOWN_BELOW_MINIMUM",
                message: "the principal is below the minimum drawdown".into(),
                metadata: vec![("min_minor_units", product.drawdown_min_minor.to_string())],
            });
        }
        if terms.principal_minor > product.drawdown_max_minor {
            return Err(AccountError::FailedPrecondition {
                reason: "DRAWDOWN_LIMIT_EXCEEDED",
                message: "the principal is above the single-drawdown maximum".into(),
                metadata: vec![("max_minor_units", product.drawdown_max_minor.to_string())],
            });
        }
        Ok((line, hashes))
    }

    async fn business_date(&self) -> Result<NaiveDate, AccountError> {
        let mut ledger = self.peers.ledger.clone();
        let response = ledger
            .get_business_date(GetBusinessDateRequest::default())
            .await
            .map_err(|status| from_peer("ledger", &status))?
            .into_inner();
        naive_date(response.business_date.as_ref())
            .ok_or_else(|| AccountError::Internal("ledger business date unset".into()))
    }

    pub(crate) async fn quote_loan(
        &self,
        caller: &Caller,
        request: proto::QuoteLoanRequest,
    ) -> Result<proto::QuoteLoanResponse, AccountError> {
        let mut violations = Vec::new();
        let terms = parse_terms(
            &mut violations,
            &request.customer_id,
            request.principal.as_ref(),
            request.term_months,
            request.repayment_method,
            &self.rules.product.offered_terms,
        );
        // Optional here (the price is the same for every purpose), but a known value.
        if common::LoanPurpose::try_from(request.purpose).is_err() {
            violations.push(("purpose", "is not a LoanPurpose".into()));
        }
        let Some(terms) = terms.filter(|_| violations.is_empty()) else {
            return Err(AccountError::InvalidArgument(violations));
        };
        let (line, _) = self.drawdown_preconditions(caller, &terms).await?;
        let view = self.line_view(&line).await?;
        let available_minor = view.available.as_ref().map_or(0, |money| money.minor_units);
        if terms.principal_minor > available_minor {
            return Err(credit_limit_exceeded(available_minor));
        }
        let business_date = self.business_date().await?;
        let rate = DailyRate::from_decimal(line.daily_rate)
            .map_err(|err| AccountError::Internal(format!("line rate: {err}")))?;
        let schedule = build_schedule(
            terms.principal_minor,
            rate,
            terms.term,
            terms.method,
            business_date,
        )
        .map_err(|err| AccountError::Internal(format!("schedule: {err}")))?;
        let apr = apr_of_schedule(&schedule);
        if apr > self.rules.product.apr_cap {
            return Err(AccountError::FailedPrecondition {
                reason: "APR_CAP_EXCEEDED",
                message: "the loan's APR is above the cap".into(),
                metadata: vec![
                    ("apr", apr.to_string()),
                    ("cap", self.rules.product.apr_cap.normalize().to_string()),
                ],
            });
        }
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(self.rules.lines.quote_ttl)
            .unwrap_or(chrono::Duration::minutes(15));
        let expire_time = (now + ttl).min(end_of_shanghai_day(now));
        let quote = QuoteRow {
            quote_id: Uuid::now_v7(),
            customer_id: terms.customer_id,
            principal_minor: terms.principal_minor,
            term_months: i32::try_from(terms.term.months()).unwrap_or(i32::MAX),
            repayment_method: method_number(terms.method),
            daily_rate: line.daily_rate,
            penalty_daily_rate: line.penalty_daily_rate,
            business_date,
            expire_time,
        };
        let mut conn = self.pool.acquire().await?;
        insert_quote(&mut conn, &quote).await?;
        Ok(proto::QuoteLoanResponse {
            quote: Some(proto::LoanQuote {
                quote_id: quote.quote_id.simple().to_string(),
                customer_id: terms.customer_id.to_string(),
                principal: Some(cny(terms.principal_minor)),
                term_months: quote.term_months,
                repayment_method: i32::from(quote.repayment_method),
                daily_rate: line.daily_rate.normalize().to_string(),
                penalty_daily_rate: line.penalty_daily_rate.normalize().to_string(),
                apr: apr.to_string(),
                disbursement_date: date(business_date),
                schedule: Some(schedule_to_proto(&schedule)),
                expire_time: Some(convert::timestamp(expire_time)),
            }),
        })
    }

    /// The stored response of a finished earlier request with `key`, if any (another
    /// body under the key is IDEMPOTENCY_KEY_REUSED). Claims nothing: the journeys that
    /// call peers claim at the end, in the transaction that records their outcome, and
    /// a duplicate still in flight is caught there. One read, no transaction (issue 10:
    /// it was BEGIN, an INSERT and a ROLLBACK).
    pub(crate) async fn replayed<T: Message + Default>(
        &self,
        key: RequestKey<'_>,
    ) -> Result<Option<T>, AccountError> {
        let mut conn = self.pool.acquire().await?;
        match idempotency::replay(&mut conn, key).await {
            Ok(stored) => decode_stored(&stored).map(Some),
            Err(idempotency::IdempotencyError::NoStoredResponse) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    pub(crate) async fn borrow(
        &self,
        caller: &Caller,
        request: proto::BorrowRequest,
    ) -> Result<proto::BorrowResponse, AccountError> {
        let mut violations = Vec::new();
        if let Some(problem) = idempotency::request_id_problem(&request.request_id) {
            violations.push(("request_id", problem.to_owned()));
        }
        let terms = parse_terms(
            &mut violations,
            &request.customer_id,
            request.principal.as_ref(),
            request.term_months,
            request.repayment_method,
            &self.rules.product.offered_terms,
        );
        if request.quote_id.chars().count() > QUOTE_ID_CHARS_MAX {
            violations.push(("quote_id", "must be at most 512 characters".into()));
        }
        if request.device_id.chars().count() > DEVICE_CHARS_MAX {
            violations.push(("device_id", "must be at most 128 characters".into()));
        }
        let purpose = match common::LoanPurpose::try_from(request.purpose) {
            Ok(common::LoanPurpose::Unspecified) | Err(_) => {
                violations.push(("purpose", "is required (a LoanPurpose)".into()));
                None
            }
            Ok(purpose) => Some(purpose),
        };
        let (Some(terms), Some(purpose), true) = (terms, purpose, violations.is_empty()) else {
            return Err(AccountError::InvalidArgument(violations));
        };
        let owned_key = OwnedKey::new(caller, "Borrow", &request);
        let key = owned_key.key();
        // The replay lookup and the preconditions' rows in one statement (issue 10:
        // Borrow's latency is a chain of round trips); a stored answer wins over a
        // precondition that fails now.
        let found = match self
            .replayed_or_customer::<proto::BorrowResponse>(key, terms.customer_id)
            .await?
        {
            Replayed::Answer(stored) => return Ok(stored),
            Replayed::Customer(found) => *found,
        };
        let (line, hashes) = self.drawdown_checks(
            &terms,
            owned_line_and_hashes(caller, terms.customer_id, found)?,
        )?;
        let customer_text = terms.customer_id.to_string();
        // Independent reads, together: the rate limits (one Redis round trip), the
        // quote (Postgres and the ledger's business date) and the cached line (Redis).
        // Their errors keep the documented order: rate limit, then quote.
        let (limited, quote, cached) = tokio::join!(
            crate::rate_limit::check_customer_and_device(
                &self.cache,
                "Borrow",
                &customer_text,
                &request.device_id,
                self.rules.rate_limits.borrow,
            ),
            async {
                if request.quote_id.is_empty() {
                    Ok(None)
                } else {
                    self.locked_quote(&request.quote_id, &terms).await.map(Some)
                }
            },
            self.line_cache.get(terms.customer_id),
        );
        limited?;
        // The quoted terms, if a quote is locked.
        let (daily_rate, penalty_daily_rate) = match quote? {
            None => (line.daily_rate, line.penalty_daily_rate),
            Some(quote) => (quote.daily_rate, quote.penalty_daily_rate),
        };
        // Fast refusal from the cached headroom: never an approval (the ledger's posting
        // is), only a refusal that would certainly follow.
        if let Some((_, cached_line)) = &cached {
            let available_minor = cached_line
                .available
                .as_ref()
                .map_or(0, |money| money.minor_units);
            if terms.principal_minor > available_minor {
                return Err(credit_limit_exceeded(available_minor));
            }
        }
        // One loan per (customer, request_id), whoever retries it.
        let loan_id = derived_id(&["Borrow", &customer_text, &request.request_id]);
        let decision_id = self
            .drawdown_decision(
                &terms,
                loan_id,
                evaluation_context(&request.device_id, &hashes),
                cached.as_ref(),
            )
            .await?;
        let mut ledger_client = self.peers.ledger.clone();
        let disbursed = ledger_client
            .disburse(ledger::DisburseRequest {
                request_id: loan_id.to_string(),
                customer_id: customer_text.clone(),
                loan_id: loan_id.to_string(),
                credit_line_id: line.credit_line_id.to_string(),
                principal: Some(cny(terms.principal_minor)),
                term_months: i32::try_from(terms.term.months()).unwrap_or(i32::MAX),
                repayment_method: i32::from(method_number(terms.method)),
                daily_rate: daily_rate.normalize().to_string(),
                penalty_daily_rate: penalty_daily_rate.normalize().to_string(),
                purpose: purpose as i32,
            })
            .await
            .map_err(|status| match reason_of(&status).as_deref() {
                Some("LOAN_EXISTS") => AccountError::AlreadyExists {
                    reason: "IDEMPOTENCY_KEY_REUSED",
                    message: "request_id was already used with a different request".into(),
                    metadata: vec![("request_id", request.request_id.clone())],
                },
                _ => from_peer("ledger", &status),
            })?
            .into_inner();
        let balance = Balance::of_ledger(disbursed.credit_line.as_ref());
        // The usual case: the line is unchanged since it was read above, so the response
        // is known now and one statement claims the key with it, bumps the version and
        // records the drawdown (no BEGIN or COMMIT). Otherwise the general path below.
        let after = self.line_after_close(&line, &balance);
        let response = proto::BorrowResponse {
            loan: disbursed.loan.clone(),
            credit_line: Some(after.1.clone()),
        };
        let drawdown = DrawdownRecord {
            loan_id,
            purpose: purpose as i16,
            decision_id: Some(decision_id),
        };
        if self
            .close_fast(key, &response, &line, Some(&drawdown), &after)
            .await?
        {
            return Ok(response);
        }
        let mut tx = self.pool.begin().await?;
        if let Some(stored) = idempotency::claim(&mut tx, key).await? {
            return decode_stored(&stored);
        }
        let after_row = record_drawdown(
            &mut tx,
            loan_id,
            terms.customer_id,
            purpose as i16,
            Some(decision_id),
        )
        .await?
        .ok_or_else(|| AccountError::Internal("the line vanished".into()))?;
        let credit_line =
            line_to_proto(&after_row, &balance, &self.rules.product, &self.rules.lines);
        let response = proto::BorrowResponse {
            loan: disbursed.loan,
            credit_line: Some(credit_line.clone()),
        };
        idempotency::record_response(&mut tx, key, &response.encode_to_vec()).await?;
        tx.commit().await?;
        self.line_cache
            .put(terms.customer_id, after_row.cache_version, &credit_line)
            .await;
        Ok(response)
    }

    /// The line `line` becomes once a close bumps it: its next version and its view
    /// with the ledger's `balance`.
    fn line_after_close(&self, line: &LineRow, balance: &Balance) -> (i64, proto::CreditLine) {
        let after = LineRow {
            cache_version: line.cache_version + 1,
            ..line.clone()
        };
        let view = line_to_proto(&after, balance, &self.rules.product, &self.rules.lines);
        (after.cache_version, view)
    }

    /// Borrow's and Repay's usual close ([`close_unchanged`]: the key claimed with
    /// `response`, `line` bumped, the drawdown recorded, in one statement), then the
    /// cache refreshed with `after` ([`Self::line_after_close`]). `false`: nothing
    /// changed, take the general path.
    async fn close_fast(
        &self,
        key: RequestKey<'_>,
        response: &impl Message,
        line: &LineRow,
        drawdown: Option<&DrawdownRecord>,
        after: &(i64, proto::CreditLine),
    ) -> Result<bool, AccountError> {
        let mut conn = self.pool.acquire().await?;
        let closed =
            close_unchanged(&mut conn, key, &response.encode_to_vec(), line, drawdown).await?;
        drop(conn);
        if closed {
            let (version, view) = after;
            self.line_cache.put(line.customer_id, *version, view).await;
        }
        Ok(closed)
    }

    /// The quote `quote_id` if it may be borrowed on now with `terms`.
    async fn locked_quote(&self, quote_id: &str, terms: &Terms) -> Result<QuoteRow, AccountError> {
        let expired = || AccountError::precondition("QUOTE_EXPIRED", "the quote has expired");
        let Ok(id) = Uuid::try_parse(quote_id) else {
            return Err(expired());
        };
        let mut conn = self.pool.acquire().await?;
        let quote = find_quote(&mut conn, id)
            .await?
            .filter(|quote| quote.customer_id == terms.customer_id)
            .ok_or_else(expired)?;
        drop(conn);
        let matches = quote.principal_minor == terms.principal_minor
            && i64::from(quote.term_months) == i64::from(terms.term.months())
            && quote.repayment_method == method_number(terms.method);
        if !matches {
            return Err(AccountError::InvalidArgument(vec![(
                "quote_id",
                "principal, term_months and repayment_method must match the quote".into(),
            )]));
        }
        if Utc::now() > quote.expire_time || self.business_date().await? != quote.business_date {
            return Err(expired());
        }
        Ok(quote)
    }

    /// Drawdown monitoring: scoring's Evaluate(DRAWDOWN); the decision id if approved.
    async fn drawdown_decision(
        &self,
        terms: &Terms,
        loan_id: Uuid,
        context: EvaluationContext,
        cached: Option<&(i64, proto::CreditLine)>,
    ) -> Result<Uuid, AccountError> {
        let current_limit = cached.and_then(|(_, line)| line.limit.clone());
        // The key names every input that can differ between retries of one Borrow (the
        // cached limit is absent on one attempt, present or changed on the next): a
        // retry with the same inputs replays the decision, one with new inputs gets a
        // new decision, never IDEMPOTENCY_KEY_REUSED. The loan itself is deduplicated by
        // the ledger on loan_id whatever the decision.
        let limit_key = current_limit
            .as_ref()
            .map_or_else(|| "none".to_owned(), |money| money.minor_units.to_string());
        let mut scoring = self.peers.scoring.clone();
        let decision = scoring
            .evaluate(EvaluateRequest {
                request_id: format!("drawdown-{loan_id}-{limit_key}"),
                customer_id: terms.customer_id.to_string(),
                purpose: common::DecisionPurpose::Drawdown as i32,
                current_limit,
                drawdown_amount: Some(cny(terms.principal_minor)),
                context: Some(context),
                ..EvaluateRequest::default()
            })
            .await
            .map_err(|status| from_peer("scoring", &status))?
            .into_inner()
            .decision
            .ok_or_else(|| AccountError::Internal("scoring returned no decision".into()))?;
        let decision_id = decision.decision_id.clone();
        match common::DecisionOutcome::try_from(decision.outcome) {
            Ok(common::DecisionOutcome::Approved) => Uuid::try_parse(&decision_id)
                .map_err(|_| AccountError::Internal("scoring decision id".into())),
            Ok(common::DecisionOutcome::ManualReview) => Err(AccountError::FailedPrecondition {
                reason: "DRAWDOWN_UNDER_REVIEW",
                message: "the drawdown is held for review".into(),
                metadata: vec![("decision_id", decision_id)],
            }),
            _ => Err(AccountError::FailedPrecondition {
                reason: "DRAWDOWN_DECLINED",
                message: "the drawdown was declined".into(),
                metadata: vec![("decision_id", decision_id)],
            }),
        }
    }

    pub(crate) async fn repay(
        &self,
        caller: &Caller,
        request: proto::RepayRequest,
    ) -> Result<proto::RepayResponse, AccountError> {
        let mut violations = Vec::new();
        let customer_id =
            push_request_and_customer(&mut violations, &request.request_id, &request.customer_id);
        let loan_id = push_id(&mut violations, "loan_id", &request.loan_id);
        match (request.amount.as_ref(), request.pay_off) {
            (Some(_), true) | (None, false) => violations.push((
                "amount",
                "exactly one of amount and pay_off must be set".into(),
            )),
            (Some(money), false) if money.currency_code != "CNY" || money.minor_units <= 0 => {
                violations.push(("amount", "must be a positive CNY amount".into()));
            }
            _ => {}
        }
        if request.external_reference.chars().count() > EXTERNAL_REFERENCE_CHARS_MAX {
            violations.push((
                "external_reference",
                "must be at most 128 characters".into(),
            ));
        }
        let (Some(customer_id), Some(loan_id), true) =
            (customer_id, loan_id, violations.is_empty())
        else {
            return Err(AccountError::InvalidArgument(violations));
        };
        let owned_key = OwnedKey::new(caller, "Repay", &request);
        let (key, caller_key) = (owned_key.key(), owned_key.caller.as_str());
        // The replay lookup and the customer with its line (the row the response is built
        // from) in one statement (issue 10: Repay's latency is a chain of round trips); a
        // stored answer wins over a precondition that fails now.
        let found = match self
            .replayed_or_customer::<proto::RepayResponse>(key, customer_id)
            .await?
        {
            Replayed::Answer(stored) => return Ok(stored),
            Replayed::Customer(found) => found_customer(customer_id, *found)?,
        };
        if !caller.may_access_customer(customer_id) {
            return Err(AccountError::NotResourceOwner);
        }
        let line = found.line;
        let mut ledger_client = self.peers.ledger.clone();
        let repaid = ledger_client
            .repay(ledger::RepayRequest {
                request_id: derived_id(&[
                    "Repay",
                    &customer_id.to_string(),
                    caller_key,
                    &request.request_id,
                ])
                .to_string(),
                customer_id: customer_id.to_string(),
                loan_id: loan_id.to_string(),
                amount: request.amount.clone(),
                pay_off: request.pay_off,
                external_reference: request.external_reference.clone(),
            })
            .await
            .map_err(|status| from_peer("ledger", &status))?
            .into_inner();
        let balance = Balance::of_ledger(repaid.credit_line.as_ref());
        // The usual case, as Borrow's: the line is unchanged since it was read, so one
        // statement claims the key with the response and bumps the version.
        if let Some(line) = &line {
            let after = self.line_after_close(line, &balance);
            let response = proto::RepayResponse {
                repayment: repaid.repayment.clone(),
                loan: repaid.loan.clone(),
                credit_line: Some(after.1.clone()),
            };
            if self.close_fast(key, &response, line, None, &after).await? {
                return Ok(response);
            }
        }
        let mut tx = self.pool.begin().await?;
        if let Some(stored) = idempotency::claim(&mut tx, key).await? {
            return decode_stored(&stored);
        }
        let after_row = bump_version(&mut tx, customer_id).await?;
        let credit_line = after_row
            .as_ref()
            .map(|row| line_to_proto(row, &balance, &self.rules.product, &self.rules.lines));
        let response = proto::RepayResponse {
            repayment: repaid.repayment,
            loan: repaid.loan,
            credit_line: credit_line.clone(),
        };
        idempotency::record_response(&mut tx, key, &response.encode_to_vec()).await?;
        tx.commit().await?;
        if let (Some(row), Some(line)) = (after_row, credit_line) {
            self.line_cache
                .put(customer_id, row.cache_version, &line)
                .await;
        }
        Ok(response)
    }

    pub(crate) async fn list_loans(
        &self,
        caller: &Caller,
        request: proto::ListLoansRequest,
    ) -> Result<proto::ListLoansResponse, AccountError> {
        let mut violations = Vec::new();
        let customer_id = push_id(&mut violations, "customer_id", &request.customer_id);
        if request.page_size < 0 {
            violations.push(("page_size", "must not be negative".into()));
        }
        if request
            .statuses
            .iter()
            .any(|status| common::LoanStatus::try_from(*status).is_err() || *status == 0)
        {
            violations.push(("statuses", "must be LoanStatus values".into()));
        }
        let (Some(customer_id), true) = (customer_id, violations.is_empty()) else {
            return Err(AccountError::InvalidArgument(violations));
        };
        self.owned_customer(caller, customer_id).await?;
        let mut ledger_client = self.peers.ledger.clone();
        let page = ledger_client
            .list_loans(ledger::ListLoansRequest {
                customer_id: customer_id.to_string(),
                statuses: request.statuses.clone(),
                page_size: request.page_size,
                page_token: request.page_token.clone(),
                ..ledger::ListLoansRequest::default()
            })
            .await
            .map_err(|status| {
                if status.code() == tonic::Code::InvalidArgument {
                    AccountError::InvalidArgument(vec![(
                        "page_token",
                        "is not a token from a previous call with these fields".into(),
                    )])
                } else {
                    from_peer("ledger", &status)
                }
            })?
            .into_inner();
        Ok(proto::ListLoansResponse {
            loans: page.loans,
            next_page_token: page.next_page_token,
        })
    }
}

fn credit_limit_exceeded(available_minor: i64) -> AccountError {
    AccountError::FailedPrecondition {
        reason: "CREDIT_LIMIT_EXCEEDED",
        message: "the amount exceeds the available headroom".into(),
        metadata: vec![("available_minor_units", available_minor.to_string())],
    }
}

/// Lowercase hex of a keyed hash; empty when unknown.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
