//! The provider webhook: an HTTP POST of a JSON body, signed with HMAC-SHA256 over
//! `timestamp + "." + body` with the channel's secret, and the outcome of the call.
//!
//! Headers: `X-Microloan-Timestamp` (Unix seconds), `X-Microloan-Signature`
//! (`v1=<hex>`), `Idempotency-Key` (the notification id: a retry after a lost answer
//! or a restart carries the same key, so the provider can drop the duplicate).

use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{config::Webhook, model::Outcome};

pub const TIMESTAMP_HEADER: &str = "x-microloan-timestamp";
pub const SIGNATURE_HEADER: &str = "x-microloan-signature";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// `v1=` + hex HMAC-SHA256 of `timestamp.body` under `secret`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(3 + digest.len() * 2);
    hex.push_str("v1=");
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// What one call to the provider came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    pub outcome: Outcome,
    pub http_status: u16,
    pub error_message: String,
    pub provider_message_id: String,
    /// The provider's `Retry-After` (429 or 503), if it sent one.
    pub retry_after: Option<Duration>,
}

/// Posts `body` (JSON) to the webhook.
pub async fn post(
    client: &reqwest::Client,
    webhook: &Webhook,
    idempotency_key: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> CallResult {
    let timestamp = Utc::now().timestamp().to_string();
    let signed = signature(webhook.secret.expose().as_bytes(), &timestamp, &body);
    let sent = client
        .post(&webhook.url)
        .timeout(timeout)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, &timestamp)
        .header(SIGNATURE_HEADER, signed)
        .header(IDEMPOTENCY_HEADER, idempotency_key)
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(err) => {
            let outcome = if err.is_timeout() {
                Outcome::Timeout
            } else {
                Outcome::NetworkError
            };
            return CallResult {
                outcome,
                http_status: 0,
                // reqwest's message names the URL, never the body (no PII).
                error_message: format!("{err}"),
                provider_message_id: String::new(),
                retry_after: None,
            };
        }
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_retry_after);
    let outcome = match status.as_u16() {
        200..=299 => Outcome::Delivered,
        429 => Outcome::RateLimited,
        500..=599 => Outcome::ServerError,
        _ => Outcome::Rejected,
    };
    let text = match tokio::time::timeout(timeout, response.text()).await {
        Ok(Ok(text)) => text,
        _ => String::new(),
    };
    let provider_message_id = if outcome == Outcome::Delivered {
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|json| json.get("message_id")?.as_str().map(str::to_owned))
            .unwrap_or_default()
    } else {
        String::new()
    };
    let error_message = if outcome == Outcome::Delivered {
        String::new()
    } else {
        format!("provider answered {status}")
    };
    CallResult {
        outcome,
        http_status: status.as_u16(),
        error_message,
        provider_message_id,
        retry_after,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delay = at.with_timezone(&Utc) - Utc::now();
    Some(delay.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // As computed independently: HMAC-SHA256("Jefe", "1700000000.{\"a\":1}").
        assert_eq!(
            signature(b"Jefe", "1700000000", br#"{"a":1}"#),
            "v1=fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a"
        );
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
