//! Turning one notice into notifications, one per channel, inside the caller's
//! transaction: the preferences decide each channel's fate (policy.rs), the template is
//! rendered in the notice locale, and a render error makes a FAILED notification with
//! the error as its only attempt, so no notice is ever lost silently.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    directory::{Directory, DirectoryError},
    metrics::Metrics,
    model::{Channel, Locale, MessageClass, Outcome, Status},
    policy::{Disposition, Preferences, dispose},
    store::{
        notifications::{
            InitialAttempt, NewNotification, NotificationRow, find_by_event, insert_notifications,
        },
        preferences::{find_preferences_and_customer_locale, upsert_customer_locale},
    },
    templates::{self, Params, RenderError, Rendered},
};

/// What a notice says.
#[derive(Debug, Clone)]
pub enum Content {
    Template { key: String, params: Params },
    Raw(Rendered),
}

/// One notice for one customer.
#[derive(Debug, Clone)]
pub struct Notice {
    pub customer_id: Uuid,
    pub class: MessageClass,
    pub channels: Vec<Channel>,
    /// `None`: the customer's notice locale.
    pub locale: Option<Locale>,
    pub event_id: Option<Uuid>,
    pub not_before: Option<DateTime<Utc>>,
    pub content: Content,
}

/// The customer's preferences (defaults if never set) and notice locale: the
/// preferences' locale, else the locale account reported (recorded here from
/// CustomerCreated, else asked once with GetCustomer and recorded), else zh-CN.
/// `Err(NotFound)` only when account does not know the customer.
pub async fn preferences_and_locale(
    conn: &mut PgConnection,
    directory: &Directory,
    customer_id: Uuid,
) -> Result<(Preferences, Option<DateTime<Utc>>, Locale), ComposeError> {
    let (stored, recorded_locale) = find_preferences_and_customer_locale(conn, customer_id).await?;
    let (preferences, update_time) = match stored {
        Some((preferences, update_time)) => (preferences, Some(update_time)),
        None => (Preferences::default(), None),
    };
    if let Some(locale) = preferences.locale {
        return Ok((preferences, update_time, locale));
    }
    let locale = match recorded_locale {
        Some(locale) => locale,
        None => match directory.customer_locale(customer_id).await? {
            Some(locale) => {
                upsert_customer_locale(conn, customer_id, locale).await?;
                locale
            }
            None => Locale::DEFAULT,
        },
    };
    Ok((preferences, update_time, locale))
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A notice rendered in its locale (or the render error), ready to be split into its
/// channels' notifications by [`Rendering::notifications`].
#[derive(Debug)]
pub struct Rendering<'a> {
    notice: &'a Notice,
    template_key: &'a str,
    /// The locale asked for.
    locale: Locale,
    /// The text and the locale it was rendered in.
    rendered: Result<(Rendered, Locale), RenderError>,
}

impl<'a> Rendering<'a> {
    /// Renders `notice` in its own locale if it names one, else `customer_locale`.
    pub fn new(notice: &'a Notice, customer_locale: Locale) -> Self {
        let locale = notice.locale.unwrap_or(customer_locale);
        let (template_key, rendered) = match &notice.content {
            Content::Template { key, params } => {
                (key.as_str(), render_with_fallback(key, locale, params))
            }
            Content::Raw(rendered) => ("", Ok((rendered.clone(), locale))),
        };
        Self {
            notice,
            template_key,
            locale,
            rendered,
        }
    }

    pub fn customer_id(&self) -> Uuid {
        self.notice.customer_id
    }

    /// One notification per channel of the notice, in its order, each with its initial
    /// attempt (IN_APP delivered by storing it, or the render failure): what
    /// `preferences` and the policy make of it at `now`.
    pub fn notifications(
        &self,
        preferences: &Preferences,
        now: DateTime<Utc>,
    ) -> Vec<(NewNotification<'_>, Option<InitialAttempt>)> {
        let notice = self.notice;
        let mut new = Vec::with_capacity(notice.channels.len());
        for &channel in &notice.channels {
            let disposition = dispose(preferences, notice.class, channel, now, notice.not_before);
            let (rendered_locale, title, body, render_error) = match &self.rendered {
                Ok((text, used)) => (*used, text.title.as_str(), text.body.as_str(), None),
                Err(err) => (self.locale, "", "", Some(err.to_string())),
            };
            let (status, suppression, next_attempt_time) = match (&render_error, disposition) {
                (Some(_), _) => (Status::Failed, None, None),
                (None, Disposition::Suppress(reason)) => (Status::Suppressed, Some(reason), None),
                // IN_APP is delivered by storing it: at once when due now.
                (None, Disposition::Deliver { not_before })
                    if channel == Channel::InApp && not_before <= now =>
                {
                    (Status::Sent, None, None)
                }
                (None, Disposition::Deliver { not_before }) => {
                    (Status::Pending, None, Some(not_before))
                }
            };
            let attempt = match (render_error, status) {
                (Some(error), _) => Some(InitialAttempt {
                    start_time: now,
                    outcome: None,
                    error_message: format!("render failed: {error}"),
                }),
                (None, Status::Sent) => Some(InitialAttempt {
                    start_time: now,
                    outcome: Some(Outcome::Delivered),
                    error_message: String::new(),
                }),
                _ => None,
            };
            new.push((
                NewNotification {
                    notification_id: Uuid::now_v7(),
                    customer_id: notice.customer_id,
                    channel,
                    class: notice.class,
                    status,
                    suppression,
                    locale: rendered_locale,
                    template_key: self.template_key,
                    event_id: notice.event_id,
                    title,
                    body,
                    next_attempt_time,
                    sent: status == Status::Sent,
                },
                attempt,
            ));
        }
        new
    }
}

/// Creates the notice's notifications, in the order of its channels. For a notice with
/// an event id, a channel that already has its notification returns that one.
pub async fn create_notifications(
    conn: &mut PgConnection,
    directory: &Directory,
    metrics: &Metrics,
    notice: &Notice,
) -> Result<Vec<NotificationRow>, ComposeError> {
    let (preferences, _, customer_locale) =
        preferences_and_locale(conn, directory, notice.customer_id).await?;
    let rendering = Rendering::new(notice, customer_locale);
    let new = rendering.notifications(&preferences, Utc::now());
    // Every channel in one statement (with the initial attempts).
    let mut inserted = insert_notifications(conn, &new).await?;
    let mut rows = Vec::with_capacity(new.len());
    for (candidate, _) in &new {
        let position = inserted
            .iter()
            .position(|row| row.notification_id == candidate.notification_id);
        match position {
            Some(position) => {
                let row = inserted.swap_remove(position);
                metrics.created(candidate.channel, candidate.status);
                rows.push(row);
            }
            // This (event_id, channel) has its notification already (a redelivery, a
            // second Send naming the event, or a concurrent insert that won).
            None => {
                if let Some(event_id) = notice.event_id
                    && let Some(existing) = find_by_event(conn, event_id, candidate.channel).await?
                {
                    rows.push(existing);
                }
            }
        }
    }
    Ok(rows)
}

/// Renders `key` in `locale`, or in zh-CN when the template lacks the locale; returns
/// the locale used.
fn render_with_fallback(
    key: &str,
    locale: Locale,
    params: &Params,
) -> Result<(Rendered, Locale), RenderError> {
    templates::render(key, locale, params).map(|rendered| (rendered, locale))
}
