//! Lossless conversions between the JSON events ([`crate::events`]) and their
//! protobuf form ([`crate::pb`]). JSON -> proto never fails; proto -> JSON
//! fails only on what JSON cannot carry (a bad timestamp, a status that is not
//! one of the seed's three).

use crate::events::{self, CheckoutFinishedEvent, CheckoutRequestEvent, CheckoutStatus, iso8601};
use crate::pb;

/// Why a protobuf message cannot become a seed JSON event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("timestamp: {0:?} is not an ISO 8601 timestamp")]
    Timestamp(String),
    #[error("status: {0} is not a Kafka status (session_created, success, failed)")]
    Status(String),
}

impl From<CheckoutStatus> for pb::CheckoutStatus {
    fn from(s: CheckoutStatus) -> Self {
        match s {
            CheckoutStatus::SessionCreated => Self::SessionCreated,
            CheckoutStatus::Success => Self::Success,
            CheckoutStatus::Failed => Self::Failed,
        }
    }
}

impl TryFrom<pb::CheckoutStatus> for CheckoutStatus {
    type Error = ConvertError;

    fn try_from(s: pb::CheckoutStatus) -> Result<Self, Self::Error> {
        match s {
            pb::CheckoutStatus::SessionCreated => Ok(Self::SessionCreated),
            pb::CheckoutStatus::Success => Ok(Self::Success),
            pb::CheckoutStatus::Failed => Ok(Self::Failed),
            other => Err(ConvertError::Status(other.as_str_name().to_owned())),
        }
    }
}

fn parse_timestamp(s: &str) -> Result<chrono::DateTime<chrono::Utc>, ConvertError> {
    iso8601::parse(s).map_err(|_| ConvertError::Timestamp(s.to_owned()))
}

impl From<CheckoutRequestEvent> for pb::CheckoutRequestEvent {
    fn from(e: CheckoutRequestEvent) -> Self {
        Self {
            request_id: e.request_id,
            user_id: e.user_id,
            amount_cents: e.amount_cents,
            currency: e.currency,
            purpose: e.purpose,
            timestamp: iso8601::format(&e.timestamp),
            success_url: e.success_url,
            cancel_url: e.cancel_url,
        }
    }
}

impl TryFrom<pb::CheckoutRequestEvent> for CheckoutRequestEvent {
    type Error = ConvertError;

    fn try_from(e: pb::CheckoutRequestEvent) -> Result<Self, Self::Error> {
        Ok(Self {
            timestamp: parse_timestamp(&e.timestamp)?,
            request_id: e.request_id,
            user_id: e.user_id,
            amount_cents: e.amount_cents,
            currency: e.currency,
            purpose: e.purpose,
            success_url: e.success_url,
            cancel_url: e.cancel_url,
        })
    }
}

impl From<CheckoutFinishedEvent> for pb::CheckoutFinishedEvent {
    fn from(e: CheckoutFinishedEvent) -> Self {
        Self {
            request_id: e.request_id,
            user_id: e.user_id,
            amount_cents: e.amount_cents,
            currency: e.currency,
            purpose: e.purpose,
            status: pb::CheckoutStatus::from(e.status).into(),
            session_id: e.session_id,
            session_url: e.session_url,
            payment_intent_id: e.payment_intent_id,
            error_message: e.error_message,
            timestamp: iso8601::format(&e.timestamp),
        }
    }
}

impl TryFrom<pb::CheckoutFinishedEvent> for CheckoutFinishedEvent {
    type Error = ConvertError;

    fn try_from(e: pb::CheckoutFinishedEvent) -> Result<Self, Self::Error> {
        let status = pb::CheckoutStatus::try_from(e.status)
            .map_err(|_| ConvertError::Status(e.status.to_string()))?;
        Ok(Self {
            status: events::CheckoutStatus::try_from(status)?,
            timestamp: parse_timestamp(&e.timestamp)?,
            request_id: e.request_id,
            user_id: e.user_id,
            amount_cents: e.amount_cents,
            currency: e.currency,
            purpose: e.purpose,
            session_id: e.session_id,
            session_url: e.session_url,
            payment_intent_id: e.payment_intent_id,
            error_message: e.error_message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(status: CheckoutStatus) -> CheckoutFinishedEvent {
        CheckoutFinishedEvent {
            request_id: "550e8400-e29b-41d4-a716-446655440000".into(),
            user_id: 123,
            amount_cents: 500,
            currency: "gbp".into(),
            purpose: "gift_card".into(),
            status,
            session_id: Some("cs_test_abc123".into()),
            session_url: Some("https://checkout.example/cs_test_abc123".into()),
            payment_intent_id: Some("pi_test_xyz789".into()),
            error_message: Some("card declined".into()),
            timestamp: iso8601::parse("2024-01-15T10:35:00.123Z").unwrap(),
        }
    }

    #[test]
    fn request_event_round_trips_every_field() {
        let json = CheckoutRequestEvent {
            request_id: "550e8400-e29b-41d4-a716-446655440000".into(),
            user_id: 123,
            amount_cents: 500,
            currency: "usd".into(),
            purpose: "balance_topup".into(),
            timestamp: iso8601::parse("2024-01-15T10:30:00Z").unwrap(),
            success_url: "https://example.com/balance?status=success".into(),
            cancel_url: "https://example.com/balance?status=cancel".into(),
        };
        let proto = pb::CheckoutRequestEvent::from(json.clone());
        assert_eq!(proto.timestamp, "2024-01-15T10:30:00Z");
        assert_eq!(proto.currency, "usd");
        assert_eq!(CheckoutRequestEvent::try_from(proto).unwrap(), json);
    }

    #[test]
    fn finished_event_round_trips_every_field_and_status() {
        for status in [
            CheckoutStatus::SessionCreated,
            CheckoutStatus::Success,
            CheckoutStatus::Failed,
        ] {
            let json = finished(status);
            let proto = pb::CheckoutFinishedEvent::from(json.clone());
            assert_eq!(proto.status(), pb::CheckoutStatus::from(status));
            assert_eq!(CheckoutFinishedEvent::try_from(proto).unwrap(), json);
        }
        let mut nulls = finished(CheckoutStatus::Failed);
        nulls.session_id = None;
        nulls.session_url = None;
        nulls.payment_intent_id = None;
        nulls.error_message = None;
        let proto = pb::CheckoutFinishedEvent::from(nulls.clone());
        assert_eq!(proto.session_id, None);
        assert_eq!(CheckoutFinishedEvent::try_from(proto).unwrap(), nulls);
    }

    #[test]
    fn proto_only_values_are_rejected() {
        let mut proto = pb::CheckoutFinishedEvent::from(finished(CheckoutStatus::Success));
        proto.status = pb::CheckoutStatus::Pending.into();
        assert!(matches!(
            CheckoutFinishedEvent::try_from(proto.clone()),
            Err(ConvertError::Status(_))
        ));
        proto.status = 42;
        assert!(matches!(
            CheckoutFinishedEvent::try_from(proto.clone()),
            Err(ConvertError::Status(_))
        ));
        proto.status = pb::CheckoutStatus::Success.into();
        proto.timestamp = "soon".into();
        assert_eq!(
            CheckoutFinishedEvent::try_from(proto),
            Err(ConvertError::Timestamp("soon".into()))
        );
    }
}
