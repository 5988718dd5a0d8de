//! The event consumer (group "notification"): every event type becomes its notice
//! (notices.rs) on the class's default channels, written in the consumer's
//! transaction, so the dedupe record and the notifications commit together. The
//! notifications are also unique on (event_id, channel): an event replayed after the
//! dedupe record expired still makes no second notice.

use microloan_events::{Handler, HandlerError};
use microloan_proto::events::v1::{Event, event::Payload};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::{
    compose::{ComposeError, Content, Notice, create_notifications},
    directory::{Directory, DirectoryError},
    metrics::Metrics,
    model::Locale,
    notices::notice_for,
    signals::Signals,
    store::preferences::upsert_customer_locale,
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

impl Handler for Notifier {
    async fn handle(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let reject = |err: anyhow::Error| HandlerError::Reject(err);
        let customer_id = Uuid::parse_str(&event.customer_id)
            .map_err(|err| reject(anyhow::anyhow!("customer_id: {err}")))?;
        let event_id = Uuid::parse_str(&event.event_id)
            .map_err(|err| reject(anyhow::anyhow!("event_id: {err}")))?;
        if let Some(Payload::CustomerCreated(created)) = &event.payload
            && let Some(locale) = Locale::parse(&created.locale)
        {
            upsert_customer_locale(tx, customer_id, locale).await?;
        }
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
        match create_notifications(tx, &self.directory, &self.metrics, &notice).await {
            Ok(_) => Ok(()),
            Err(ComposeError::Database(err)) => Err(err.into()),
            // Account does not know the customer: notify in the default locale rather
            // than lose a notice (cannot happen for events account produced).
            Err(ComposeError::Directory(DirectoryError::NotFound(_))) => {
                upsert_customer_locale(tx, customer_id, Locale::DEFAULT).await?;
                create_notifications(tx, &self.directory, &self.metrics, &notice)
                    .await
                    .map_err(|err| HandlerError::Retry(anyhow::anyhow!("{err}")))?;
                Ok(())
            }
            Err(err @ ComposeError::Directory(DirectoryError::Unavailable(_))) => {
                Err(HandlerError::Retry(err.into()))
            }
        }
    }

    /// The notices are committed: the delivery workers and the streams find them now
    /// (woken before the commit, they would find nothing and wait for their poll).
    fn committed(&self, _events: &[&Event]) {
        self.signals.created();
    }
}
