//! Notice templates (minijinja), one per key in zh-CN and en, and the locale forms of
//! their values: money as `¥1,234.56`, dates as `2026年12月5日` / `Dec 5, 2026`, rates as
//! percentages, reason codes as customer-facing text.
//!
//! A template's parameters are declared with it: Send refuses undeclared ones, and a
//! declared one that is missing fails the render (strict undefined), which marks the
//! notification FAILED with the error rather than sending a half-filled notice.

use std::{collections::BTreeMap, sync::LazyLock};

use chrono::{Datelike, NaiveDate};
use minijinja::{Environment, UndefinedBehavior, Value};
use rust_decimal::Decimal;

use crate::model::Locale;

/// Longest title and body (Notification.title / body).
pub const TITLE_CHARS_MAX: usize = 128;
pub const BODY_CHARS_MAX: usize = 2_000;

/// One template parameter's value before it is put in the locale's form.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// Already formatted (Send's params), or locale-independent (a number).
    Text(String),
    /// An amount in fen (CNY): `¥1,234.56`.
    Money(i64),
    Date(NaiveDate),
    /// A decimal fraction shown as a percentage: `0.0005` → `0.05%`.
    Percent(Decimal),
    /// True/false flags the templates branch on (rendered as "yes" or "").
    Flag(bool),
    /// Reason codes (ReasonCode.code), rendered as text joined by the locale's separator.
    Reasons(Vec<String>),
    /// One of a fixed set of words with a text in each locale (statuses, purposes).
    Word {
        zh_cn: &'static str,
        en: &'static str,
    },
}

pub type Params = BTreeMap<String, Param>;

/// A rendered notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub title: String,
    pub body: String,
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("no template {0}")]
    UnknownTemplate(String),
    #[error("template {key} ({locale}): {message}")]
    Failed {
        key: String,
        locale: &'static str,
        message: String,
    },
}

/// One template: its key, declared parameters and text in both locales.
struct Template {
    key: &'static str,
    params: &'static [&'static str],
    zh_cn: (&'static str, &'static str),
    en: (&'static str, &'static str),
}

/// The text of a reason code in both locales; unknown codes get [`REASON_OTHER`].
const REASONS: &[(&str, &str, &str)] = &[
    (
        "SCORE_BELOW_CUTOFF",
        "综合信用评分未达到要求",
        "your overall credit score is below our requirement",
    ),
    (
        "LOW_ON_TIME_RATIO",
        "按时还款比例偏低",
        "too few repayments were made on time",
    ),
    (
        "HIGH_SPEND_VOLATILITY",
        "消费支出波动较大",
        "your spending varies widely from month to month",
    ),
    (
        "OVERDUE_INSTALLMENTS",
        "存在逾期未还的分期",
        "you have overdue instalments",
    ),
    (
        "DAYS_PAST_DUE_30",
        "曾逾期超过30天",
        "a repayment was more than 30 days late",
    ),
    (
        "INCOME_TOO_LOW",
        "收入水平不足以支持该额度",
        "your income does not support this amount",
    ),
    (
        "HIGH_UTILISATION",
        "额度使用率过高",
        "you are using most of your credit limit",
    ),
    (
        "DEVICE_VELOCITY",
        "同一设备短期内申请次数过多",
        "too many applications from one device in a short time",
    ),
    (
        "PHONE_VELOCITY",
        "同一手机号短期内申请次数过多",
        "too many applications with one phone number in a short time",
    ),
    (
        "NATIONAL_ID_VELOCITY",
        "同一身份证短期内申请次数过多",
        "too many applications with one identity in a short time",
    ),
    (
        "SHARED_IDENTIFIER",
        "身份信息与其他账户存在共用",
        "your identity details are shared with other accounts",
    ),
    (
        "FRAUD_RING",
        "账户关联存在风险",
        "your account is linked to accounts under risk review",
    ),
    (
        "BLACKLISTED",
        "未通过风险核查",
        "you did not pass our risk checks",
    ),
    (
        "DRAWDOWN_AFTER_INCREASE",
        "提额后立即全额借款",
        "the full limit was drawn right after an increase",
    ),
    (
        "DRAW_REPAY_CYCLING",
        "频繁借还款",
        "repeated borrowing and repaying in a short time",
    ),
    (
        "LIMIT_CAP",
        "已达到总额度上限",
        "you have reached the total credit limit allowed",
    ),
];
/// The text of a reason code the table does not know.
const REASON_OTHER: (&str, &str) = ("其他信用风险因素", "other credit risk factors");

/// The customer-facing text of one reason code.
pub fn reason_text(code: &str, locale: Locale) -> &'static str {
    let code = code.strip_prefix("FRAUD_FLAG_").unwrap_or(code);
    let (zh_cn, en) = REASONS
        .iter()
        .find(|(known, _, _)| *known == code)
        .map_or(REASON_OTHER, |(_, zh_cn, en)| (*zh_cn, *en));
    match locale {
        Locale::ZhCn => zh_cn,
        Locale::En => en,
    }
}

/// `¥1,234.56` (both locales write yuan the same way).
pub fn format_money(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let fen = fen.unsigned_abs();
    let yuan = (fen / 100).to_string();
    let mut grouped = String::with_capacity(yuan.len() + yuan.len() / 3);
    for (index, digit) in yuan.chars().enumerate() {
        if index > 0 && (yuan.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}¥{grouped}.{:02}", fen % 100)
}

/// `2026年12月5日` or `Dec 5, 2026`.
pub fn format_date(date: NaiveDate, locale: Locale) -> String {
    match locale {
        Locale::ZhCn => format!("{}年{}月{}日", date.year(), date.month(), date.day()),
        Locale::En => date.format("%b %-d, %Y").to_string(),
    }
}

/// `0.1825` → `18.25%`; `0.0005` → `0.05%`.
pub fn format_percent(fraction: Decimal) -> String {
    let percent = (fraction * Decimal::ONE_HUNDRED).round_dp(4).normalize();
    format!("{percent}%")
}

fn localize(param: &Param, locale: Locale) -> String {
    match param {
        Param::Text(text) => text.clone(),
        Param::Money(fen) => format_money(*fen),
        Param::Date(date) => format_date(*date, locale),
        Param::Percent(fraction) => format_percent(*fraction),
        Param::Flag(true) => "yes".to_owned(),
        Param::Flag(false) => String::new(),
        Param::Reasons(codes) => {
            let separator = match locale {
                Locale::ZhCn => "；",
                Locale::En => "; ",
            };
            codes
                .iter()
                .map(|code| reason_text(code, locale))
                .collect::<Vec<_>>()
                .join(separator)
        }
        Param::Word { zh_cn, en } => match locale {
            Locale::ZhCn => (*zh_cn).to_owned(),
            Locale::En => (*en).to_owned(),
        },
    }
}

/// The declared parameters of `key`, or `None` when there is no such template.
pub fn declared_params(key: &str) -> Option<&'static [&'static str]> {
    TEMPLATES
        .iter()
        .find(|template| template.key == key)
        .map(|template| template.params)
}

/// Renders `key` in `locale` with `params`; the result is cut to the length limits.
pub fn render(key: &str, locale: Locale, params: &Params) -> Result<Rendered, RenderError> {
    if declared_params(key).is_none() {
        return Err(RenderError::UnknownTemplate(key.to_owned()));
    }
    let context: BTreeMap<String, Value> = params
        .iter()
        .map(|(name, param)| (name.clone(), Value::from(localize(param, locale))))
        .collect();
    let context = Value::from(context);
    let failed = |err: minijinja::Error| RenderError::Failed {
        key: key.to_owned(),
        locale: locale.as_str(),
        message: format!("{err:#}"),
    };
    let render_one = |part: &str| -> Result<String, RenderError> {
        ENVIRONMENT
            .get_template(&template_name(key, locale, part))
            .and_then(|template| template.render(&context))
            .map_err(failed)
    };
    Ok(Rendered {
        title: truncate(render_one("title")?.trim(), TITLE_CHARS_MAX),
        body: truncate(render_one("body")?.trim(), BODY_CHARS_MAX),
    })
}

/// `text` cut to at most `chars_max` characters (Unicode scalar values).
pub fn truncate(text: &str, chars_max: usize) -> String {
    text.chars().take(chars_max).collect()
}

fn template_name(key: &str, locale: Locale, part: &str) -> String {
    format!("{key}.{}.{part}", locale.as_str())
}

static ENVIRONMENT: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut environment = Environment::new();
    environment.set_undefined_behavior(UndefinedBehavior::Strict);
    for template in TEMPLATES {
        for (locale, (title, body)) in [(Locale::ZhCn, template.zh_cn), (Locale::En, template.en)] {
            for (part, source) in [("title", title), ("body", body)] {
                environment
                    .add_template_owned(template_name(template.key, locale, part), source)
                    .unwrap_or_else(|err| panic!("template {}: {err:#}", template.key));
            }
        }
    }
    environment
});

/// Every template. Keys are the events.v1 EventType names without prefix.
const TEMPLATES: &[Template] = &[
    Template {
        key: "CUSTOMER_CREATED",
        params: &[],
        zh_cn: (
            "欢迎使用微贷",
            "您的账户已开通。申请信用额度后即可随借随还，按日计息。",
        ),
        en: (
            "Welcome to microloan",
            "Your account is open. Apply for a credit line to borrow when you need to; interest is charged by the day.",
        ),
    },
    Template {
        key: "CREDIT_LINE_OPENED",
        params: &["limit", "daily_rate", "apr"],
        zh_cn: (
            "您的信用额度已开通",
            "您的信用额度{{ limit }}已开通，日利率{{ daily_rate }}，年化利率（APR）{{ apr }}。",
        ),
        en: (
            "Your credit line is open",
            "Your credit line of {{ limit }} is open at a daily rate of {{ daily_rate }} (APR {{ apr }}).",
        ),
    },
    Template {
        key: "CREDIT_LINE_CHANGED",
        params: &[
            "previous_limit",
            "new_limit",
            "limit_changed",
            "previous_daily_rate",
            "new_daily_rate",
            "new_apr",
            "rate_changed",
            "new_status",
            "status_changed",
            "reasons",
        ],
        zh_cn: (
            "您的信用额度已调整",
            "您的信用额度有变动：\
{% if limit_changed %}额度由{{ previous_limit }}调整为{{ new_limit }}；{% endif %}\
{% if rate_changed %}日利率由{{ previous_daily_rate }}调整为{{ new_daily_rate }}（年化{{ new_apr }}，仅适用于新借款）；{% endif %}\
{% if status_changed %}额度状态：{{ new_status }}；{% endif %}\
原因：{{ reasons }}。",
        ),
        en: (
            "Your credit line has changed",
            "Your credit line has changed.\
{% if limit_changed %} Limit: {{ previous_limit }} → {{ new_limit }}.{% endif %}\
{% if rate_changed %} Daily rate: {{ previous_daily_rate }} → {{ new_daily_rate }} (APR {{ new_apr }}; new loans only).{% endif %}\
{% if status_changed %} Status: {{ new_status }}.{% endif %}\
 Why: {{ reasons }}.",
        ),
    },
    Template {
        key: "APPLICATION_DECLINED",
        params: &["purpose", "reasons", "reapply_after_date"],
        zh_cn: (
            "您的{{ purpose }}未获批准",
            "很抱歉，您的{{ purpose }}未获批准。原因：{{ reasons }}。\
{% if reapply_after_date %}您可于{{ reapply_after_date }}起重新申请。{% endif %}",
        ),
        en: (
            "Your {{ purpose }} was declined",
            "We are sorry: your {{ purpose }} was declined. Why: {{ reasons }}.\
{% if reapply_after_date %} You may apply again from {{ reapply_after_date }}.{% endif %}",
        ),
    },
    Template {
        key: "LOAN_DISBURSED",
        params: &[
            "principal",
            "term_months",
            "daily_rate",
            "apr",
            "first_due_date",
            "first_due_amount",
            "maturity_date",
            "total_interest",
            "available_after",
        ],
        zh_cn: (
            "借款{{ principal }}已到账",
            "您借款{{ principal }}已发放，分{{ term_months }}期，日利率{{ daily_rate }}，年化利率（APR）{{ apr }}，\
预计总利息{{ total_interest }}。首期{{ first_due_date }}应还{{ first_due_amount }}，{{ maturity_date }}到期。\
剩余可用额度{{ available_after }}。",
        ),
        en: (
            "Your loan of {{ principal }} is on its way",
            "Your loan of {{ principal }} over {{ term_months }} months has been paid out at a daily rate of {{ daily_rate }} \
(APR {{ apr }}; planned interest {{ total_interest }}). First instalment: {{ first_due_amount }} due {{ first_due_date }}; \
last due {{ maturity_date }}. Available on your line: {{ available_after }}.",
        ),
    },
    Template {
        key: "REPAYMENT_RECEIVED",
        params: &[
            "amount",
            "principal_paid",
            "interest_paid",
            "penalty_paid",
            "outstanding_after",
            "available_after",
            "paid_off",
        ],
        zh_cn: (
            "已收到还款{{ amount }}",
            "已收到您的还款{{ amount }}：本金{{ principal_paid }}，利息{{ interest_paid }}，罚息{{ penalty_paid }}。\
{% if paid_off %}该笔借款已全部结清。{% else %}剩余应还{{ outstanding_after }}。{% endif %}\
可用额度{{ available_after }}。",
        ),
        en: (
            "Repayment of {{ amount }} received",
            "We received your repayment of {{ amount }}: principal {{ principal_paid }}, interest {{ interest_paid }}, \
penalty {{ penalty_paid }}.{% if paid_off %} The loan is fully repaid.{% else %} Still owed: {{ outstanding_after }}.{% endif %} \
Available on your line: {{ available_after }}.",
        ),
    },
    Template {
        key: "INSTALLMENT_DUE_SOON",
        params: &[
            "installment_sequence",
            "due_date",
            "amount_due",
            "due_today",
        ],
        zh_cn: (
            "{% if due_today %}今日还款提醒{% else %}还款提醒{% endif %}",
            "您第{{ installment_sequence }}期应还{{ amount_due }}，\
{% if due_today %}今天（{{ due_date }}）到期{% else %}将于{{ due_date }}到期{% endif %}，请按时还款。",
        ),
        en: (
            "{% if due_today %}Instalment due today{% else %}Instalment due soon{% endif %}",
            "Instalment {{ installment_sequence }} of {{ amount_due }} is due \
{% if due_today %}today ({{ due_date }}){% else %}on {{ due_date }}{% endif %}. Please repay on time.",
        ),
    },
    Template {
        key: "INSTALLMENT_OVERDUE",
        params: &[
            "installment_sequence",
            "due_date",
            "overdue_amount",
            "loan_overdue_amount",
            "days_past_due",
            "penalty_daily_rate",
            "credit_bureau_warning",
        ],
        zh_cn: (
            "还款已逾期{{ days_past_due }}天",
            "您第{{ installment_sequence }}期（{{ due_date }}到期）已逾期{{ days_past_due }}天，\
未还{{ overdue_amount }}（该笔借款逾期合计{{ loan_overdue_amount }}），逾期本金按日{{ penalty_daily_rate }}计收罚息。\
{% if credit_bureau_warning %}您的逾期记录将报送征信机构，请立即还款。{% else %}持续未还款将被报送征信机构，请尽快还款。{% endif %}",
        ),
        en: (
            "Repayment {{ days_past_due }} days overdue",
            "Instalment {{ installment_sequence }} (due {{ due_date }}) is {{ days_past_due }} days overdue: \
{{ overdue_amount }} unpaid ({{ loan_overdue_amount }} overdue on the loan). Penalty interest of {{ penalty_daily_rate }} \
a day accrues on overdue principal. \
{% if credit_bureau_warning %}This arrears is being reported to the credit bureau: please repay now.{% else %}Continued non-payment will be reported to the credit bureau: please repay soon.{% endif %}",
        ),
    },
    Template {
        key: "LOAN_PAID_OFF",
        params: &[
            "paid_off_date",
            "principal_paid",
            "interest_paid",
            "penalty_paid",
            "early",
        ],
        zh_cn: (
            "借款已结清",
            "您的借款已于{{ paid_off_date }}{% if early %}提前{% endif %}结清：本金{{ principal_paid }}，\
利息{{ interest_paid }}，罚息{{ penalty_paid }}。感谢您按约还款。",
        ),
        en: (
            "Your loan is paid off",
            "Your loan was paid off{% if early %} early{% endif %} on {{ paid_off_date }}: principal {{ principal_paid }}, \
interest {{ interest_paid }}, penalty {{ penalty_paid }}. Thank you.",
        ),
    },
    Template {
        key: "LOAN_WRITTEN_OFF",
        params: &[
            "written_off_date",
            "reason",
            "principal",
            "interest",
            "penalty",
            "total",
            "days_past_due",
        ],
        zh_cn: (
            "借款已核销",
            "您的借款已于{{ written_off_date }}核销（{{ reason }}，逾期{{ days_past_due }}天），\
核销金额{{ total }}（本金{{ principal }}，利息{{ interest }}，罚息{{ penalty }}）。核销不免除还款义务，\
该记录将报送征信机构，您的信用额度已关闭。",
        ),
        en: (
            "Your loan has been written off",
            "Your loan was written off on {{ written_off_date }} ({{ reason }}; {{ days_past_due }} days past due): \
{{ total }} (principal {{ principal }}, interest {{ interest }}, penalty {{ penalty }}). The debt is still owed, \
this is reported to the credit bureau, and your credit line is closed.",
        ),
    },
];

/// The keys of every template.
pub fn keys() -> impl Iterator<Item = &'static str> {
    TEMPLATES.iter().map(|template| template.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_yuan_with_thousands_separators_and_two_decimals() {
        assert_eq!(format_money(123_456), "¥1,234.56");
        assert_eq!(format_money(5), "¥0.05");
        assert_eq!(format_money(100_000_000), "¥1,000,000.00");
        assert_eq!(format_money(-150), "-¥1.50");
    }

    #[test]
    fn dates_and_rates_take_the_locale_form() {
        let date = NaiveDate::from_ymd_opt(2026, 12, 5).expect("date");
        assert_eq!(format_date(date, Locale::ZhCn), "2026年12月5日");
        assert_eq!(format_date(date, Locale::En), "Dec 5, 2026");
        assert_eq!(format_percent("0.0005".parse().expect("rate")), "0.05%");
        assert_eq!(format_percent("0.1825".parse().expect("apr")), "18.25%");
    }

    #[test]
    fn reasons_have_text_in_both_locales_and_unknown_codes_a_generic_one() {
        assert_eq!(
            reason_text("LOW_ON_TIME_RATIO", Locale::En),
            "too few repayments were made on time"
        );
        assert_eq!(
            reason_text("LOW_ON_TIME_RATIO", Locale::ZhCn),
            "按时还款比例偏低"
        );
        assert_eq!(
            reason_text("NO_SUCH_CODE", Locale::ZhCn),
            "其他信用风险因素"
        );
        for (_, zh_cn, en) in REASONS {
            assert!(!zh_cn.is_empty() && !en.is_empty());
        }
    }

    #[test]
    fn every_template_compiles_in_both_locales() {
        assert_eq!(keys().count(), 10);
        LazyLock::force(&ENVIRONMENT);
    }

    #[test]
    fn a_missing_parameter_fails_the_render() {
        let err = render("CREDIT_LINE_OPENED", Locale::En, &Params::new()).expect_err("missing");
        assert!(matches!(err, RenderError::Failed { .. }), "{err}");
        assert!(matches!(
            render("NO_SUCH", Locale::En, &Params::new()),
            Err(RenderError::UnknownTemplate(_))
        ));
    }
}
