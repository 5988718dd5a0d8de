//! The notification's vocabulary: channels, message classes, statuses, suppression
//! reasons and attempt outcomes, each stored as its proto enum number.

use microloan_proto::notification::v1 as proto;

/// Generates a domain enum that mirrors a proto enum (minus UNSPECIFIED), with its
/// conversions to and from the stored/proto number.
macro_rules! mirrored_enum {
    ($(#[$doc:meta])* $name:ident => $proto:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn to_proto(self) -> proto::$proto {
                match self {
                    $(Self::$variant => proto::$proto::$variant),+
                }
            }

            /// `None` for UNSPECIFIED and unknown numbers.
            pub fn from_proto(value: i32) -> Option<Self> {
                match proto::$proto::try_from(value).ok()? {
                    $(proto::$proto::$variant => Some(Self::$variant),)+
                    _ => None,
                }
            }

            pub fn as_i16(self) -> i16 {
                self.to_proto() as i16
            }

            pub fn from_i16(value: i16) -> Option<Self> {
                Self::from_proto(i32::from(value))
            }
        }
    };
}

mirrored_enum!(
    /// A delivery channel.
    Channel => Channel { InApp, Sms, Push, Log }
);
mirrored_enum!(
    /// Whether opt-outs and quiet hours apply (notification.proto's MessageClass table).
    MessageClass => MessageClass { Regulatory, Service, Marketing }
);
mirrored_enum!(
    /// Delivery status of a notification.
    Status => NotificationStatus { Pending, Sent, Failed, DeadLettered, Suppressed }
);
mirrored_enum!(
    /// Why a notification was not sent.
    Suppression => SuppressionReason {
        ChannelDisabled,
        MarketingNotAllowed,
        NoDestination,
        CustomerClosed,
    }
);
mirrored_enum!(
    /// Outcome of one delivery attempt.
    Outcome => AttemptOutcome {
        Delivered,
        Timeout,
        NetworkError,
        ServerError,
        RateLimited,
        Rejected,
    }
);

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Self::InApp => "IN_APP",
            Self::Sms => "SMS",
            Self::Push => "PUSH",
            Self::Log => "LOG",
        }
    }
}

impl MessageClass {
    /// The channels a notice of this class goes to when none are named
    /// (SendRequest.channels): REGULATORY in-app and SMS, the others in-app and push;
    /// plus LOG when that channel is enabled.
    pub fn default_channels(self, log_enabled: bool) -> Vec<Channel> {
        let mut channels = match self {
            Self::Regulatory => vec![Channel::InApp, Channel::Sms],
            Self::Service | Self::Marketing => vec![Channel::InApp, Channel::Push],
        };
        if log_enabled {
            channels.push(Channel::Log);
        }
        channels
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Regulatory => "REGULATORY",
            Self::Service => "SERVICE",
            Self::Marketing => "MARKETING",
        }
    }
}

impl Outcome {
    /// Timeouts, network errors, 5xx and 429 are tried again; other 4xx are final.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Timeout | Self::NetworkError | Self::ServerError | Self::RateLimited
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Delivered => "DELIVERED",
            Self::Timeout => "TIMEOUT",
            Self::NetworkError => "NETWORK_ERROR",
            Self::ServerError => "SERVER_ERROR",
            Self::RateLimited => "RATE_LIMITED",
            Self::Rejected => "REJECTED",
        }
    }
}

/// A notice locale: the two the templates are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Locale {
    ZhCn,
    En,
}

impl Locale {
    /// The notice locale when neither the preferences nor account know one.
    pub const DEFAULT: Self = Self::ZhCn;

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "zh-CN" => Some(Self::ZhCn),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZhCn => "zh-CN",
            Self::En => "en",
        }
    }
}

/// The customer-facing form of a mobile number, as account masks it
/// (Customer.phone_masked): "+8613812345678" → "+86 138****5678". Anything that is not
/// a +86 number of 11 digits is masked whole.
pub fn mask_phone(e164: &str) -> String {
    match e164.strip_prefix("+86") {
        Some(national) if national.len() == 11 && national.bytes().all(|b| b.is_ascii_digit()) => {
            format!("+86 {}****{}", &national[..3], &national[7..])
        }
        _ => "****".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_their_stored_numbers() {
        for channel in Channel::ALL {
            assert_eq!(Channel::from_i16(channel.as_i16()), Some(*channel));
        }
        for status in Status::ALL {
            assert_eq!(Status::from_i16(status.as_i16()), Some(*status));
        }
        assert_eq!(Channel::from_proto(0), None);
        assert_eq!(Outcome::from_proto(99), None);
    }

    #[test]
    fn phones_are_masked_as_account_masks_them() {
        assert_eq!(mask_phone("+8613812345678"), "+86 138****5678");
        assert_eq!(mask_phone("+1555"), "****");
    }

    #[test]
    fn regulatory_notices_default_to_in_app_and_sms() {
        assert_eq!(
            MessageClass::Regulatory.default_channels(false),
            [Channel::InApp, Channel::Sms]
        );
        assert_eq!(
            MessageClass::Marketing.default_channels(true),
            [Channel::InApp, Channel::Push, Channel::Log]
        );
    }
}
