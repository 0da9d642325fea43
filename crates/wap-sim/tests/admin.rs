//! The administrator's side of plans and add-ons: each operation commits the feed events WAP produces, and tenants
//! can buy only public plans and add-ons.

use serde_json::Value;
use wap_sim::{ActionOutcome, ActionStatus, AdminError, CreateSubscription, DatasetSpec, NewAddOn, NewPlan, WapSim};
use wap_types::{FeedKind, PlanState};

async fn sim() -> WapSim {
    WapSim::builder().seed(5).dataset(DatasetSpec::empty()).start().await.unwrap()
}

/// The events of `feed` after `after` as (EventId, Method, EntityParentId, entity).
fn events_after(sim: &WapSim, feed: FeedKind, after: i64) -> Vec<(i64, String, Option<String>, Value)> {
    sim.events_json(feed)
        .into_iter()
        .filter(|e| e["EventId"].as_i64().unwrap() > after)
        .map(|e| {
            (
                e["EventId"].as_i64().unwrap(),
                e["Method"].as_str().unwrap().to_owned(),
                e["EntityParentId"].as_str().map(str::to_owned),
                e["Entity"].clone(),
            )
        })
        .collect()
}

fn refusal(o: &ActionOutcome) -> String {
    match &o.status {
        ActionStatus::Refused(why) => why.clone(),
        other => format!("not refused: {other:?}"),
    }
}

fn last_id(sim: &WapSim) -> i64 {
    FeedKind::EVENT_FEEDS.iter().flat_map(|f| sim.event_ids(*f)).max().unwrap_or(0)
}

#[tokio::test]
async fn create_configure_and_publish_produce_wap_events_and_only_public_plans_sell() {
    let sim = sim().await;
    let extra = sim.create_add_on(NewAddOn::new("Extra Database", "sqlservers")).unwrap();
    let before = last_id(&sim);
    let plan = sim
        .create_plan(NewPlan::new("Gold Hosting", &["sqlservers", "webspaces"]).with_add_on(extra.id.as_str()))
        .unwrap();

    let plans = events_after(&sim, FeedKind::Plans, before);
    assert_eq!(plans.len(), 1);
    let (plan_event, method, _, entity) = &plans[0];
    assert_eq!(method, "POST");
    assert_eq!(entity["Id"], plan.id.as_str());
    assert_eq!(entity["State"], 0, "created Private");
    assert_eq!(entity["ConfigState"], 0, "not configured yet");
    let services = events_after(&sim, FeedKind::PlanServices, before);
    let names: Vec<&str> = services.iter().map(|(_, _, _, e)| e["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sqlservers", "webspaces"]);
    assert!(services
        .iter()
        .all(|(id, m, parent, _)| id > plan_event && m == "POST" && parent.as_deref() == Some(plan.id.as_str())));
    let links = events_after(&sim, FeedKind::PlanAddons, before);
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].3["AddOnId"], extra.id.as_str());

    // A tenant cannot buy a private plan.
    let refused = sim.create_subscription(CreateSubscription::new("ann@contoso.test", plan.id.as_str())).await;
    assert!(!refused.is_approved());
    assert!(refusal(&refused).contains("not public"), "{refused:?}");

    // Configure, then publish: Patches carrying only the changed members.
    let mark = last_id(&sim);
    sim.configure_plan(&plan.id).unwrap();
    sim.set_plan_state(&plan.id, PlanState::Public).unwrap();
    let patches = events_after(&sim, FeedKind::Plans, mark);
    assert_eq!(patches.len(), 2);
    assert!(patches.iter().all(|(_, m, _, _)| m == "Patch"));
    assert_eq!(patches[0].3, serde_json::json!({"Id": plan.id, "ConfigState": 1}));
    assert_eq!(patches[1].3, serde_json::json!({"Id": plan.id, "State": 1}));
    assert_eq!(sim.plans().iter().find(|p| p.id == plan.id).unwrap().state, Some(PlanState::Public));

    // Now it sells; the private add-on does not, until it is public too.
    let bought = sim.create_subscription(CreateSubscription::new("ann@contoso.test", plan.id.as_str())).await;
    let sub = bought.subscription_id.clone().unwrap();
    let add = sim.add_subscription_addon(&sub, &extra.id).await;
    assert!(refusal(&add).contains("not public"), "{add:?}");
    sim.set_add_on_state(&extra.id, PlanState::Public).unwrap();
    let add = sim.add_subscription_addon(&sub, &extra.id).await;
    assert!(add.is_approved(), "{add:?}");

    // Decommissioned: no new subscriptions.
    sim.set_plan_state(&plan.id, PlanState::Decommissioned).unwrap();
    let refused = sim.create_subscription(CreateSubscription::new("bob@contoso.test", plan.id.as_str())).await;
    assert!(refusal(&refused).contains("decommissioned"), "{refused:?}");
}

#[tokio::test]
async fn a_stuck_plan_is_cloned_and_the_original_deleted() {
    let sim = sim().await;
    let a = sim.create_add_on(NewAddOn::new("Backup", "webspaces")).unwrap();
    let original = sim.create_plan(NewPlan::new("Silver", &["mysqlservers"]).with_add_on(a.id.as_str())).unwrap();
    sim.configure_plan(&original.id).unwrap();

    let mark = last_id(&sim);
    let clone = sim.clone_plan(&original.id, None).unwrap();
    assert_ne!(clone.id, original.id, "a clone is a new id");
    assert_eq!(clone.display_name.as_deref(), Some("Silver (clone)"));
    let posted = events_after(&sim, FeedKind::Plans, mark);
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].3["State"], 0, "the clone is private");
    assert_eq!(posted[0].3["ConfigState"], 1, "the configuration is kept");
    let services = events_after(&sim, FeedKind::PlanServices, mark);
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].2.as_deref(), Some(clone.id.as_str()));
    let links = events_after(&sim, FeedKind::PlanAddons, mark);
    assert_eq!((links.len(), links[0].3["AddOnId"].as_str()), (1, Some(a.id.as_str())));

    // Delete the original: its links go first, then the plan.
    let mark = last_id(&sim);
    sim.delete_plan(&original.id).unwrap();
    let link_deletes = events_after(&sim, FeedKind::PlanAddons, mark);
    let service_deletes = events_after(&sim, FeedKind::PlanServices, mark);
    let plan_deletes = events_after(&sim, FeedKind::Plans, mark);
    assert_eq!(link_deletes.len(), 1);
    assert_eq!(service_deletes.len(), 1);
    assert_eq!(plan_deletes.len(), 1);
    assert!(link_deletes[0].0 < plan_deletes[0].0 && service_deletes[0].0 < plan_deletes[0].0);
    assert!([&link_deletes[0], &service_deletes[0], &plan_deletes[0]].iter().all(|e| e.1 == "DELETE"));
    assert!(sim.plans().iter().all(|p| p.id != original.id));
    assert_eq!(sim.delete_plan(&original.id), Err(AdminError::Unknown { what: "plan", id: original.id.clone() }));

    // A plan with subscriptions cannot be deleted; an add-on held by one neither.
    sim.set_plan_state(&clone.id, PlanState::Public).unwrap();
    sim.set_add_on_state(&a.id, PlanState::Public).unwrap();
    let sub = sim.create_subscription(CreateSubscription::new("cy@contoso.test", clone.id.as_str())).await;
    let sub = sub.subscription_id.unwrap();
    assert!(matches!(sim.delete_plan(&clone.id), Err(AdminError::Refused(_))));
    assert!(sim.add_subscription_addon(&sub, &a.id).await.is_approved());
    assert!(matches!(sim.delete_add_on(&a.id), Err(AdminError::Refused(_))));
}

#[tokio::test]
async fn links_and_add_ons_follow_wap() {
    let sim = sim().await;
    let plan = sim.create_plan(NewPlan::new("Bronze", &["sqlservers"])).unwrap();
    let a = sim.create_add_on(NewAddOn::new("More Space", "sqlservers")).unwrap();
    let mark = last_id(&sim);
    sim.link_add_on(&plan.id, &a.id).unwrap();
    assert!(matches!(sim.link_add_on(&plan.id, &a.id), Err(AdminError::Refused(_))), "linked twice");
    sim.unlink_add_on(&plan.id, &a.id).unwrap();
    let links = events_after(&sim, FeedKind::PlanAddons, mark);
    let methods: Vec<&str> = links.iter().map(|(_, m, _, _)| m.as_str()).collect();
    assert_eq!(methods, ["POST", "DELETE"]);
    assert!(links.iter().all(|(_, _, p, _)| p.as_deref() == Some(plan.id.as_str())));

    let copy = sim.clone_add_on(&a.id, Some("More Space v2")).unwrap();
    assert_ne!(copy.id, a.id);
    assert_eq!(copy.state, Some(PlanState::Private));
    sim.link_add_on(&plan.id, &copy.id).unwrap();
    let mark = last_id(&sim);
    sim.delete_add_on(&copy.id).unwrap();
    let link_deletes = events_after(&sim, FeedKind::PlanAddons, mark);
    let add_on_deletes = events_after(&sim, FeedKind::Addons, mark);
    assert_eq!((link_deletes.len(), add_on_deletes.len()), (1, 1));
    assert!(link_deletes[0].0 < add_on_deletes[0].0, "the link goes before the add-on");
    assert!(matches!(sim.create_plan(NewPlan::new("bronze", &[])), Err(AdminError::Refused(_))), "names are unique");
}
