use checkout_contract::pb::FILE_DESCRIPTOR_SET;
use prost::Message;
use prost_types::FileDescriptorSet;

#[test]
fn descriptor_set_lists_the_gateway_service_and_both_events() {
    let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
    let services: Vec<String> = set
        .file
        .iter()
        .flat_map(|f| {
            f.service
                .iter()
                .map(move |s| format!("{}.{}", f.package(), s.name()))
        })
        .collect();
    assert!(
        services.contains(&"checkout.v1.CheckoutGateway".to_owned()),
        "{services:?}"
    );

    let gateway = set
        .file
        .iter()
        .flat_map(|f| &f.service)
        .find(|s| s.name() == "CheckoutGateway")
        .unwrap();
    let methods: Vec<&str> = gateway.method.iter().map(|m| m.name()).collect();
    assert_eq!(methods, ["StartCheckout", "WatchCheckout", "GetCheckout"]);
    let watch = gateway
        .method
        .iter()
        .find(|m| m.name() == "WatchCheckout")
        .unwrap();
    assert!(watch.server_streaming(), "WatchCheckout streams");

    let messages: Vec<&str> = set
        .file
        .iter()
        .flat_map(|f| &f.message_type)
        .map(|m| m.name())
        .collect();
    for m in [
        "CheckoutRequestEvent",
        "CheckoutFinishedEvent",
        "StartCheckoutRequest",
        "CheckoutUpdate",
    ] {
        assert!(messages.contains(&m), "{m} missing from {messages:?}");
    }
    // Imports are included, so reflection clients can resolve google.protobuf.Duration.
    assert!(
        set.file
            .iter()
            .any(|f| f.name() == "google/protobuf/duration.proto")
    );
}

#[test]
fn finished_event_mirrors_the_seed_fields_in_order() {
    let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
    let finished = set
        .file
        .iter()
        .flat_map(|f| &f.message_type)
        .find(|m| m.name() == "CheckoutFinishedEvent")
        .unwrap();
    let fields: Vec<&str> = finished.field.iter().map(|f| f.name()).collect();
    assert_eq!(
        fields,
        [
            "request_id",
            "user_id",
            "amount_cents",
            "currency",
            "purpose",
            "status",
            "session_id",
            "session_url",
            "payment_intent_id",
            "error_message",
            "timestamp"
        ]
    );
    for optional in [
        "session_id",
        "session_url",
        "payment_intent_id",
        "error_message",
    ] {
        let f = finished
            .field
            .iter()
            .find(|f| f.name() == optional)
            .unwrap();
        assert!(f.proto3_optional(), "{optional} is `optional string`");
    }
}
