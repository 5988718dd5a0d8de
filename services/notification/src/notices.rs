//! What each event tells the customer: its template, its message class (the table in
//! notification.proto's MessageClass) and its parameters.

use chrono::NaiveDate;
use microloan_proto::{
    common::v1::{CreditLineStatus, DecisionPurpose, Money, ReasonCode, WriteOffReason},
    events::v1::{Event, event::Payload},
    google::r#type::Date,
};
use rust_decimal::Decimal;

use crate::{
    model::MessageClass,
    templates::{Param, Params},
};

/// The notice an event calls for.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub template_key: &'static str,
    pub class: MessageClass,
    pub params: Params,
}

/// Why an event cannot become a notice (a malformed payload: the event is rejected).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event payload: {0}")]
pub struct BadPayload(String);

fn money(field: &str, value: Option<&Money>) -> Result<Param, BadPayload> {
    let money = value.ok_or_else(|| BadPayload(format!("{field} missing")))?;
    if money.currency_code != "CNY" {
        return Err(BadPayload(format!(
            "{field}: currency {} is not CNY",
            money.currency_code
        )));
    }
    Ok(Param::Money(money.minor_units))
}

fn date(field: &str, value: Option<&Date>) -> Result<Param, BadPayload> {
    let date = value.ok_or_else(|| BadPayload(format!("{field} missing")))?;
    naive_date(date)
        .map(Param::Date)
        .ok_or_else(|| BadPayload(format!("{field}: not a calendar date")))
}

fn naive_date(date: &Date) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(
        date.year,
        date.month.try_into().ok()?,
        date.day.try_into().ok()?,
    )
}

fn decimal(field: &str, text: &str) -> Result<Decimal, BadPayload> {
    text.parse()
        .map_err(|_| BadPayload(format!("{field}: `{text}` is not a decimal")))
}

fn percent(field: &str, text: &str) -> Result<Param, BadPayload> {
    decimal(field, text).map(Param::Percent)
}

fn reasons(reasons: &[ReasonCode]) -> Param {
    Param::Reasons(reasons.iter().map(|reason| reason.code.clone()).collect())
}

fn text(value: impl ToString) -> Param {
    Param::Text(value.to_string())
}

fn line_status(status: i32) -> Param {
    let (zh_cn, en) = match CreditLineStatus::try_from(status) {
        Ok(CreditLineStatus::Active) => ("正常", "active"),
        Ok(CreditLineStatus::Frozen) => ("已冻结", "frozen"),
        Ok(CreditLineStatus::Closed) => ("已关闭", "closed"),
        _ => ("未变", "unchanged"),
    };
    Param::Word { zh_cn, en }
}

fn purpose(purpose: i32) -> Param {
    let (zh_cn, en) = match DecisionPurpose::try_from(purpose) {
        Ok(DecisionPurpose::LimitIncrease) => ("提额申请", "limit increase request"),
        Ok(DecisionPurpose::Drawdown) => ("借款申请", "loan request"),
        _ => ("额度申请", "credit line application"),
    };
    Param::Word { zh_cn, en }
}

fn write_off_reason(reason: i32) -> Param {
    let (zh_cn, en) = match WriteOffReason::try_from(reason) {
        Ok(WriteOffReason::DaysPastDue) => ("长期逾期", "long overdue"),
        Ok(WriteOffReason::Fraud) => ("欺诈", "fraud"),
        Ok(WriteOffReason::Deceased) => ("借款人身故", "borrower deceased"),
        Ok(WriteOffReason::Insolvency) => ("无力偿还", "insolvency"),
        Ok(WriteOffReason::Settlement) => ("和解", "settlement"),
        _ => ("其他原因", "other reasons"),
    };
    Param::Word { zh_cn, en }
}

fn params<const N: usize>(entries: [(&str, Param); N]) -> Params {
    entries
        .into_iter()
        .map(|(name, param)| (name.to_owned(), param))
        .collect()
}

/// The notice for `event`.
pub fn notice_for(event: &Event) -> Result<Notice, BadPayload> {
    let payload = event
        .payload
        .as_ref()
        .ok_or_else(|| BadPayload("no payload".into()))?;
    let (template_key, class, params) = match payload {
        Payload::CustomerCreated(_) => ("CUSTOMER_CREATED", MessageClass::Service, Params::new()),
        Payload::CreditLineOpened(opened) => (
            "CREDIT_LINE_OPENED",
            MessageClass::Service,
            params([
                ("limit", money("limit", opened.limit.as_ref())?),
                ("daily_rate", percent("daily_rate", &opened.daily_rate)?),
                ("apr", percent("apr", &opened.apr)?),
            ]),
        ),
        Payload::CreditLineChanged(changed) => {
            let change = changed
                .change
                .as_ref()
                .ok_or_else(|| BadPayload("change missing".into()))?;
            let previous_limit = money("previous_limit", change.previous_limit.as_ref())?;
            let new_limit = money("new_limit", change.new_limit.as_ref())?;
            let limit_cut = matches!((&previous_limit, &new_limit),
                (Param::Money(before), Param::Money(after)) if after < before);
            let previous_rate = decimal("previous_daily_rate", &change.previous_daily_rate)?;
            let new_rate = decimal("new_daily_rate", &change.new_daily_rate)?;
            let new_status = CreditLineStatus::try_from(change.new_status)
                .unwrap_or(CreditLineStatus::Unspecified);
            let status_changed = new_status != CreditLineStatus::Unspecified
                && change.new_status != change.previous_status;
            let frozen_or_closed = status_changed
                && matches!(
                    new_status,
                    CreditLineStatus::Frozen | CreditLineStatus::Closed
                );
            let class = if limit_cut || frozen_or_closed || new_rate > previous_rate {
                MessageClass::Regulatory
            } else {
                MessageClass::Service
            };
            let new_apr = if change.new_apr.is_empty() {
                new_rate * Decimal::from(365)
            } else {
                decimal("new_apr", &change.new_apr)?
            };
            (
                "CREDIT_LINE_CHANGED",
                class,
                params([
                    ("limit_changed", Param::Flag(previous_limit != new_limit)),
                    ("previous_limit", previous_limit),
                    ("new_limit", new_limit),
                    ("rate_changed", Param::Flag(previous_rate != new_rate)),
                    ("previous_daily_rate", Param::Percent(previous_rate)),
                    ("new_daily_rate", Param::Percent(new_rate)),
                    ("new_apr", Param::Percent(new_apr)),
                    ("status_changed", Param::Flag(status_changed)),
                    ("new_status", line_status(change.new_status)),
                    ("reasons", reasons(&change.reasons)),
                ]),
            )
        }
        Payload::ApplicationDeclined(declined) => (
            "APPLICATION_DECLINED",
            MessageClass::Regulatory,
            params([
                ("purpose", purpose(declined.purpose)),
                ("reasons", reasons(&declined.reasons)),
                (
                    "reapply_after_date",
                    match &declined.reapply_after_date {
                        Some(day) => date("reapply_after_date", Some(day))?,
                        None => text(""),
                    },
                ),
            ]),
        ),
        Payload::LoanDisbursed(loan) => (
            "LOAN_DISBURSED",
            MessageClass::Service,
            params([
                ("principal", money("principal", loan.principal.as_ref())?),
                ("term_months", text(loan.term_months)),
                ("daily_rate", percent("daily_rate", &loan.daily_rate)?),
                ("apr", percent("apr", &loan.apr)?),
                (
                    "first_due_date",
                    date("first_due_date", loan.first_due_date.as_ref())?,
                ),
                (
                    "first_due_amount",
                    money("first_due_amount", loan.first_due_amount.as_ref())?,
                ),
                (
                    "maturity_date",
                    date("maturity_date", loan.maturity_date.as_ref())?,
                ),
                (
                    "total_interest",
                    money("total_interest", loan.total_interest.as_ref())?,
                ),
                (
                    "available_after",
                    money("available_after", loan.available_after.as_ref())?,
                ),
            ]),
        ),
        Payload::RepaymentReceived(received) => {
            let repayment = received
                .repayment
                .as_ref()
                .ok_or_else(|| BadPayload("repayment missing".into()))?;
            (
                "REPAYMENT_RECEIVED",
                MessageClass::Service,
                params([
                    ("amount", money("amount", repayment.amount.as_ref())?),
                    (
                        "principal_paid",
                        money("principal_paid", repayment.principal_paid.as_ref())?,
                    ),
                    (
                        "interest_paid",
                        money("interest_paid", repayment.interest_paid.as_ref())?,
                    ),
                    (
                        "penalty_paid",
                        money("penalty_paid", repayment.penalty_paid.as_ref())?,
                    ),
                    (
                        "outstanding_after",
                        money("outstanding_after", received.outstanding_after.as_ref())?,
                    ),
                    (
                        "available_after",
                        money("available_after", received.available_after.as_ref())?,
                    ),
                    ("paid_off", Param::Flag(repayment.paid_off)),
                ]),
            )
        }
        Payload::InstallmentDueSoon(due) => (
            "INSTALLMENT_DUE_SOON",
            MessageClass::Service,
            params([
                ("installment_sequence", text(due.installment_sequence)),
                ("due_date", date("due_date", due.due_date.as_ref())?),
                ("amount_due", money("amount_due", due.amount_due.as_ref())?),
                ("due_today", Param::Flag(due.days_until_due == 0)),
            ]),
        ),
        Payload::InstallmentOverdue(overdue) => (
            "INSTALLMENT_OVERDUE",
            MessageClass::Regulatory,
            params([
                ("installment_sequence", text(overdue.installment_sequence)),
                ("due_date", date("due_date", overdue.due_date.as_ref())?),
                (
                    "overdue_amount",
                    money("overdue_amount", overdue.overdue_amount.as_ref())?,
                ),
                (
                    "loan_overdue_amount",
                    money("loan_overdue_amount", overdue.loan_overdue_amount.as_ref())?,
                ),
                ("days_past_due", text(overdue.days_past_due)),
                (
                    "penalty_daily_rate",
                    percent("penalty_daily_rate", &overdue.penalty_daily_rate)?,
                ),
                (
                    "credit_bureau_warning",
                    Param::Flag(overdue.credit_bureau_warning),
                ),
            ]),
        ),
        Payload::LoanPaidOff(paid) => (
            "LOAN_PAID_OFF",
            MessageClass::Service,
            params([
                (
                    "paid_off_date",
                    date("paid_off_date", paid.paid_off_date.as_ref())?,
                ),
                (
                    "principal_paid",
                    money("principal_paid", paid.principal_paid.as_ref())?,
                ),
                (
                    "interest_paid",
                    money("interest_paid", paid.interest_paid.as_ref())?,
                ),
                (
                    "penalty_paid",
                    money("penalty_paid", paid.penalty_paid.as_ref())?,
                ),
                ("early", Param::Flag(paid.early)),
            ]),
        ),
        Payload::LoanWrittenOff(written) => (
            "LOAN_WRITTEN_OFF",
            MessageClass::Regulatory,
            params([
                (
                    "written_off_date",
                    date("written_off_date", written.written_off_date.as_ref())?,
                ),
                ("reason", write_off_reason(written.reason)),
                ("principal", money("principal", written.principal.as_ref())?),
                ("interest", money("interest", written.interest.as_ref())?),
                ("penalty", money("penalty", written.penalty.as_ref())?),
                ("total", money("total", written.total.as_ref())?),
                ("days_past_due", text(written.days_past_due)),
            ]),
        ),
    };
    Ok(Notice {
        template_key,
        class,
        params,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use microloan_proto::{
        common::v1::{CreditLineChange, Repayment},
        events::v1::{
            ApplicationDeclined, CreditLineChanged, CreditLineOpened, CustomerCreated,
            InstallmentDueSoon, InstallmentOverdue, LoanDisbursed, LoanPaidOff, LoanWrittenOff,
            RepaymentReceived,
        },
    };

    use super::*;
    use crate::{model::Locale, templates::render};

    fn cny(minor_units: i64) -> Option<Money> {
        Some(Money {
            currency_code: "CNY".into(),
            minor_units,
        })
    }

    fn day(year: i32, month: i32, day: i32) -> Option<Date> {
        Some(Date { year, month, day })
    }

    fn reason(code: &str) -> ReasonCode {
        ReasonCode {
            code: code.into(),
            ..ReasonCode::default()
        }
    }

    /// One payload of every event type, with the numbers its notice must show.
    pub(crate) fn samples() -> Vec<(Payload, MessageClass, [&'static str; 2], [&'static str; 2])> {
        vec![
            (
                Payload::CustomerCreated(CustomerCreated {
                    customer_id: "0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f".into(),
                    locale: "en".into(),
                    device_id: String::new(),
                }),
                MessageClass::Service,
                ["欢迎", "账户已开通"],
                ["Welcome", "account is open"],
            ),
            (
                Payload::CreditLineOpened(CreditLineOpened {
                    limit: cny(2_000_000),
                    daily_rate: "0.0005".into(),
                    apr: "0.1825".into(),
                    ..CreditLineOpened::default()
                }),
                MessageClass::Service,
                ["¥20,000.00", "18.25%"],
                ["¥20,000.00", "APR 18.25%"],
            ),
            (
                Payload::CreditLineChanged(CreditLineChanged {
                    change: Some(CreditLineChange {
                        previous_limit: cny(2_000_000),
                        new_limit: cny(1_000_000),
                        previous_daily_rate: "0.0005".into(),
                        new_daily_rate: "0.0005".into(),
                        previous_status: CreditLineStatus::Active as i32,
                        new_status: CreditLineStatus::Active as i32,
                        reasons: vec![reason("OVERDUE_INSTALLMENTS")],
                        ..CreditLineChange::default()
                    }),
                }),
                MessageClass::Regulatory,
                ["¥20,000.00调整为¥10,000.00", "存在逾期未还的分期"],
                ["¥20,000.00 → ¥10,000.00", "you have overdue instalments"],
            ),
            (
                Payload::ApplicationDeclined(ApplicationDeclined {
                    purpose: DecisionPurpose::CreditLineApplication as i32,
                    reasons: vec![reason("SCORE_BELOW_CUTOFF"), reason("LOW_ON_TIME_RATIO")],
                    reapply_after_date: day(2027, 1, 15),
                    ..ApplicationDeclined::default()
                }),
                MessageClass::Regulatory,
                ["综合信用评分未达到要求；按时还款比例偏低", "2027年1月15日"],
                [
                    "below our requirement; too few repayments were made on time",
                    "Jan 15, 2027",
                ],
            ),
            (
                Payload::LoanDisbursed(LoanDisbursed {
                    principal: cny(500_000),
                    term_months: 10,
                    daily_rate: "0.0004".into(),
                    apr: "0.1461".into(),
                    first_due_date: day(2026, 12, 28),
                    first_due_amount: cny(56_000),
                    maturity_date: day(2027, 9, 28),
                    total_interest: cny(33_000),
                    available_after: cny(1_500_000),
                    ..LoanDisbursed::default()
                }),
                MessageClass::Service,
                ["¥5,000.00", "2026年12月28日应还¥560.00"],
                ["¥560.00 due Dec 28, 2026", "APR 14.61%"],
            ),
            (
                Payload::RepaymentReceived(RepaymentReceived {
                    repayment: Some(Repayment {
                        amount: cny(123_456),
                        penalty_paid: cny(0),
                        interest_paid: cny(3_456),
                        principal_paid: cny(120_000),
                        ..Repayment::default()
                    }),
                    outstanding_after: cny(380_000),
                    days_past_due_after: 0,
                    available_after: cny(1_620_000),
                }),
                MessageClass::Service,
                ["¥1,234.56", "本金¥1,200.00"],
                ["¥1,234.56", "Still owed: ¥3,800.00"],
            ),
            (
                Payload::InstallmentDueSoon(InstallmentDueSoon {
                    installment_sequence: 2,
                    due_date: day(2027, 1, 28),
                    amount_due: cny(55_500),
                    days_until_due: 3,
                    ..InstallmentDueSoon::default()
                }),
                MessageClass::Service,
                ["第2期应还¥555.00", "2027年1月28日"],
                ["Instalment 2 of ¥555.00", "on Jan 28, 2027"],
            ),
            (
                Payload::InstallmentOverdue(InstallmentOverdue {
                    installment_sequence: 1,
                    due_date: day(2026, 12, 28),
                    overdue_amount: cny(56_100),
                    loan_overdue_amount: cny(56_100),
                    days_past_due: 1,
                    penalty_daily_rate: "0.0006".into(),
                    credit_bureau_warning: false,
                    ..InstallmentOverdue::default()
                }),
                MessageClass::Regulatory,
                ["逾期1天", "报送征信机构"],
                ["1 days overdue", "reported to the credit bureau"],
            ),
            (
                Payload::LoanPaidOff(LoanPaidOff {
                    paid_off_date: day(2027, 3, 1),
                    principal_paid: cny(500_000),
                    interest_paid: cny(12_345),
                    penalty_paid: cny(0),
                    early: true,
                    ..LoanPaidOff::default()
                }),
                MessageClass::Service,
                ["2027年3月1日提前结清", "利息¥123.45"],
                ["paid off early on Mar 1, 2027", "interest ¥123.45"],
            ),
            (
                Payload::LoanWrittenOff(LoanWrittenOff {
                    written_off_date: day(2027, 6, 26),
                    reason: WriteOffReason::DaysPastDue as i32,
                    principal: cny(450_000),
                    interest: cny(20_000),
                    penalty: cny(5_000),
                    total: cny(475_000),
                    days_past_due: 180,
                    ..LoanWrittenOff::default()
                }),
                MessageClass::Regulatory,
                ["核销金额¥4,750.00", "逾期180天"],
                ["¥4,750.00 (principal ¥4,500.00", "180 days past due"],
            ),
        ]
    }

    #[test]
    fn every_event_type_renders_in_both_locales_with_its_numbers() {
        let samples = samples();
        assert_eq!(samples.len(), 10, "one sample per event type");
        for (payload, class, zh_cn, en) in samples {
            let event = Event {
                payload: Some(payload),
                ..Event::default()
            };
            let notice = notice_for(&event).expect("notice");
            assert_eq!(notice.class, class, "{}", notice.template_key);
            for (locale, wanted) in [(Locale::ZhCn, zh_cn), (Locale::En, en)] {
                let rendered = render(notice.template_key, locale, &notice.params)
                    .unwrap_or_else(|err| panic!("{}: {err}", notice.template_key));
                let text = format!("{} {}", rendered.title, rendered.body);
                for fragment in wanted {
                    assert!(
                        text.contains(fragment),
                        "{} ({}): {fragment:?} not in {text:?}",
                        notice.template_key,
                        locale.as_str()
                    );
                }
            }
        }
    }

    fn change(
        previous: i64,
        new: i64,
        rate: (&str, &str),
        status: (CreditLineStatus, CreditLineStatus),
    ) -> Event {
        Event {
            payload: Some(Payload::CreditLineChanged(CreditLineChanged {
                change: Some(CreditLineChange {
                    previous_limit: cny(previous),
                    new_limit: cny(new),
                    previous_daily_rate: rate.0.into(),
                    new_daily_rate: rate.1.into(),
                    previous_status: status.0 as i32,
                    new_status: status.1 as i32,
                    reasons: vec![reason("LOW_ON_TIME_RATIO")],
                    ..CreditLineChange::default()
                }),
            })),
            ..Event::default()
        }
    }

    #[test]
    fn line_changes_are_regulatory_for_cuts_freezes_closures_and_rate_rises_only() {
        use CreditLineStatus::{Active, Closed, Frozen};
        let cases = [
            (
                change(100, 50, ("0.0005", "0.0005"), (Active, Active)),
                MessageClass::Regulatory,
            ),
            (
                change(100, 100, ("0.0004", "0.0005"), (Active, Active)),
                MessageClass::Regulatory,
            ),
            (
                change(100, 100, ("0.0005", "0.0005"), (Active, Frozen)),
                MessageClass::Regulatory,
            ),
            (
                change(100, 100, ("0.0005", "0.0005"), (Active, Closed)),
                MessageClass::Regulatory,
            ),
            (
                change(100, 200, ("0.0005", "0.0005"), (Active, Active)),
                MessageClass::Service,
            ),
            (
                change(100, 100, ("0.0005", "0.0004"), (Active, Active)),
                MessageClass::Service,
            ),
            (
                change(100, 100, ("0.0005", "0.0005"), (Frozen, Active)),
                MessageClass::Service,
            ),
            // A raise together with a rate rise is still a rate rise.
            (
                change(100, 200, ("0.0004", "0.0005"), (Active, Active)),
                MessageClass::Regulatory,
            ),
        ];
        for (index, (event, class)) in cases.into_iter().enumerate() {
            assert_eq!(
                notice_for(&event).expect("notice").class,
                class,
                "case {index}"
            );
        }
    }
}
