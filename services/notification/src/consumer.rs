//! The event consumer (group "notification"): every event type becomes its notice
//! (notices.rs) on the class's default channels, written in the consumer's
//! transaction, so the dedupe record and the notifications commit together. The
//! notifications are also unique on (event_id, channel): an event replayed after the
//! dedupe record expired still makes no second notice.
//!
//! A batch of events (the runner's, up to `EVENTS_CONSUMER_BATCH_SIZE_MAX`) costs one
//! statement for the locales CustomerCreated events bring (when any), one read of the
//! preferences and locales of every customer in it, and one insert of every
//! notification with its initial attempt, whatever the batch size.

use std::collections::HashMap;

use chrono::Utc;
use microloan_events::{BatchFailure, Fresh, Handler, HandlerError};
use microloan_proto::events::v1::{Event, event::Payload};
use sqlx::{Postgres, Transaction};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    compose::{Content, Notice, Rendering},
    directory::{Directory, DirectoryError},
    metrics::Metrics,
    model::{Locale, Status},
    notices::notice_for,
    policy::Preferences,
    signals::Signals,
    store::{
        notifications::insert_notifications,
        preferences::{
            find_preferences_and_customer_locales, upsert_customer_locale, upsert_customer_locales,
        },
    },
};

/// The consumer group's name.
pub const GROUP: &str = "notification";

#[derive(Debug, Clone)]
pub struct Notifier {
    pub directory: Directory,
    pub metrics: Metrics,
    pub signals: Signals,
    pub log_channel_enabled: bool,
}

impl Notifier {
    /// The event's notice (on the class's default channels) and, for CustomerCreated,
    /// the locale it reports. Errors are the event's fault: rejected.
    fn notice_of(&self, event: &Event) -> Result<(Notice, Option<Locale>), HandlerError> {
        let reject = |err: anyhow::Error| HandlerError::Reject(err);
        let customer_id = Uuid::parse_str(&event.customer_id)
            .map_err(|err| reject(anyhow::anyhow!("customer_id: {err}")))?;
        let event_id = Uuid::parse_str(&event.event_id)
            .map_err(|err| reject(anyhow::anyhow!("event_id: {err}")))?;
        let reported = match &event.payload {
            Some(Payload::CustomerCreated(created)) => Locale::parse(&created.locale),
            _ => None,
        };
        let notice = notice_for(event).map_err(|err| reject(err.into()))?;
        let notice = Notice {
            customer_id,
            class: notice.class,
            channels: notice.class.default_channels(self.log_channel_enabled),
            locale: None,
            event_id: Some(event_id),
            not_before: None,
            content: Content::Template {
                key: notice.template_key.to_owned(),
                params: notice.params,
            },
        };
        Ok((notice, reported))
    }

    /// Applies `batch` (stream order) in `tx`: the same notices as handling each event
    /// alone, in three statements. One difference, only possible when a customer's
    /// events precede its CustomerCreated in one batch: those events use the locale
    /// CustomerCreated reports (account's, as they would have asked anyway).
    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        batch: &[Fresh<'_>],
    ) -> Result<(), BatchFailure> {
        let mut notices = Vec::with_capacity(batch.len());
        let mut reported = Vec::new();
        for (index, fresh) in batch.iter().enumerate() {
            let (notice, locale) = fresh
                .span
                .in_scope(|| self.notice_of(fresh.event))
                .map_err(|error| BatchFailure::at(index, error))?;
            if let Some(locale) = locale {
                reported.push((notice.customer_id, locale));
            }
            notices.push(notice);
        }
        let whole = |err: sqlx::Error| BatchFailure::whole(err.into());
        upsert_customer_locales(tx, &reported)
            .await
            .map_err(whole)?;
        // Each customer once, with the index of its first event (the one an account
        // failure is blamed on).
        let mut first_index: HashMap<Uuid, usize> = HashMap::new();
        for (index, notice) in notices.iter().enumerate() {
            first_index.entry(notice.customer_id).or_insert(index);
        }
        let customer_ids: Vec<Uuid> = first_index.keys().copied().collect();
        let mut stored = find_preferences_and_customer_locales(tx, &customer_ids)
            .await
            .map_err(whole)?;
        let mut customers: HashMap<Uuid, (Preferences, Locale)> =
            HashMap::with_capacity(customer_ids.len());
        for (&customer_id, &index) in &first_index {
            let (preferences, recorded) = stored.remove(&customer_id).unwrap_or((None, None));
            let preferences = preferences
                .map(|(preferences, _)| preferences)
                .unwrap_or_default();
            let locale = match (preferences.locale, recorded) {
                (Some(locale), _) | (None, Some(locale)) => locale,
                // Never recorded (a customer created before this consumer ran): asked
                // once of account and recorded, as compose does for one notice.
                (None, None) => {
                    let asked = self
                        .directory
                        .customer_locale(customer_id)
                        .instrument(batch[index].span.clone())
                        .await;
                    let locale = match asked {
                        Ok(locale) => locale.unwrap_or(Locale::DEFAULT),
                        // Account does not know the customer: notify in the default
                        // locale rather than lose a notice (cannot happen for events
                        // account produced).
                        Err(DirectoryError::NotFound(_)) => Locale::DEFAULT,
                        Err(err @ DirectoryError::Unavailable(_)) => {
                            return Err(BatchFailure::at(index, HandlerError::Retry(err.into())));
                        }
                    };
                    upsert_customer_locale(tx, customer_id, locale)
                        .await
                        .map_err(whole)?;
                    locale
                }
            };
            customers.insert(customer_id, (preferences, locale));
        }
        let renderings: Vec<Rendering<'_>> = notices
            .iter()
            .zip(batch)
            .map(|(notice, fresh)| {
                let locale = customers
                    .get(&notice.customer_id)
                    .map_or(Locale::DEFAULT, |(_, locale)| *locale);
                fresh.span.in_scope(|| Rendering::new(notice, locale))
            })
            .collect();
        let now = Utc::now();
        let default = Preferences::default();
        let new: Vec<_> = renderings
            .iter()
            .flat_map(|rendering| {
                let preferences = customers
                    .get(&rendering.customer_id())
                    .map_or(&default, |(preferences, _)| preferences);
                rendering.notifications(preferences, now)
            })
            .collect();
        // Every channel of every notice in one statement. A notification left out by
        // the (event_id, channel) conflict exists already (an event replayed after its
        // dedupe record expired): nothing to add.
        let inserted = insert_notifications(tx, &new).await.map_err(whole)?;
        for row in &inserted {
            if let (Some(channel), Some(status)) = (row.channel(), Status::from_i16(row.status)) {
                self.metrics.created(channel, status);
            }
        }
        Ok(())
    }
}

impl Handler for Notifier {
    async fn handle(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let batch = [Fresh {
            event,
            span: tracing::Span::current(),
        }];
        self.apply(tx, &batch)
            .await
            .map_err(|failure| failure.error)
    }

    async fn handle_batch(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        batch: &[Fresh<'_>],
    ) -> Result<(), BatchFailure> {
        self.apply(tx, batch).await
    }

    /// The notices are committed: the delivery workers and the streams find them now
    /// (woken before the commit, they would find nothing and wait for their poll).
    fn committed(&self, _events: &[&Event]) {
        self.signals.created();
    }
}
