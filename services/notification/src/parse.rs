//! Requests parsed once, at the edge: every bad field is collected into one
//! INVALID_ARGUMENT naming it, and past this module no code sees a raw request.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use microloan_platform::{auth::Role, idempotency};
use microloan_proto::notification::v1::{self as proto, send_request};
use uuid::Uuid;

use crate::{
    compose::{Content, Notice},
    error::NotificationError,
    model::{Channel, Locale, MessageClass, Status},
    policy::{ChannelPreference, DEFAULT_TIME_ZONE, Preferences, QuietHours},
    store::notifications::ListFilter,
    templates::{self, BODY_CHARS_MAX, Param, Rendered, TITLE_CHARS_MAX},
};

type Violations = Vec<(&'static str, String)>;

/// A UUID field; one violation naming `field` otherwise.
pub fn id(field: &'static str, text: &str) -> Result<Uuid, Violations> {
    Uuid::parse_str(text)
        .ok()
        .filter(|_| text.len() == 36)
        .ok_or_else(|| vec![(field, "must be a UUID".to_owned())])
}

/// Collects the problem of one field into `violations`.
fn check<T>(violations: &mut Violations, parsed: Result<T, Violations>) -> Option<T> {
    match parsed {
        Ok(value) => Some(value),
        Err(more) => {
            violations.extend(more);
            None
        }
    }
}

fn optional_id(field: &'static str, text: &str) -> Result<Option<Uuid>, Violations> {
    if text.is_empty() {
        Ok(None)
    } else {
        id(field, text).map(Some)
    }
}

fn time(
    field: &'static str,
    value: Option<&prost_types::Timestamp>,
) -> Result<Option<DateTime<Utc>>, Violations> {
    value
        .map(|ts| {
            u32::try_from(ts.nanos)
                .ok()
                .and_then(|nanos| DateTime::from_timestamp(ts.seconds, nanos))
                .ok_or_else(|| vec![(field, "is not a valid timestamp".to_owned())])
        })
        .transpose()
}

fn request_id(violations: &mut Violations, request_id: &str) {
    if let Some(problem) = idempotency::request_id_problem(request_id) {
        violations.push(("request_id", problem.to_owned()));
    }
}

fn finish<T>(violations: Violations, value: Option<T>) -> Result<T, NotificationError> {
    match value {
        Some(value) if violations.is_empty() => Ok(value),
        _ => Err(NotificationError::InvalidArgument(violations)),
    }
}

/// Template keys: UPPER_SNAKE_CASE.
fn is_upper_snake(key: &str) -> bool {
    !key.is_empty()
        && key.starts_with(|c: char| c.is_ascii_uppercase())
        && key
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A SendRequest as a notice; a template key with no template is NOT_FOUND (checked
/// by the caller after the customer, see [`template_exists`]).
pub fn send(
    request: &proto::SendRequest,
    role: Role,
    log_channel_enabled: bool,
) -> Result<Notice, NotificationError> {
    let mut violations = Violations::new();
    request_id(&mut violations, &request.request_id);
    let customer_id = check(&mut violations, id("customer_id", &request.customer_id));
    let class = MessageClass::from_proto(request.message_class);
    if class.is_none() {
        violations.push((
            "message_class",
            "must be REGULATORY, SERVICE or MARKETING".into(),
        ));
    }
    let mut channels = Vec::with_capacity(request.channels.len());
    for &value in &request.channels {
        match Channel::from_proto(value) {
            None => violations.push(("channels", format!("{value} is not a channel"))),
            Some(Channel::Log) if !log_channel_enabled => {
                violations.push(("channels", "the LOG channel is disabled".into()));
            }
            Some(channel) if channels.contains(&channel) => {
                violations.push(("channels", format!("{} is listed twice", channel.name())));
            }
            Some(channel) => channels.push(channel),
        }
    }
    let locale = match request.locale.as_str() {
        "" => None,
        text => {
            let locale = Locale::parse(text);
            if locale.is_none() {
                violations.push(("locale", "must be \"zh-CN\" or \"en\"".into()));
            }
            locale
        }
    };
    let event_id = check(&mut violations, optional_id("event_id", &request.event_id)).flatten();
    let not_before = check(
        &mut violations,
        time("not_before_time", request.not_before_time.as_ref()),
    )
    .flatten();
    let content = match &request.content {
        None => {
            violations.push((
                "content",
                "exactly one of template or raw is required".into(),
            ));
            None
        }
        Some(send_request::Content::Raw(raw)) => {
            if role != Role::Operator {
                violations.push(("raw", "raw content may be sent by operators only".into()));
            }
            let title_chars = raw.title.chars().count();
            if !(1..=TITLE_CHARS_MAX).contains(&title_chars) {
                violations.push(("raw.title", "must be 1-128 characters".into()));
            }
            let body_chars = raw.body.chars().count();
            if !(1..=BODY_CHARS_MAX).contains(&body_chars) {
                violations.push(("raw.body", "must be 1-2000 characters".into()));
            }
            Some(Content::Raw(Rendered {
                title: raw.title.clone(),
                body: raw.body.clone(),
            }))
        }
        Some(send_request::Content::Template(template)) => {
            if !is_upper_snake(&template.template_key) {
                violations.push(("template.template_key", "must be UPPER_SNAKE_CASE".into()));
            }
            if let Some(declared) = templates::declared_params(&template.template_key) {
                let mut unknown: Vec<&str> = template
                    .params
                    .keys()
                    .map(String::as_str)
                    .filter(|name| !declared.contains(name))
                    .collect();
                unknown.sort_unstable();
                if !unknown.is_empty() {
                    violations.push((
                        "template.params",
                        format!("unknown parameters: {}", unknown.join(", ")),
                    ));
                }
            }
            Some(Content::Template {
                key: template.template_key.clone(),
                params: template
                    .params
                    .iter()
                    .map(|(name, value)| (name.clone(), Param::Text(value.clone())))
                    .collect(),
            })
        }
    };
    let notice = match (customer_id, class, content) {
        (Some(customer_id), Some(class), Some(content)) => Some(Notice {
            customer_id,
            class,
            channels: if channels.is_empty() {
                class.default_channels(log_channel_enabled)
            } else {
                channels
            },
            locale,
            event_id,
            not_before,
            content,
        }),
        _ => None,
    };
    finish(violations, notice)
}

/// NOT_FOUND for a template key with no template (in zh-CN, the fallback locale).
pub fn template_exists(notice: &Notice) -> Result<(), NotificationError> {
    match &notice.content {
        Content::Template { key, .. } if templates::declared_params(key).is_none() => {
            Err(NotificationError::not_found("template", key.clone()))
        }
        _ => Ok(()),
    }
}

/// Page size: 0 = 50, at most 500.
pub const PAGE_SIZE_DEFAULT: usize = 50;
pub const PAGE_SIZE_MAX: usize = 500;

/// A ListNotificationsRequest, parsed.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub filter: ListFilter,
    pub page_size: usize,
}

/// The token of the page after (create_time, id).
pub fn page_token(create_time: DateTime<Utc>, notification_id: Uuid) -> String {
    format!("{}_{notification_id}", create_time.timestamp_micros())
}

fn parse_page_token(token: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = token.split_once('_')?;
    let time = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some((time, Uuid::parse_str(id).ok()?))
}

pub fn list(request: &proto::ListNotificationsRequest) -> Result<ListQuery, NotificationError> {
    let mut violations = Violations::new();
    let customer_id = check(&mut violations, id("customer_id", &request.customer_id));
    let mut channels = Vec::new();
    for &value in &request.channels {
        match Channel::from_proto(value) {
            Some(channel) => channels.push(channel.as_i16()),
            None => violations.push(("channels", format!("{value} is not a channel"))),
        }
    }
    let mut statuses = Vec::new();
    for &value in &request.statuses {
        match Status::from_proto(value) {
            Some(status) => statuses.push(status.as_i16()),
            None => violations.push(("statuses", format!("{value} is not a status"))),
        }
    }
    let class = match request.message_class {
        0 => None,
        value => {
            let class = MessageClass::from_proto(value);
            if class.is_none() {
                violations.push(("message_class", format!("{value} is not a message class")));
            }
            class.map(MessageClass::as_i16)
        }
    };
    let start_time = check(
        &mut violations,
        time("start_time", request.start_time.as_ref()),
    )
    .flatten();
    let end_time = check(&mut violations, time("end_time", request.end_time.as_ref())).flatten();
    if let (Some(start), Some(end)) = (start_time, end_time)
        && end <= start
    {
        violations.push(("end_time", "must be after start_time".into()));
    }
    if request.page_size < 0 {
        violations.push(("page_size", "must not be negative".into()));
    }
    let page_size = match request.page_size {
        0 => PAGE_SIZE_DEFAULT,
        size => (size.max(0) as usize).min(PAGE_SIZE_MAX),
    };
    let after = match request.page_token.as_str() {
        "" => None,
        token => {
            let after = parse_page_token(token);
            if after.is_none() {
                violations.push(("page_token", "is not a token this service issued".into()));
            }
            after
        }
    };
    let query = customer_id.map(|customer_id| ListQuery {
        filter: ListFilter {
            customer_id,
            channels,
            statuses,
            class,
            start_time,
            end_time,
            after,
            limit: page_size as i64,
        },
        page_size,
    });
    finish(violations, query)
}

/// A SetPreferencesRequest, parsed.
#[derive(Debug, Clone)]
pub struct NewPreferences {
    pub customer_id: Uuid,
    pub preferences: Preferences,
}

fn minute(violations: &mut Violations, field: &'static str, value: i32) -> u16 {
    if (0..=1439).contains(&value) {
        value as u16
    } else {
        violations.push((field, "must be within 0..1439".into()));
        0
    }
}

pub fn preferences(
    request: &proto::SetPreferencesRequest,
) -> Result<NewPreferences, NotificationError> {
    let mut violations = Violations::new();
    request_id(&mut violations, &request.request_id);
    let Some(given) = &request.preferences else {
        violations.push(("preferences", "is required".into()));
        return Err(NotificationError::InvalidArgument(violations));
    };
    let customer_id = check(
        &mut violations,
        id("preferences.customer_id", &given.customer_id),
    );
    let locale = match given.locale.as_str() {
        "" => None,
        text => {
            let locale = Locale::parse(text);
            if locale.is_none() {
                violations.push(("preferences.locale", "must be \"zh-CN\" or \"en\"".into()));
            }
            locale
        }
    };
    let mut channels: Vec<ChannelPreference> = Vec::with_capacity(given.channels.len());
    for entry in &given.channels {
        match Channel::from_proto(entry.channel) {
            None => violations.push((
                "preferences.channels",
                format!("{} is not a channel", entry.channel),
            )),
            Some(channel) if channels.iter().any(|known| known.channel == channel) => violations
                .push((
                    "preferences.channels",
                    format!("{} is listed twice", channel.name()),
                )),
            Some(channel) => channels.push(ChannelPreference {
                channel,
                enabled: entry.enabled,
                marketing_enabled: entry.marketing_enabled,
            }),
        }
    }
    let quiet_hours = match &given.quiet_hours {
        None => QuietHours::DEFAULT,
        Some(quiet) => {
            let start_minute = minute(
                &mut violations,
                "preferences.quiet_hours.start_minute",
                quiet.start_minute,
            );
            let end_minute = minute(
                &mut violations,
                "preferences.quiet_hours.end_minute",
                quiet.end_minute,
            );
            let zone = if quiet.time_zone.is_empty() {
                DEFAULT_TIME_ZONE
            } else {
                quiet.time_zone.as_str()
            };
            let time_zone = zone.parse::<Tz>().unwrap_or_else(|_| {
                violations.push((
                    "preferences.quiet_hours.time_zone",
                    "is not an IANA time zone".into(),
                ));
                QuietHours::DEFAULT.time_zone
            });
            QuietHours {
                start_minute,
                end_minute,
                time_zone,
            }
        }
    };
    let parsed = customer_id.map(|customer_id| NewPreferences {
        customer_id,
        preferences: Preferences {
            locale,
            channels,
            quiet_hours,
        },
    });
    finish(violations, parsed)
}

pub fn subscribe(
    request: &proto::SubscribeRequest,
) -> Result<(Uuid, Option<Uuid>), NotificationError> {
    let mut violations = Violations::new();
    let customer_id = check(&mut violations, id("customer_id", &request.customer_id));
    let resume = check(
        &mut violations,
        optional_id("resume_after_id", &request.resume_after_id),
    );
    finish(violations, customer_id.zip(resume))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const CUSTOMER: &str = "0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f";

    fn fields(err: NotificationError) -> Vec<&'static str> {
        match err {
            NotificationError::InvalidArgument(violations) => {
                violations.into_iter().map(|(field, _)| field).collect()
            }
            other => panic!("not INVALID_ARGUMENT: {other}"),
        }
    }

    fn template(key: &str, params: &[(&str, &str)]) -> Option<send_request::Content> {
        Some(send_request::Content::Template(proto::TemplateContent {
            template_key: key.into(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>(),
        }))
    }

    fn valid_send() -> proto::SendRequest {
        proto::SendRequest {
            request_id: "send-1".into(),
            customer_id: CUSTOMER.into(),
            message_class: proto::MessageClass::Service as i32,
            content: template("CUSTOMER_CREATED", &[]),
            ..proto::SendRequest::default()
        }
    }

    #[test]
    fn each_bad_send_field_is_named() {
        let cases: Vec<(proto::SendRequest, Role, &str)> = vec![
            (
                proto::SendRequest {
                    request_id: String::new(),
                    ..valid_send()
                },
                Role::Service,
                "request_id",
            ),
            (
                proto::SendRequest {
                    customer_id: "x".into(),
                    ..valid_send()
                },
                Role::Service,
                "customer_id",
            ),
            (
                proto::SendRequest {
                    message_class: 0,
                    ..valid_send()
                },
                Role::Service,
                "message_class",
            ),
            (
                proto::SendRequest {
                    channels: vec![0],
                    ..valid_send()
                },
                Role::Service,
                "channels",
            ),
            (
                proto::SendRequest {
                    channels: vec![4],
                    ..valid_send()
                },
                Role::Service,
                "channels",
            ),
            (
                proto::SendRequest {
                    channels: vec![1, 1],
                    ..valid_send()
                },
                Role::Service,
                "channels",
            ),
            (
                proto::SendRequest {
                    locale: "fr".into(),
                    ..valid_send()
                },
                Role::Service,
                "locale",
            ),
            (
                proto::SendRequest {
                    event_id: "e".into(),
                    ..valid_send()
                },
                Role::Service,
                "event_id",
            ),
            (
                proto::SendRequest {
                    content: None,
                    ..valid_send()
                },
                Role::Service,
                "content",
            ),
            (
                proto::SendRequest {
                    content: Some(send_request::Content::Raw(proto::RawContent {
                        title: "t".into(),
                        body: "b".into(),
                    })),
                    ..valid_send()
                },
                Role::Service,
                "raw",
            ),
            (
                proto::SendRequest {
                    content: Some(send_request::Content::Raw(proto::RawContent {
                        title: String::new(),
                        body: "b".into(),
                    })),
                    ..valid_send()
                },
                Role::Operator,
                "raw.title",
            ),
            (
                proto::SendRequest {
                    content: template("CUSTOMER_CREATED", &[("x", "1")]),
                    ..valid_send()
                },
                Role::Service,
                "template.params",
            ),
            (
                proto::SendRequest {
                    content: template("lower", &[]),
                    ..valid_send()
                },
                Role::Service,
                "template.template_key",
            ),
        ];
        for (request, role, field) in cases {
            let err = send(&request, role, false).expect_err(field);
            assert_eq!(fields(err), [field]);
        }
        assert!(send(&valid_send(), Role::Service, false).is_ok());
    }

    #[test]
    fn an_unknown_template_is_not_found_after_validation() {
        let notice = send(
            &proto::SendRequest {
                content: template("NO_SUCH_TEMPLATE", &[]),
                ..valid_send()
            },
            Role::Service,
            false,
        )
        .expect("valid request");
        assert!(matches!(
            template_exists(&notice),
            Err(NotificationError::NotFound { .. })
        ));
    }

    #[test]
    fn bad_list_and_preference_fields_are_named() {
        let list_err = list(&proto::ListNotificationsRequest {
            customer_id: CUSTOMER.into(),
            page_size: -1,
            page_token: "garbage".into(),
            start_time: Some(prost_types::Timestamp {
                seconds: 100,
                nanos: 0,
            }),
            end_time: Some(prost_types::Timestamp {
                seconds: 50,
                nanos: 0,
            }),
            ..proto::ListNotificationsRequest::default()
        })
        .expect_err("bad");
        assert_eq!(fields(list_err), ["end_time", "page_size", "page_token"]);

        let err = preferences(&proto::SetPreferencesRequest {
            request_id: "p1".into(),
            preferences: Some(proto::Preferences {
                customer_id: CUSTOMER.into(),
                locale: "de".into(),
                channels: vec![
                    proto::ChannelPreference {
                        channel: 3,
                        enabled: false,
                        marketing_enabled: false,
                    },
                    proto::ChannelPreference {
                        channel: 3,
                        enabled: true,
                        marketing_enabled: false,
                    },
                ],
                quiet_hours: Some(proto::QuietHours {
                    start_minute: 1440,
                    end_minute: 480,
                    time_zone: "Mars/Olympus".into(),
                }),
                update_time: None,
            }),
        })
        .expect_err("bad");
        assert_eq!(
            fields(err),
            [
                "preferences.locale",
                "preferences.channels",
                "preferences.quiet_hours.start_minute",
                "preferences.quiet_hours.time_zone"
            ]
        );
    }

    #[test]
    fn page_tokens_round_trip() {
        let time = DateTime::from_timestamp_micros(1_764_000_000_123_456).expect("time");
        let id = Uuid::now_v7();
        assert_eq!(parse_page_token(&page_token(time, id)), Some((time, id)));
    }
}
