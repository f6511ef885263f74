//! async-stripe itself creates, retrieves and expires sessions.

use stripe_checkout::checkout_session::{ExpireCheckoutSession, RetrieveCheckoutSession};
use stripe_emulator::Config;
use stripe_shared::{CheckoutSessionPaymentStatus, CheckoutSessionStatus};

use crate::helpers::spawn;

#[tokio::test]
async fn async_stripe_creates_retrieves_and_expires_a_session() {
    let emu = spawn(Config::default()).await;
    let client = emu.client();

    let created = emu.create_session("req-1").await;
    assert!(created.id.as_str().starts_with("cs_test_"));
    assert_eq!(created.status, Some(CheckoutSessionStatus::Open));
    assert_eq!(created.payment_status, CheckoutSessionPaymentStatus::Unpaid);
    assert_eq!(created.amount_total, Some(1500));
    assert_eq!(created.client_reference_id.as_deref(), Some("req-1"));
    assert_eq!(created.metadata.as_ref().unwrap()["request_id"], "req-1");
    let url = created.url.clone().expect("hosted page url");
    assert_eq!(url, format!("{}pay/{}", emu.api_base, created.id));

    let fetched = RetrieveCheckoutSession::new(created.id.clone())
        .send(&client)
        .await
        .expect("retrieved");
    assert_eq!(fetched.id, created.id);
    assert_eq!(fetched.url.as_deref(), Some(url.as_str()));

    let expired = ExpireCheckoutSession::new(created.id.clone())
        .send(&client)
        .await
        .expect("expired");
    assert_eq!(expired.status, Some(CheckoutSessionStatus::Expired));
    assert_eq!(
        expired.url, None,
        "Stripe clears the URL of a closed session"
    );

    // Expiring twice is a state error, as on Stripe.
    let err = ExpireCheckoutSession::new(created.id.clone())
        .send(&client)
        .await
        .unwrap_err();
    match err {
        stripe::StripeError::Stripe(e, 400) => assert!(e.message.unwrap().contains("open")),
        other => panic!("expected a 400, got {other:?}"),
    }

    let report = emu.handle.sessions();
    assert_eq!(report.sessions.len(), 1);
    assert_eq!(report.created_per_client_reference_id["req-1"], 1);
}

#[tokio::test]
async fn unknown_session_is_a_typed_404() {
    let emu = spawn(Config::default()).await;
    let err = RetrieveCheckoutSession::new("cs_test_nope")
        .send(&emu.client())
        .await
        .unwrap_err();
    match err {
        stripe::StripeError::Stripe(e, 404) => {
            assert_eq!(e.code, Some(stripe::ApiErrorsCode::ResourceMissing));
        }
        other => panic!("expected a 404, got {other:?}"),
    }
}

#[tokio::test]
async fn async_stripe_lists_sessions_newest_first_with_paging_and_filters() {
    use stripe_checkout::checkout_session::ListCheckoutSession;
    let emu = spawn(Config::default()).await;
    let client = emu.client();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(emu.create_session(&format!("list-{i}")).await.id);
    }
    emu.handle
        .pay(ids[1].as_str(), stripe_emulator::Outcome::Paid)
        .unwrap();

    let page = ListCheckoutSession::new()
        .limit(2)
        .send(&client)
        .await
        .unwrap();
    assert!(page.has_more);
    assert_eq!(
        page.data.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        [ids[4].clone(), ids[3].clone()]
    );
    let next = ListCheckoutSession::new()
        .limit(2)
        .starting_after(ids[3].as_str())
        .send(&client)
        .await
        .unwrap();
    assert_eq!(
        next.data.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        [ids[2].clone(), ids[1].clone()]
    );

    let complete = ListCheckoutSession::new()
        .status(CheckoutSessionStatus::Complete)
        .send(&client)
        .await
        .unwrap();
    assert_eq!(complete.data.len(), 1);
    assert_eq!(complete.data[0].id, ids[1]);
    assert!(!complete.has_more);

    let since = |t: i64| {
        ListCheckoutSession::new()
            .limit(100)
            .created(stripe_types::RangeQueryTs::gte(t))
    };
    let created = page.data[0].created;
    let all = since(created - 60).send(&client).await.unwrap();
    assert_eq!(
        all.data.len(),
        5,
        "created[gte] keeps the sessions since then"
    );
    let none = since(created + 60).send(&client).await.unwrap();
    assert!(none.data.is_empty() && !none.has_more);
}
