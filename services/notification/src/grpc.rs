//! The gRPC face of the notification service: proto ⇄ domain and errors → `Status`.
//! Requests are parsed once (parse.rs) into domain values; the rules live in
//! compose.rs, policy.rs and stream.rs, the SQL in store/.

use std::pin::Pin;

use chrono::{DateTime, Utc};
use futures::Stream;
use microloan_platform::{
    auth::{Caller, PermissionTable, Role},
    convert,
    idempotency::{self, RequestKey},
};
use microloan_proto::notification::v1::{
    self as proto,
    notification_service_server::{NotificationService, SERVICE_NAME},
};
use prost::Message;
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    compose::{ComposeError, create_notifications, preferences_and_locale},
    config::StreamConfig,
    directory::{Directory, DirectoryError},
    error::NotificationError,
    metrics::Metrics,
    model::{Channel, Outcome, Status as NoticeStatus},
    parse::{self, ListQuery, NewPreferences},
    policy::Preferences,
    signals::Signals,
    store::{
        notifications::{
            AttemptRow, ListFilter, NotificationRow, attempts_of, find_notification,
            list_notifications,
        },
        preferences::upsert_preferences,
    },
    stream::{self, OpenStreams, Start, StreamContext, StreamItem},
};

const STAFF: &[Role] = &[Role::Operator, Role::Service];
/// Customers call these for their own data only; the handler checks ownership.
const ANYONE: &[Role] = &[Role::Operator, Role::Service, Role::Customer];
/// A customer's own choices, or an operator acting on a complaint; never another
/// service, so no automated flow can opt a customer back in.
const OWNER_OR_OPERATOR: &[Role] = &[Role::Operator, Role::Customer];

/// Who may call what, exactly as each RPC's `Roles:` comment says (checked by test).
/// A customer token reaches only its own notifications and
/// preferences (checked in each handler).
pub fn permissions() -> PermissionTable {
    PermissionTable::new(
        SERVICE_NAME,
        &[
            ("Send", STAFF),
            ("GetNotification", ANYONE),
            ("ListNotifications", ANYONE),
            ("Subscribe", ANYONE),
            ("SetPreferences", OWNER_OR_OPERATOR),
            ("GetPreferences", ANYONE),
        ],
    )
}

#[derive(Debug, Clone)]
pub struct NotificationApi {
    pool: PgPool,
    directory: Directory,
    metrics: Metrics,
    signals: Signals,
    streams: OpenStreams,
    stream_config: StreamConfig,
    log_channel_enabled: bool,
    stop: tokio_util::sync::CancellationToken,
}

impl NotificationApi {
    pub fn new(
        pool: PgPool,
        directory: Directory,
        metrics: Metrics,
        signals: Signals,
        stream_config: StreamConfig,
        log_channel_enabled: bool,
        stop: tokio_util::sync::CancellationToken,
    ) -> Self {
        Self {
            pool,
            directory,
            metrics,
            signals,
            streams: OpenStreams::default(),
            stream_config,
            log_channel_enabled,
            stop,
        }
    }
}

impl From<ComposeError> for NotificationError {
    fn from(error: ComposeError) -> Self {
        match error {
            ComposeError::Database(err) => Self::Database(err),
            ComposeError::Directory(err) => err.into(),
        }
    }
}

impl From<DirectoryError> for NotificationError {
    fn from(error: DirectoryError) -> Self {
        match error {
            DirectoryError::NotFound(customer_id) => {
                Self::not_found("customer", customer_id.to_string())
            }
            DirectoryError::Unavailable(message) => Self::Unavailable {
                dependency: "account",
                message,
            },
        }
    }
}

/// NOT_RESOURCE_OWNER unless the caller may reach this customer.
fn ensure_owner(caller: &Caller, customer_id: Uuid) -> Result<(), NotificationError> {
    if caller.may_access_customer(customer_id) {
        Ok(())
    } else {
        Err(NotificationError::NotResourceOwner)
    }
}

fn decode_stored<T: Message + Default>(stored: &[u8]) -> Result<T, NotificationError> {
    T::decode(stored).map_err(|err| NotificationError::Internal(format!("stored response: {err}")))
}

fn duration_ms(millis: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: millis / 1_000,
        nanos: ((millis % 1_000) * 1_000_000) as i32,
    }
}

/// The proto form of a stored notification with its attempts.
pub fn notification_to_proto(
    row: &NotificationRow,
    attempts: &[AttemptRow],
) -> proto::Notification {
    let status = NoticeStatus::from_i16(row.status);
    proto::Notification {
        notification_id: row.notification_id.to_string(),
        customer_id: row.customer_id.to_string(),
        channel: i32::from(row.channel),
        message_class: i32::from(row.message_class),
        status: i32::from(row.status),
        suppression_reason: i32::from(row.suppression_reason),
        locale: row.locale.clone(),
        template_key: row.template_key.clone(),
        event_id: row.event_id.map(|id| id.to_string()).unwrap_or_default(),
        title: row.title.clone(),
        body: row.body.clone(),
        destination_masked: row.destination_masked.clone(),
        attempts: attempts
            .iter()
            .filter(|attempt| attempt.notification_id == row.notification_id)
            .map(|attempt| proto::DeliveryAttempt {
                attempt_number: attempt.attempt_number,
                start_time: Some(convert::timestamp(attempt.start_time)),
                latency: Some(duration_ms(attempt.latency_ms)),
                outcome: Outcome::from_i16(attempt.outcome)
                    .map_or(0, |outcome| outcome.to_proto() as i32),
                http_status: attempt.http_status,
                error_message: attempt.error_message.clone(),
                provider_message_id: attempt.provider_message_id.clone(),
            })
            .collect(),
        next_attempt_time: row
            .next_attempt_time
            .filter(|_| status == Some(NoticeStatus::Pending))
            .map(convert::timestamp),
        create_time: Some(convert::timestamp(row.create_time)),
        sent_time: row
            .sent_time
            .filter(|_| status == Some(NoticeStatus::Sent))
            .map(convert::timestamp),
        update_time: Some(convert::timestamp(row.update_time)),
    }
}

/// The proto form of preferences, every channel listed (the defaults filled in).
fn preferences_to_proto(
    customer_id: Uuid,
    preferences: &Preferences,
    locale: crate::model::Locale,
    update_time: Option<DateTime<Utc>>,
) -> proto::Preferences {
    proto::Preferences {
        customer_id: customer_id.to_string(),
        locale: locale.as_str().to_owned(),
        channels: Channel::ALL
            .iter()
            .map(|&channel| {
                let setting = preferences.channel(channel);
                proto::ChannelPreference {
                    channel: channel.to_proto() as i32,
                    enabled: setting.enabled,
                    marketing_enabled: setting.marketing_enabled,
                }
            })
            .collect(),
        quiet_hours: Some(proto::QuietHours {
            start_minute: i32::from(preferences.quiet_hours.start_minute),
            end_minute: i32::from(preferences.quiet_hours.end_minute),
            time_zone: preferences.quiet_hours.time_zone.name().to_owned(),
        }),
        update_time: update_time.map(convert::timestamp),
    }
}

impl NotificationApi {
    async fn send(
        &self,
        caller: &Caller,
        request: proto::SendRequest,
    ) -> Result<proto::SendResponse, NotificationError> {
        let notice = parse::send(&request, caller.role, self.log_channel_enabled)?;
        let body = proto::SendRequest {
            request_id: String::new(),
            ..request.clone()
        }
        .encode_to_vec();
        let caller_key = caller.idempotency_scope();
        let key = RequestKey {
            caller: &caller_key,
            rpc: "Send",
            request_id: &request.request_id,
            body: &body,
        };
        let mut tx = self.pool.begin().await?;
        if let Some(stored) = idempotency::claim(&mut tx, key).await? {
            return decode_stored(&stored);
        }
        // NOT_FOUND: the customer first, then the template (the proto's order).
        preferences_and_locale(&mut tx, &self.directory, notice.customer_id).await?;
        parse::template_exists(&notice)?;
        let rows = create_notifications(&mut tx, &self.directory, &self.metrics, &notice).await?;
        let ids: Vec<Uuid> = rows.iter().map(|row| row.notification_id).collect();
        let attempts = attempts_of(&mut tx, &ids).await?;
        let response = proto::SendResponse {
            notifications: rows
                .iter()
                .map(|row| notification_to_proto(row, &attempts))
                .collect(),
        };
        idempotency::record_response(&mut tx, key, &response.encode_to_vec()).await?;
        tx.commit().await?;
        self.signals.created();
        Ok(response)
    }

    async fn get_notification(
        &self,
        caller: &Caller,
        request: proto::GetNotificationRequest,
    ) -> Result<proto::GetNotificationResponse, NotificationError> {
        let notification_id = parse::id("notification_id", &request.notification_id)
            .map_err(NotificationError::InvalidArgument)?;
        let mut conn = self.pool.acquire().await?;
        let not_found =
            || NotificationError::not_found("notification", notification_id.to_string());
        let row = find_notification(&mut conn, notification_id)
            .await?
            .ok_or_else(not_found)?;
        ensure_owner(caller, row.customer_id)?;
        if caller.role == Role::Customer && row.channel() != Some(Channel::InApp) {
            return Err(not_found());
        }
        let attempts = attempts_of(&mut conn, &[notification_id]).await?;
        Ok(proto::GetNotificationResponse {
            notification: Some(notification_to_proto(&row, &attempts)),
        })
    }

    async fn list_notifications(
        &self,
        caller: &Caller,
        request: proto::ListNotificationsRequest,
    ) -> Result<proto::ListNotificationsResponse, NotificationError> {
        let ListQuery {
            mut filter,
            page_size,
        } = parse::list(&request)?;
        ensure_owner(caller, filter.customer_id)?;
        if caller.role == Role::Customer {
            filter.channels = vec![Channel::InApp.as_i16()];
        }
        let mut conn = self.pool.acquire().await?;
        let mut rows = list_notifications(
            &mut conn,
            &ListFilter {
                limit: page_size as i64 + 1,
                ..filter
            },
        )
        .await?;
        let next_page_token = if rows.len() > page_size {
            rows.truncate(page_size);
            rows.last()
                .map(|last| parse::page_token(last.create_time, last.notification_id))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let ids: Vec<Uuid> = rows.iter().map(|row| row.notification_id).collect();
        let attempts = attempts_of(&mut conn, &ids).await?;
        Ok(proto::ListNotificationsResponse {
            notifications: rows
                .iter()
                .map(|row| notification_to_proto(row, &attempts))
                .collect(),
            next_page_token,
        })
    }

    async fn set_preferences(
        &self,
        caller: &Caller,
        request: proto::SetPreferencesRequest,
    ) -> Result<proto::SetPreferencesResponse, NotificationError> {
        let NewPreferences {
            customer_id,
            preferences,
        } = parse::preferences(&request)?;
        ensure_owner(caller, customer_id)?;
        let body = proto::SetPreferencesRequest {
            request_id: String::new(),
            ..request.clone()
        }
        .encode_to_vec();
        let caller_key = caller.idempotency_scope();
        let key = RequestKey {
            caller: &caller_key,
            rpc: "SetPreferences",
            request_id: &request.request_id,
            body: &body,
        };
        let mut tx = self.pool.begin().await?;
        if let Some(stored) = idempotency::claim(&mut tx, key).await? {
            return decode_stored(&stored);
        }
        // NOT_FOUND unless account knows the customer (or they are known here).
        let (_, _, customer_locale) =
            preferences_and_locale(&mut tx, &self.directory, customer_id).await?;
        let update_time = upsert_preferences(&mut tx, customer_id, &preferences).await?;
        let locale = preferences.locale.unwrap_or(customer_locale);
        let response = proto::SetPreferencesResponse {
            preferences: Some(preferences_to_proto(
                customer_id,
                &preferences,
                locale,
                Some(update_time),
            )),
        };
        idempotency::record_response(&mut tx, key, &response.encode_to_vec()).await?;
        tx.commit().await?;
        Ok(response)
    }

    async fn get_preferences(
        &self,
        caller: &Caller,
        request: proto::GetPreferencesRequest,
    ) -> Result<proto::GetPreferencesResponse, NotificationError> {
        let customer_id = parse::id("customer_id", &request.customer_id)
            .map_err(NotificationError::InvalidArgument)?;
        ensure_owner(caller, customer_id)?;
        let mut conn = self.pool.acquire().await?;
        let (preferences, update_time, locale) =
            preferences_and_locale(&mut conn, &self.directory, customer_id).await?;
        Ok(proto::GetPreferencesResponse {
            preferences: Some(preferences_to_proto(
                customer_id,
                &preferences,
                locale,
                update_time,
            )),
        })
    }

    async fn subscribe(
        &self,
        caller: &Caller,
        request: proto::SubscribeRequest,
    ) -> Result<SubscribeStream, NotificationError> {
        let (customer_id, resume_after) = parse::subscribe(&request)?;
        ensure_owner(caller, customer_id)?;
        let start = match resume_after {
            None => Start {
                since: Utc::now(),
                after_id: None,
            },
            Some(resume_id) => {
                let mut conn = self.pool.acquire().await?;
                let row = find_notification(&mut conn, resume_id)
                    .await?
                    .filter(|row| {
                        row.customer_id == customer_id && row.channel() == Some(Channel::InApp)
                    })
                    .ok_or_else(|| {
                        NotificationError::not_found("notification", resume_id.to_string())
                    })?;
                Start {
                    since: row.sent_time.unwrap_or(row.create_time),
                    after_id: Some(resume_id),
                }
            }
        };
        let slot = self
            .streams
            .open(
                customer_id,
                self.stream_config.streams_per_customer_max,
                &self.metrics,
            )
            .ok_or(NotificationError::ResourceExhausted {
                reason: "RATE_LIMITED",
                message: format!(
                    "at most {} open streams per customer",
                    self.stream_config.streams_per_customer_max
                ),
            })?;
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        let context = StreamContext {
            pool: self.pool.clone(),
            config: self.stream_config.clone(),
            signals: self.signals.clone(),
            stop: self.stop.clone(),
        };
        tokio::spawn(stream::run(
            context,
            customer_id,
            start,
            slot,
            sender,
            notification_to_proto,
        ));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            receiver,
        )))
    }
}

/// The stream Subscribe answers with (tonic's boxed stream).
pub type SubscribeStream = Pin<Box<dyn Stream<Item = StreamItem> + Send + 'static>>;

#[tonic::async_trait]
impl NotificationService for NotificationApi {
    async fn send(
        &self,
        request: Request<proto::SendRequest>,
    ) -> Result<Response<proto::SendResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.send(&caller, request.into_inner()).await?,
        ))
    }

    async fn get_notification(
        &self,
        request: Request<proto::GetNotificationRequest>,
    ) -> Result<Response<proto::GetNotificationResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.get_notification(&caller, request.into_inner()).await?,
        ))
    }

    async fn list_notifications(
        &self,
        request: Request<proto::ListNotificationsRequest>,
    ) -> Result<Response<proto::ListNotificationsResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.list_notifications(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<SubscribeStream>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.subscribe(&caller, request.into_inner()).await?,
        ))
    }

    async fn set_preferences(
        &self,
        request: Request<proto::SetPreferencesRequest>,
    ) -> Result<Response<proto::SetPreferencesResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.set_preferences(&caller, request.into_inner()).await?,
        ))
    }

    async fn get_preferences(
        &self,
        request: Request<proto::GetPreferencesRequest>,
    ) -> Result<Response<proto::GetPreferencesResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.get_preferences(&caller, request.into_inner()).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    /// Every RPC has exactly one entry, granting exactly its documented `Roles:`.
    #[test]
    fn the_permission_table_matches_the_proto() {
        microloan_platform::auth::assert_table_matches_proto(
            &super::permissions(),
            microloan_proto::FILE_DESCRIPTOR_SET,
            super::SERVICE_NAME,
        );
    }
}
