//! Preferences and the customers' locales in Postgres.

use std::collections::HashMap;

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

/// What is stored about one customer: the preferences (with their update time), if
/// set, and the recorded customer locale, if any.
pub type Stored = (Option<(Preferences, DateTime<Utc>)>, Option<Locale>);

/// The stored preferences (with their update time) and the recorded customer locale,
/// in one round trip.
pub async fn find_preferences_and_customer_locale(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Stored, sqlx::Error> {
    let mut found = find_preferences_and_customer_locales(conn, &[customer_id]).await?;
    Ok(found.remove(&customer_id).unwrap_or((None, None)))
}

/// [`find_preferences_and_customer_locale`] for many customers in one statement (the
/// event consumer's batch); every customer asked is in the answer.
pub async fn find_preferences_and_customer_locales(
    conn: &mut PgConnection,
    customer_ids: &[Uuid],
) -> Result<HashMap<Uuid, Stored>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Joined {
        customer_id: Uuid,
        locale: Option<String>,
        channels: Option<serde_json::Value>,
        quiet_start_minute: Option<i32>,
        quiet_end_minute: Option<i32>,
        quiet_time_zone: Option<String>,
        update_time: Option<DateTime<Utc>>,
        customer_locale: Option<String>,
    }
    let rows: Vec<Joined> = sqlx::query_as(
        "SELECT k.customer_id, p.locale, p.channels, p.quiet_start_minute, \
             p.quiet_end_minute, p.quiet_time_zone, p.update_time, \
             c.locale AS customer_locale \
         FROM unnest($1::uuid[]) AS k(customer_id) \
         LEFT JOIN preferences p ON p.customer_id = k.customer_id \
         LEFT JOIN customer_locales c ON c.customer_id = k.customer_id",
    )
    .bind(customer_ids)
    .fetch_all(conn)
    .await?;
    let mut found = HashMap::with_capacity(rows.len());
    for joined in rows {
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
        found.insert(joined.customer_id, (stored, customer_locale));
    }
    Ok(found)
}

/// Records customers' locales as account reports them, in one statement. A customer
/// named twice keeps the last locale given (one statement cannot update a row twice).
pub async fn upsert_customer_locales(
    conn: &mut PgConnection,
    locales: &[(Uuid, Locale)],
) -> Result<(), sqlx::Error> {
    let mut last: HashMap<Uuid, Locale> = HashMap::with_capacity(locales.len());
    for &(customer_id, locale) in locales {
        last.insert(customer_id, locale);
    }
    if last.is_empty() {
        return Ok(());
    }
    let (customer_ids, names): (Vec<Uuid>, Vec<&str>) = last
        .into_iter()
        .map(|(customer_id, locale)| (customer_id, locale.as_str()))
        .unzip();
    sqlx::query(
        "INSERT INTO customer_locales (customer_id, locale) \
         SELECT * FROM unnest($1::uuid[], $2::text[]) \
         ON CONFLICT (customer_id) DO UPDATE SET locale = EXCLUDED.locale, update_time = now()",
    )
    .bind(customer_ids)
    .bind(names)
    .execute(conn)
    .await?;
    Ok(())
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
