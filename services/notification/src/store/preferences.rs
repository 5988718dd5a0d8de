//! Preferences and the customers' locales in Postgres.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    model::{Channel, Locale},
    policy::{ChannelPreference, Preferences, QuietHours},
};

#[derive(Debug, sqlx::FromRow)]
struct PreferencesRow {
    locale: Option<String>,
    channels: serde_json::Value,
    quiet_start_minute: i32,
    quiet_end_minute: i32,
    quiet_time_zone: String,
    update_time: DateTime<Utc>,
}

fn channels_json(channels: &[ChannelPreference]) -> serde_json::Value {
    channels
        .iter()
        .map(|preference| {
            serde_json::json!({
                "channel": preference.channel.as_i16(),
                "enabled": preference.enabled,
                "marketing_enabled": preference.marketing_enabled,
            })
        })
        .collect()
}

fn channels_from_json(value: &serde_json::Value) -> Vec<ChannelPreference> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let channel = Channel::from_i16(i16::try_from(entry.get("channel")?.as_i64()?).ok()?)?;
            Some(ChannelPreference {
                channel,
                enabled: entry.get("enabled")?.as_bool()?,
                marketing_enabled: entry.get("marketing_enabled")?.as_bool()?,
            })
        })
        .collect()
}

impl PreferencesRow {
    fn into_preferences(self) -> (Preferences, DateTime<Utc>) {
        let quiet_hours = QuietHours {
            start_minute: self.quiet_start_minute as u16,
            end_minute: self.quiet_end_minute as u16,
            time_zone: self
                .quiet_time_zone
                .parse()
                .unwrap_or(QuietHours::DEFAULT.time_zone),
        };
        (
            Preferences {
                locale: self.locale.as_deref().and_then(Locale::parse),
                channels: channels_from_json(&self.channels),
                quiet_hours,
            },
            self.update_time,
        )
    }
}

/// The stored preferences with their update time, if ever set.
pub async fn find_preferences(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<(Preferences, DateTime<Utc>)>, sqlx::Error> {
    let row: Option<PreferencesRow> = sqlx::query_as(
        "SELECT locale, channels, quiet_start_minute, quiet_end_minute, quiet_time_zone, \
             update_time FROM preferences WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(PreferencesRow::into_preferences))
}

/// Replaces a customer's preferences; returns the update time.
pub async fn upsert_preferences(
    conn: &mut PgConnection,
    customer_id: Uuid,
    preferences: &Preferences,
) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO preferences (customer_id, locale, channels, quiet_start_minute, \
             quiet_end_minute, quiet_time_zone) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (customer_id) DO UPDATE SET locale = EXCLUDED.locale, \
             channels = EXCLUDED.channels, quiet_start_minute = EXCLUDED.quiet_start_minute, \
             quiet_end_minute = EXCLUDED.quiet_end_minute, \
             quiet_time_zone = EXCLUDED.quiet_time_zone, update_time = now() \
         RETURNING update_time",
    )
    .bind(customer_id)
    .bind(preferences.locale.map(Locale::as_str))
    .bind(channels_json(&preferences.channels))
    .bind(i32::from(preferences.quiet_hours.start_minute))
    .bind(i32::from(preferences.quiet_hours.end_minute))
    .bind(preferences.quiet_hours.time_zone.name())
    .fetch_one(conn)
    .await
}

/// The customer's locale as account last reported it, if known.
pub async fn find_customer_locale(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<Locale>, sqlx::Error> {
    let locale: Option<String> =
        sqlx::query_scalar("SELECT locale FROM customer_locales WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_optional(conn)
            .await?;
    Ok(locale.as_deref().and_then(Locale::parse))
}

/// Records the customer's locale as account reports it.
pub async fn upsert_customer_locale(
    conn: &mut PgConnection,
    customer_id: Uuid,
    locale: Locale,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO customer_locales (customer_id, locale) VALUES ($1, $2) \
         ON CONFLICT (customer_id) DO UPDATE SET locale = EXCLUDED.locale, update_time = now()",
    )
    .bind(customer_id)
    .bind(locale.as_str())
    .execute(conn)
    .await?;
    Ok(())
}
