//! The client's typed calls against the double: the tolerant reading in every answer style, the order states,
//! non-idempotent creates, lookups, auth modes, and version detection per profile.

mod common;

use common::{client, prepared, IDENTIFIER, SECRET};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wap_billing_whmcs::double::{DuplicateEmail, EmptyList, Numbers, Profile, WhmcsDouble};
use wap_billing_whmcs::{
    check_version, detect_version, Credentials, ErrorKind, NewBillableItem, NewClient, NewOrder, OrderItem, Secret,
    ServiceFilter, SubscriptionKey, VersionCheck, VersionSource, WhmcsClient, WhmcsVersion,
};

#[tokio::test]
async fn every_answer_style_reads_the_same() {
    for numbers in [Numbers::Strings, Numbers::Integers] {
        for empty in [EmptyList::Nested, EmptyList::BareArray, EmptyList::Missing] {
            let double = prepared().numbers(numbers).empty_list(empty).start().await.unwrap();
            let c = client(&double);
            let ctx = format!("{numbers:?}/{empty:?}");
            // Empty lists first, in the configured shape.
            assert_eq!(c.find_client_by_email("nobody@example.com").await.unwrap(), None, "{ctx}");
            let id = c.add_client(&NewClient::from_email("t@example.com")).await.unwrap();
            assert!(c.get_clients_products(&ServiceFilter::client(id)).await.unwrap().is_empty(), "{ctx}");
            assert!(c.get_orders(id, None).await.unwrap().is_empty(), "{ctx}");
            let item = OrderItem::product(2).domain("sub-1");
            let placed = c.add_order(&NewOrder::new(id, "mailin").item(item)).await.unwrap();
            let services = c.get_clients_products(&ServiceFilter::client(id)).await.unwrap();
            assert_eq!(services.len(), 1, "{ctx}");
            assert_eq!(
                (services[0].id, services[0].pid, services[0].clientid),
                (placed.service_ids[0], 2, id),
                "{ctx}"
            );
            assert!(services[0].customfields.is_empty(), "product 2 has no custom field ({ctx})");
            assert!(c.get_service_addons(services[0].id).await.unwrap().is_empty(), "{ctx}");
            let found = c.find_client_by_email("T@example.com").await.unwrap().unwrap();
            assert_eq!(found.id, id, "{ctx}");
            let order = c.get_order(placed.orderid).await.unwrap().unwrap();
            assert_eq!((order.userid, order.lineitems.len()), (id, 1), "{ctx}");
        }
    }
}

#[tokio::test]
async fn action_names_are_case_insensitive() {
    let double = prepared().start().await.unwrap();
    let c = client(&double);
    for action in ["GetProducts", "getproducts", "GETPRODUCTS"] {
        let answer = c.call(action, &[]).await.unwrap();
        assert_eq!(answer["result"], "success", "{action}");
    }
    assert_eq!(double.call_count("GetProducts"), 3);
}

#[tokio::test]
async fn order_is_pending_until_accepted_and_accepting_twice_fails() {
    let double = prepared().start().await.unwrap();
    let c = client(&double);
    let id = c.add_client(&NewClient::from_email("o@example.com")).await.unwrap();
    let item = OrderItem::product(1).addon(5);
    let placed = c.add_order(&NewOrder::new(id, "mailin").item(item)).await.unwrap();
    assert_eq!((placed.service_ids.len(), placed.addon_ids.len()), (1, 1));
    assert_eq!(placed.invoiceid, None, "noinvoice is sent by default");
    let order = c.get_order(placed.orderid).await.unwrap().unwrap();
    assert_eq!(order.status, "Pending");
    assert_eq!(c.get_orders(id, Some("Pending")).await.unwrap().len(), 1);
    assert_eq!(double.services()[0].status, "Pending");
    assert_eq!(double.service_addons()[0].status, "Pending");

    c.accept_order(placed.orderid, false).await.unwrap();
    assert_eq!(c.get_order(placed.orderid).await.unwrap().unwrap().status, "Active");
    assert_eq!(double.services()[0].status, "Active");
    assert_eq!(double.service_addons()[0].status, "Active");
    let again = c.accept_order(placed.orderid, false).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::NotFound);
    assert_eq!(again.api_message(), Some("Order ID not found or Status not Pending"));
}

#[tokio::test]
async fn creates_are_not_idempotent() {
    let double = prepared().duplicate_email(DuplicateEmail::Allow).start().await.unwrap();
    let c = client(&double);
    let a = c.add_client(&NewClient::from_email("same@example.com")).await.unwrap();
    let b = c.add_client(&NewClient::from_email("same@example.com")).await.unwrap();
    assert_ne!(a, b, "with DuplicateEmail::Allow the double shows a missing lookup");
    let order = NewOrder::new(a, "mailin").item(OrderItem::product(1));
    let first = c.add_order(&order).await.unwrap();
    let second = c.add_order(&order).await.unwrap();
    assert_ne!(first.service_ids, second.service_ids);
    assert_eq!(double.services().len(), 2);
    let item = NewBillableItem::new(a, "usage", "2.50");
    let ids = [c.add_billable_item(&item).await.unwrap(), c.add_billable_item(&item).await.unwrap()];
    assert_ne!(ids[0], ids[1]);
    let items = double.billable_items();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| i.description == "usage" && i.amount == "2.50" && i.clientid == a));
}

#[tokio::test]
async fn a_service_is_found_again_by_the_wap_subscription_id_in_domain_or_custom_field() {
    let double = prepared().start().await.unwrap();
    let c = client(&double);
    let id = c.add_client(&NewClient::from_email("l@example.com")).await.unwrap();
    let other = c.add_client(&NewClient::from_email("m@example.com")).await.unwrap();
    let sub = "6f1d3b2a-0000-4000-8000-000000000001";
    let item =
        OrderItem::product(1).domain(sub).custom_field(9, sub).custom_field(77, "dropped: not a field of product 1");
    let placed = c.add_order(&NewOrder::new(id, "mailin").item(item.clone())).await.unwrap();
    // Same id on another client's service: the lookup is per client.
    c.add_order(&NewOrder::new(other, "mailin").item(item)).await.unwrap();
    c.add_order(&NewOrder::new(id, "mailin").item(OrderItem::product(1).domain("other-sub"))).await.unwrap();

    for key in [SubscriptionKey::Domain, SubscriptionKey::CustomField(9)] {
        let found = c.find_services_by_wap_subscription(Some(id), key, sub).await.unwrap();
        assert_eq!(found.iter().map(|s| s.id).collect::<Vec<_>>(), placed.service_ids, "{key:?}");
        assert!(c.find_services_by_wap_subscription(Some(id), key, "absent").await.unwrap().is_empty());
    }
    // Without the client, every client's services are searched: the other client has the same id.
    for key in [SubscriptionKey::Domain, SubscriptionKey::CustomField(9)] {
        assert_eq!(c.find_services_by_wap_subscription(None, key, sub).await.unwrap().len(), 2, "{key:?}");
    }
    let service = &double.services()[0];
    assert_eq!(service.customfields.len(), 1, "values of undefined fields are dropped: {service:?}");
    assert_eq!(
        c.get_clients_products(&ServiceFilter::service(placed.service_ids[0])).await.unwrap()[0].custom_field(9),
        Some(sub)
    );
}

#[tokio::test]
async fn subscription_lifecycle_through_the_client() {
    let double = prepared().start().await.unwrap();
    let c = client(&double);
    let id = c.add_client(&NewClient::from_email("life@example.com")).await.unwrap();
    let placed = c.add_order(&NewOrder::new(id, "mailin").item(OrderItem::product(1))).await.unwrap();
    c.accept_order(placed.orderid, false).await.unwrap();
    let sid = placed.service_ids[0];
    let addon = c.add_order(&NewOrder::new(id, "mailin").addon_for_service(5, sid)).await.unwrap();
    assert!(addon.service_ids.is_empty());
    c.accept_order(addon.orderid, false).await.unwrap();
    let addons = c.get_service_addons(sid).await.unwrap();
    assert_eq!((addons.len(), addons[0].addonid, addons[0].status.as_str()), (1, 5, "Active"));

    let status = |c: WhmcsClient| async move {
        c.get_clients_products(&ServiceFilter::service(sid)).await.unwrap()[0].status.clone()
    };
    c.module_suspend(sid, Some("WAP: subscription suspended")).await.unwrap();
    assert_eq!(status(c.clone()).await, "Suspended");
    assert_eq!(double.services()[0].suspendreason, "WAP: subscription suspended");
    c.module_unsuspend(sid).await.unwrap();
    assert_eq!(status(c.clone()).await, "Active");
    c.set_addon_status(addons[0].id, "Cancelled").await.unwrap();
    // No change: WHMCS says "Nothing to Update"; the client reads that as done.
    c.set_addon_status(addons[0].id, "Cancelled").await.unwrap();
    assert_eq!(double.service_addons()[0].status, "Cancelled");
    c.module_terminate(sid).await.unwrap();
    assert_eq!(status(c.clone()).await, "Terminated");
    assert_eq!(c.module_unsuspend(sid).await.unwrap_err().kind(), ErrorKind::Validation);
    c.set_service_status(sid, "Active").await.unwrap();
    assert_eq!(status(c).await, "Active", "UpdateClientProduct sets the status without a module");
}

#[tokio::test]
async fn lists_are_read_across_pages() {
    let double = prepared().start().await.unwrap();
    let c = client(&double);
    let id = c.add_client(&NewClient::from_email("p@example.com")).await.unwrap();
    let mut order = NewOrder::new(id, "mailin");
    for _ in 0..600 {
        order = order.item(OrderItem::product(2));
    }
    assert_eq!(c.add_order(&order).await.unwrap().service_ids.len(), 600);
    let before = double.call_count("GetClientsProducts");
    let all = c.get_clients_products(&ServiceFilter::client(id)).await.unwrap();
    assert_eq!(all.len(), 600);
    let mut ids: Vec<u64> = all.iter().map(|s| s.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 600, "no service twice");
    assert_eq!(double.call_count("GetClientsProducts") - before, 3, "250 per page");
}

#[tokio::test]
async fn find_client_by_email_ignores_prefix_matches() {
    let double = prepared().start().await.unwrap();
    let c = client(&double);
    c.add_client(&NewClient::from_email("ann@example.com.au")).await.unwrap();
    assert_eq!(c.find_client_by_email("ann@example.com").await.unwrap(), None);
    let id = c.add_client(&NewClient::from_email("ann@example.com")).await.unwrap();
    assert_eq!(c.find_client_by_email("ann@example.com").await.unwrap().unwrap().id, id);
}

#[tokio::test]
async fn auth_modes_per_version() {
    let password = Secret::new("admin pass");
    // 5.2: admin login (md5) only.
    let old = prepared().profile(Profile::v5_2()).admin_login("admin", "admin pass").start().await.unwrap();
    let admin = WhmcsClient::builder()
        .url(old.url())
        .credentials(Credentials::admin_login("admin", &password))
        .build()
        .unwrap();
    assert_eq!(admin.get_products(None).await.unwrap().len(), 2);
    assert_eq!(
        client(&old).get_products(None).await.unwrap_err().kind(),
        ErrorKind::Auth,
        "no API credentials before 7.2"
    );
    let plain = WhmcsClient::builder()
        .url(old.url())
        .credentials(Credentials::admin_login_md5("admin", "admin pass"))
        .build()
        .unwrap();
    assert_eq!(plain.get_products(None).await.unwrap_err().kind(), ErrorKind::Auth, "the password must be hashed");

    // 8.x: the credential also works in username/password (forwards compatibility).
    let new = prepared().start().await.unwrap();
    let in_username = WhmcsClient::builder()
        .url(new.api_url())
        .credentials(Credentials::admin_login_md5(IDENTIFIER, SECRET))
        .build()
        .unwrap();
    assert_eq!(in_username.get_products(None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn addorder_before_7_8_answers_productids() {
    let double = prepared().profile(Profile::version("7.5.1".parse().unwrap())).start().await.unwrap();
    let c = client(&double);
    let id = c.add_client(&NewClient::from_email("v@example.com")).await.unwrap();
    let placed = c.add_order(&NewOrder::new(id, "mailin").item(OrderItem::product(1))).await.unwrap();
    assert_eq!(placed.service_ids, vec![double.services()[0].id]);
    let raw = c
        .call("AddOrder", &[("clientid", &id.to_string()), ("paymentmethod", "mailin"), ("pid[0]", "1")])
        .await
        .unwrap();
    assert!(raw.contains_key("productids") && !raw.contains_key("serviceids"), "{raw:?}");
}

#[tokio::test]
async fn version_is_read_per_profile_and_a_mismatch_is_refused() {
    let v8 = prepared().start().await.unwrap();
    let (found, source) = detect_version(&client(&v8), None).await.unwrap();
    assert_eq!((found.to_string().as_str(), source), ("8.13.1", VersionSource::WhmcsDetails));

    let v7 = prepared().profile(Profile::v7()).start().await.unwrap();
    let (found7, source) = detect_version(&client(&v7), None).await.unwrap();
    assert_eq!((found7.to_string().as_str(), source), ("7.10.2", VersionSource::ConfigurationValue));

    let v5 = prepared().profile(Profile::v5_2()).admin_login("admin", "pw").start().await.unwrap();
    let c5 = WhmcsClient::builder()
        .url(v5.url())
        .credentials(Credentials::admin_login("admin", &Secret::new("pw")))
        .build()
        .unwrap();
    let err = detect_version(&c5, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "5.2 cannot tell: {err}");
    let pinned: WhmcsVersion = "5.2.7".parse().unwrap();
    assert_eq!(detect_version(&c5, Some(&pinned)).await.unwrap(), (pinned.clone(), VersionSource::Configured));

    // An authentication failure is not mistaken for an old version.
    let wrong = WhmcsClient::builder()
        .url(v8.url())
        .credentials(Credentials::api_credential(IDENTIFIER, "nope"))
        .build()
        .unwrap();
    assert_eq!(detect_version(&wrong, Some(&pinned)).await.unwrap_err().kind(), ErrorKind::Auth);

    let expected: WhmcsVersion = "8.13".parse().unwrap();
    assert_eq!(check_version(Some(&expected), &found, VersionSource::WhmcsDetails, false), Ok(VersionCheck::Matches));
    let mismatch = check_version(Some(&expected), &found7, VersionSource::ConfigurationValue, false).unwrap_err();
    assert_eq!(mismatch.found, found7);
    assert_eq!(
        check_version(Some(&expected), &found7, VersionSource::ConfigurationValue, true),
        Ok(VersionCheck::MismatchAllowed)
    );
}

#[tokio::test]
async fn the_double_answers_xml_when_asked() {
    let double = WhmcsDouble::builder().api_credential("i", "s").product(3, 1, "P & Q").start().await.unwrap();
    let addr = double.url().trim_start_matches("http://").trim_end_matches('/').to_owned();
    let body = "action=GetProducts&identifier=i&secret=s&responsetype=xml";
    let request = format!(
        "POST /includes/api.php HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert!(answer.contains("<whmcsapi"), "{answer}");
    assert!(answer.contains("<result><![CDATA[success]]></result>"), "{answer}");
    assert!(answer.contains("<name><![CDATA[P & Q]]></name>"), "{answer}");
}
