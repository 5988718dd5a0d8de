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

/// The stored preferences (with their update time) and the recorded customer locale,
/// in one round trip.
pub async fn find_preferences_and_customer_locale(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<(Option<(Preferences, DateTime<Utc>)>, Option<Locale>), sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Joined {
        locale: Option<String>,
        channels: Option<serde_json::Value>,
        quiet_start_minute: Option<i32>,
        quiet_end_minute: Option<i32>,
        quiet_time_zone: Option<String>,
        update_time: Option<DateTime<Utc>>,
        customer_locale: Option<String>,
    }
    let joined: Joined = sqlx::query_as(
        "SELECT p.locale, p.channels, p.quiet_start_minute, p.quiet_end_minute, \
             p.quiet_time_zone, p.update_time, c.locale AS customer_locale \
         FROM (SELECT $1::uuid AS customer_id) k \
         LEFT JOIN preferences p ON p.customer_id = k.customer_id \
         LEFT JOIN customer_locales c ON c.customer_id = k.customer_id",
    )
    .bind(customer_id)
    .fetch_one(conn)
    .await?;
    let customer_locale = joined.customer_locale.as_deref().and_then(Locale::parse);
    let stored = match (
        joined.channels,
        joined.quiet_start_minute,
        joined.quiet_end_minute,
        joined.quiet_time_zone,
        joined.update_time,
    ) {
        (Some(channels), Some(start), Some(end), Some(zone), Some(update_time)) => Some(
            PreferencesRow {
                locale: joined.locale,
                channels,
                quiet_start_minute: start,
                quiet_end_minute: end,
                quiet_time_zone: zone,
                update_time,
            }
            .into_preferences(),
        ),
        _ => None,
    };
    Ok((stored, customer_locale))
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
