//! `docs/api.md` and the router stay in step: every route of
//! `sluice::admin::routes::ROUTES` has a `### \`METHOD /path\`` heading in
//! the doc, and every such heading is a route.

use std::collections::BTreeSet;

use sluice::admin::routes::ROUTES;

fn documented() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).expect("docs/api.md");
    doc.lines().filter_map(|l| l.strip_prefix("### `")?.strip_suffix('`').map(str::to_owned)).collect()
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let routed: BTreeSet<String> = ROUTES.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    let docs = documented();
    let missing: Vec<_> = routed.difference(&docs).collect();
    let stale: Vec<_> = docs.difference(&routed).collect();
    assert!(missing.is_empty(), "routes missing from docs/api.md: {missing:?}");
    assert!(stale.is_empty(), "docs/api.md documents routes the router does not have: {stale:?}");
    assert_eq!(routed.len(), ROUTES.len());
}
