//! Delivery workers: one per channel, each with at most `channel_concurrency`
//! deliveries in flight, so a slow provider holds back only its own channel.
//!
//! A worker claims due PENDING notifications with `FOR UPDATE SKIP LOCKED` and a lease
//! (`claimed_until`), delivers each outside any transaction, then hands the outcome to
//! its channel's settler, which records the attempts and new statuses of every
//! delivery finished meanwhile in one statement guarded by the claim token (one commit
//! per batch, not per notification: under load the batch grows while the previous one
//! commits; idle, a batch is one delivery, at once). A process killed
//! between claim and record leaves the row PENDING with an expiring lease: after it,
//! any worker (this one after a restart, or another replica) claims it again, so every
//! notification is delivered, and at most once per claim. Retries are rows with a
//! later `next_attempt_time`, so they survive restarts too.

pub mod webhook;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use rand::Rng;
use sqlx::PgPool;
use tokio::{
    sync::{Semaphore, mpsc},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    config::{DeliveryConfig, Webhook},
    directory::{Directory, DirectoryError},
    metrics::Metrics,
    model::{Channel, MessageClass, Outcome, Status, Suppression, mask_phone},
    signals::Signals,
    store::notifications::{Claimed, NewAttempt, Settled, Settlement, claim_due, settle_claimed},
};

/// Deliveries waiting for their settler at most (back-pressure on the workers).
const SETTLE_QUEUE_MAX: usize = 1_024;
/// Deliveries one settling statement records at most.
const SETTLE_BATCH_MAX: usize = 256;

/// What a delivery came to, before it is recorded.
#[derive(Debug, Clone)]
enum Delivered {
    /// An attempt was made.
    Attempt {
        attempt: NewAttempt,
        outcome: Outcome,
        retry_after: Option<Duration>,
        destination_masked: Option<String>,
    },
    /// Not sent by policy, found at delivery time (no attempt is recorded).
    Suppressed(Suppression),
}

/// Everything the workers share.
#[derive(Debug)]
pub struct Deliverer {
    pool: PgPool,
    config: DeliveryConfig,
    directory: Directory,
    http: reqwest::Client,
    metrics: Metrics,
    signals: Signals,
}

impl Deliverer {
    pub fn new(
        pool: PgPool,
        config: DeliveryConfig,
        directory: Directory,
        metrics: Metrics,
        signals: Signals,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.http_timeout)
            .timeout(config.http_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self {
            pool,
            config,
            directory,
            http,
            metrics,
            signals,
        })
    }

    /// Runs one worker per channel until `stop`; in-flight deliveries are abandoned at
    /// `stop` (their leases expire and they are claimed again).
    pub async fn run(self, stop: CancellationToken) {
        let shared = Arc::new(self);
        let mut workers = JoinSet::new();
        for &channel in Channel::ALL {
            workers.spawn(work(Arc::clone(&shared), channel, stop.clone()));
        }
        while workers.join_next().await.is_some() {}
    }
}

async fn work(shared: Arc<Deliverer>, channel: Channel, stop: CancellationToken) {
    let limit = shared.config.channel_concurrency;
    let permits = Arc::new(Semaphore::new(limit));
    let claim_token = Uuid::new_v4();
    let (settle, settle_queue) = mpsc::channel(SETTLE_QUEUE_MAX);
    let settler = tokio::spawn(settle_batches(
        Arc::clone(&shared),
        channel,
        claim_token,
        settle_queue,
    ));
    let mut in_flight = JoinSet::new();
    let mut wake = shared.signals.delivery();
    loop {
        while in_flight.try_join_next().is_some() {}
        let free = permits.available_permits();
        let mut claimed_full = false;
        if free > 0 {
            match claim_due(
                &shared.pool,
                channel,
                claim_token,
                shared.config.claim_lease,
                free as i64,
            )
            .await
            {
                Ok(claimed) => {
                    claimed_full = claimed.len() == free;
                    for notification in claimed {
                        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                            break;
                        };
                        let shared = Arc::clone(&shared);
                        let settle = settle.clone();
                        in_flight.spawn(async move {
                            let settlement = deliver_one(&shared, channel, notification).await;
                            // Waits while the settler is SETTLE_QUEUE_MAX behind.
                            let _ = settle.send(settlement).await;
                            drop(permit);
                        });
                    }
                }
                Err(err) => {
                    tracing::warn!(channel = channel.name(), error = %err, "cannot claim due notifications");
                }
            }
        }
        if claimed_full {
            // More may be due: claim again once half the slots are free, so a claim
            // takes a batch of rows (one statement and one commit for many) instead of
            // one row per finished delivery.
            let refill_at = limit.div_ceil(2);
            while permits.available_permits() < refill_at && !in_flight.is_empty() {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = in_flight.join_next() => {}
                }
            }
            if stop.is_cancelled() {
                break;
            }
            continue;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            _ = wake.changed() => {}
            _ = in_flight.join_next(), if !in_flight.is_empty() => {}
            () = tokio::time::sleep(shared.config.poll_interval) => {}
        }
    }
    // Deliveries in flight are abandoned (their leases expire); what finished is
    // settled before the worker ends.
    in_flight.shutdown().await;
    drop(settle);
    let _ = settler.await;
}

/// Records finished deliveries in batches until every sender is gone.
async fn settle_batches(
    shared: Arc<Deliverer>,
    channel: Channel,
    claim_token: Uuid,
    mut queue: mpsc::Receiver<Settlement>,
) {
    let mut batch = Vec::with_capacity(SETTLE_BATCH_MAX);
    while queue.recv_many(&mut batch, SETTLE_BATCH_MAX).await > 0 {
        match settle_claimed(&shared.pool, claim_token, &batch).await {
            Ok(settled) => {
                let settled: std::collections::HashSet<Uuid> = settled.into_iter().collect();
                let mut in_app_sent = false;
                for settlement in &batch {
                    if !settled.contains(&settlement.notification_id) {
                        tracing::warn!(
                            notification_id = %settlement.notification_id,
                            "claim lost before the attempt was recorded; another worker owns it"
                        );
                        continue;
                    }
                    let status = settlement.settled.status;
                    if status != Status::Pending {
                        shared.metrics.settled(channel, status);
                    }
                    in_app_sent |= channel == Channel::InApp && status == Status::Sent;
                }
                if in_app_sent {
                    shared.signals.in_app_sent();
                }
            }
            Err(err) => tracing::warn!(
                channel = channel.name(), deliveries = batch.len(), error = %err,
                "cannot record delivery attempts; the claims expire and they are tried again"
            ),
        }
        batch.clear();
    }
}

/// Delivers one claimed notification and decides its next state.
async fn deliver_one(shared: &Deliverer, channel: Channel, notification: Claimed) -> Settlement {
    let delivered = deliver(shared, channel, &notification).await;
    let attempt_number = notification.attempt_count + 1;
    let (attempt, settled) = match delivered {
        Delivered::Suppressed(reason) => (
            None,
            Settled {
                status: Status::Suppressed,
                suppression: Some(reason),
                next_attempt_time: None,
                destination_masked: None,
            },
        ),
        Delivered::Attempt {
            attempt,
            outcome,
            retry_after,
            destination_masked,
        } => {
            shared
                .metrics
                .attempted(channel, outcome, attempt.latency_ms as f64 / 1_000.0);
            let (status, next_attempt_time) = if outcome == Outcome::Delivered {
                (Status::Sent, None)
            } else if !outcome.is_retryable() {
                (Status::Failed, None)
            } else if attempt_number >= shared.config.attempts_max as i32 {
                (Status::DeadLettered, None)
            } else {
                let delay = retry_delay(&shared.config, attempt_number as u32, retry_after);
                let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                (Status::Pending, Some(Utc::now() + delay))
            };
            (
                Some(attempt),
                Settled {
                    status,
                    suppression: None,
                    next_attempt_time,
                    destination_masked,
                },
            )
        }
    };
    Settlement {
        notification_id: notification.notification_id,
        attempt_count: notification.attempt_count + i32::from(attempt.is_some()),
        attempt,
        settled,
    }
}

/// The delay before attempt `attempt_number + 1`: `base · 2^(n-1)` capped at the
/// maximum, with equal jitter (half fixed, half random), and never shorter than the
/// provider's `Retry-After` (itself capped by `retry_after_max`).
pub fn retry_delay(
    config: &DeliveryConfig,
    attempt_number: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exponent = attempt_number.saturating_sub(1).min(30);
    let backoff = config
        .backoff_base
        .saturating_mul(1 << exponent)
        .min(config.backoff_max);
    let half = backoff / 2;
    let jitter = half.mul_f64(rand::rng().random::<f64>());
    let jittered = half + jitter;
    match retry_after {
        Some(asked) => jittered.max(asked.min(config.retry_after_max)),
        None => jittered,
    }
}

fn attempt_from(
    started: chrono::DateTime<Utc>,
    clock: Instant,
    outcome: Outcome,
    http_status: u16,
    error_message: String,
    provider_message_id: String,
) -> NewAttempt {
    NewAttempt {
        start_time: started,
        latency_ms: clock.elapsed().as_millis() as i64,
        outcome: Some(outcome),
        http_status: i32::from(http_status),
        error_message,
        provider_message_id,
    }
}

async fn deliver(shared: &Deliverer, channel: Channel, notification: &Claimed) -> Delivered {
    let started = Utc::now();
    let clock = Instant::now();
    let done = |outcome, http_status, error: String, message_id: String, retry_after, masked| {
        Delivered::Attempt {
            attempt: attempt_from(started, clock, outcome, http_status, error, message_id),
            outcome,
            retry_after,
            destination_masked: masked,
        }
    };
    let class = MessageClass::from_i16(notification.message_class);
    match channel {
        Channel::InApp => done(
            Outcome::Delivered,
            0,
            String::new(),
            String::new(),
            None,
            None,
        ),
        Channel::Log => {
            // Title and body carry no unmasked PII by contract (Notification.body).
            tracing::info!(
                notification_id = %notification.notification_id,
                customer_id = %notification.customer_id,
                template_key = %notification.template_key,
                title = %notification.title,
                body = %notification.body,
                "notification (LOG channel)"
            );
            done(
                Outcome::Delivered,
                0,
                String::new(),
                String::new(),
                None,
                None,
            )
        }
        Channel::Push => {
            let Some(webhook) = &shared.config.push else {
                return not_configured(done, channel);
            };
            let to = notification.customer_id.to_string();
            call(shared, webhook, channel, notification, &to, done, None).await
        }
        Channel::Sms => {
            let Some(webhook) = &shared.config.sms else {
                return not_configured(done, channel);
            };
            let contact = match shared
                .directory
                .contact_point(notification.customer_id, notification.notification_id)
                .await
            {
                Ok(contact) => contact,
                Err(DirectoryError::NotFound(_)) => {
                    return Delivered::Suppressed(Suppression::NoDestination);
                }
                Err(DirectoryError::Unavailable(message)) => {
                    return done(
                        Outcome::NetworkError,
                        0,
                        format!("contact point unavailable: {message}"),
                        String::new(),
                        None,
                        None,
                    );
                }
            };
            if contact.closed && class != Some(MessageClass::Regulatory) {
                return Delivered::Suppressed(Suppression::CustomerClosed);
            }
            if contact.phone.is_empty() {
                return Delivered::Suppressed(Suppression::NoDestination);
            }
            let masked = mask_phone(&contact.phone);
            call(
                shared,
                webhook,
                channel,
                notification,
                &contact.phone,
                done,
                Some(masked),
            )
            .await
        }
    }
}

fn not_configured(
    done: impl Fn(Outcome, u16, String, String, Option<Duration>, Option<String>) -> Delivered,
    channel: Channel,
) -> Delivered {
    done(
        Outcome::Rejected,
        0,
        format!("no {} provider webhook is configured", channel.name()),
        String::new(),
        None,
        None,
    )
}

async fn call(
    shared: &Deliverer,
    webhook: &Webhook,
    channel: Channel,
    notification: &Claimed,
    to: &str,
    done: impl Fn(Outcome, u16, String, String, Option<Duration>, Option<String>) -> Delivered,
    destination_masked: Option<String>,
) -> Delivered {
    let body = serde_json::json!({
        "notification_id": notification.notification_id,
        "channel": channel.name(),
        "to": to,
        "customer_id": notification.customer_id,
        "message_class": MessageClass::from_i16(notification.message_class).map_or("", MessageClass::name),
        "locale": notification.locale,
        "template_key": notification.template_key,
        "event_id": notification.event_id,
        "title": notification.title,
        "body": notification.body,
    });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let result = webhook::post(
        &shared.http,
        webhook,
        &notification.notification_id.to_string(),
        body,
        shared.config.http_timeout,
    )
    .await;
    done(
        result.outcome,
        result.http_status,
        result.error_message,
        result.provider_message_id,
        result.retry_after,
        destination_masked,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DeliveryConfig {
        DeliveryConfig {
            attempts_max: 6,
            backoff_base: Duration::from_millis(1_000),
            backoff_max: Duration::from_millis(10_000),
            retry_after_max: Duration::from_secs(60),
            http_timeout: Duration::from_secs(5),
            channel_concurrency: 4,
            poll_interval: Duration::from_millis(500),
            claim_lease: Duration::from_secs(60),
            sms: None,
            push: None,
            log_channel_enabled: false,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_its_ceiling() {
        let config = config();
        for (attempt, full_ms) in [(1, 1_000), (2, 2_000), (3, 4_000), (4, 8_000), (5, 10_000)] {
            for _ in 0..20 {
                let delay = retry_delay(&config, attempt, None).as_millis() as u64;
                assert!(
                    (full_ms / 2..=full_ms).contains(&delay),
                    "attempt {attempt}: {delay} ms"
                );
            }
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_cap() {
        let config = config();
        let delay = retry_delay(&config, 1, Some(Duration::from_secs(7)));
        assert_eq!(delay, Duration::from_secs(7));
        let delay = retry_delay(&config, 1, Some(Duration::from_secs(3_600)));
        assert_eq!(delay, Duration::from_secs(60));
    }
}
