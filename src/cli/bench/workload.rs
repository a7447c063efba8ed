//! The bench's event generator: realistic product-analytics events, cheap
//! enough to produce millions per second on one core.
//!
//! Two stages (the module docs of `bench` summarise them for users):
//!
//! 1. [`Pool::new`], once at start: thousands of distinct JSON property
//!    bodies, each for an event name drawn by weight from [`EVENTS`], holding
//!    that event's own properties, a little context, then more properties
//!    from [`PADDING`] in random order, then (for large sizes) an `items`
//!    array of products and a `tags` array, until the body is as close to the
//!    target size as the vocabulary allows. Every value is drawn from a list
//!    or a range, so bodies differ from each other; nothing is filler.
//! 2. [`Generator::batch_into`], per batch: a run of consecutive pool
//!    bodies from a random start, each behind a fresh prefix
//!    `{"event_id":"<16 hex>","user_id":"…","seq":N,` (a random id, the
//!    simulated user's id, a per-generator counter), with that user's device
//!    id, session id and service and a timestamp a little before now; then
//!    the Tell encoding. Per event that is a few random numbers, ~70 bytes
//!    formatted by hand and one memcpy.
//!
//! `bench otlp`'s requests (`otlp_workload`) draw from the same lists
//! (products, plans, currencies, payment methods, countries, regions, user
//! agents, …) and user ids.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use tell_encoding::{EventParams, EventType};

use crate::client::tell_batch_into;

/// Bytes of the per-event prefix with a 6-digit `seq` (`{"event_id":"…",
/// "user_id":"usr_…","seq":123456,`); pool bodies are sized to leave room
/// for it.
pub const PREFIX_BYTES: usize = 71;
/// Upper bound on the pool's total size; the entry count shrinks for large
/// events to stay under it.
const POOL_BYTES: usize = 64 << 20;
const MAX_POOL_ENTRIES: usize = 65_536;
const MIN_POOL_ENTRIES: usize = 1024;
/// Simulated users per generator (each with a device, a rotating session and a service).
const USERS: usize = 4096;

/// How a property's value is drawn.
#[derive(Debug, Clone, Copy)]
enum V {
    /// One of these strings.
    Pick(&'static [&'static str]),
    /// An integer in `lo..=hi`.
    Int(u64, u64),
    /// A price-like number with two decimals, `lo..=hi` in cents.
    Money(u64, u64),
    Bool,
    /// A prefix and this many random lowercase hex digits, e.g. an order id.
    Id(&'static str, usize),
    /// A calendar date in 2022–2025.
    Date,
    /// Some of these strings (1 to 4, distinct), as a JSON array.
    Several(&'static [&'static str]),
}

type Prop = (&'static str, V);

/// An event name, how often it occurs (relative), and its own properties.
struct EventSpec {
    name: &'static str,
    weight: u32,
    props: &'static [Prop],
}

const PATHS: &[&str] = &[
    "/",
    "/pricing",
    "/features",
    "/docs/getting-started",
    "/docs/api/events",
    "/blog/launch-week",
    "/signup",
    "/login",
    "/dashboard",
    "/dashboard/reports",
    "/settings/billing",
    "/settings/team",
    "/integrations",
    "/changelog",
    "/customers",
    "/about",
    "/careers",
    "/contact",
    "/checkout",
    "/cart",
    "/products/wireless-mouse",
    "/products/usb-c-hub",
    "/products/standing-desk",
    "/search",
    "/account/orders",
];
const TITLES: &[&str] = &[
    "Home",
    "Pricing",
    "Features",
    "Getting started",
    "Events API",
    "Launch week",
    "Sign up",
    "Log in",
    "Dashboard",
    "Reports",
    "Billing",
    "Team settings",
    "Integrations",
    "Changelog",
    "Customers",
    "Checkout",
    "Your cart",
];
const REFERRERS: &[&str] = &[
    "https://www.google.com/",
    "https://duckduckgo.com/",
    "https://news.ycombinator.com/",
    "https://www.bing.com/",
    "https://twitter.com/",
    "https://www.linkedin.com/",
    "https://github.com/",
    "https://www.reddit.com/r/rust/",
    "$direct",
    "https://mail.google.com/",
];
const BUTTONS: &[&str] = &[
    "Get started",
    "Start free trial",
    "Book a demo",
    "Add to cart",
    "Buy now",
    "Upgrade",
    "Save changes",
    "Invite team",
    "Export CSV",
    "Create API key",
    "Copy link",
    "Subscribe",
    "Continue",
    "Apply coupon",
    "Download",
];
const SCREENS: &[&str] =
    &["Home", "Feed", "Search", "Product", "Cart", "Checkout", "Profile", "Settings", "Onboarding"];
pub(super) const PLANS: &[&str] = &["free", "starter", "pro", "team", "business", "enterprise"];
pub(super) const METHODS: &[&str] = &["password", "google", "github", "apple", "sso", "magic_link"];
pub(super) const QUERIES: &[&str] = &[
    "wireless mouse",
    "usb c hub",
    "standing desk",
    "monitor arm",
    "mechanical keyboard",
    "webcam 4k",
    "noise cancelling",
    "laptop stand",
    "ergonomic chair",
    "desk lamp",
    "cable organizer",
    "docking station",
];
pub(super) const PRODUCTS: &[&str] = &[
    "Wireless Mouse",
    "USB-C Hub",
    "Standing Desk",
    "Monitor Arm",
    "Mechanical Keyboard",
    "4K Webcam",
    "Noise Cancelling Headphones",
    "Laptop Stand",
    "Ergonomic Chair",
    "LED Desk Lamp",
    "Cable Organizer",
    "Thunderbolt Dock",
    "Portable SSD 1TB",
];
const CATEGORIES: &[&str] = &["accessories", "furniture", "audio", "storage", "peripherals", "lighting", "video"];
pub(super) const CURRENCIES: &[&str] = &["USD", "EUR", "GBP", "CAD", "AUD", "JPY", "SEK"];
pub(super) const PAYMENTS: &[&str] = &["card", "paypal", "apple_pay", "google_pay", "sepa_debit", "invoice"];
const SHIPPING: &[&str] = &["standard", "express", "next_day", "pickup"];
const BILLING: &[&str] = &["monthly", "annual"];
const VIDEOS: &[&str] = &[
    "Product tour",
    "Getting started in 5 minutes",
    "Customer story: Acme",
    "Webinar: scaling ingest",
    "Release notes 2.4",
];
const FORMS: &[&str] =
    &["contact_sales", "newsletter", "feedback", "support_ticket", "onboarding_survey", "beta_waitlist"];
const FILES: &[&str] =
    &["whitepaper.pdf", "invoice-2024-11.pdf", "export.csv", "brand-kit.zip", "sdk-1.8.2.tar.gz", "report-q3.xlsx"];
const FILE_TYPES: &[&str] = &["pdf", "csv", "zip", "tar.gz", "xlsx"];
pub(super) const FEATURES: &[&str] = &[
    "dashboards",
    "alerts",
    "funnels",
    "retention",
    "cohorts",
    "sql_editor",
    "live_tail",
    "api_keys",
    "sso",
    "audit_log",
];
pub(super) const COUNTRIES: &[&str] =
    &["US", "DE", "GB", "FR", "IN", "BR", "CA", "JP", "NL", "SE", "ES", "AU", "PL", "MX"];
const LOCALES: &[&str] = &["en-US", "de-DE", "en-GB", "fr-FR", "hi-IN", "pt-BR", "ja-JP", "nl-NL", "sv-SE", "es-ES"];
const BROWSERS: &[&str] = &["Chrome", "Safari", "Firefox", "Edge", "Samsung Internet", "Opera"];
const OSES: &[&str] = &["macOS", "Windows", "iOS", "Android", "Linux", "ChromeOS"];
const DEVICE_TYPES: &[&str] = &["desktop", "mobile", "tablet"];
const UTM_SOURCES: &[&str] = &["google", "newsletter", "twitter", "linkedin", "producthunt", "partner", "podcast"];
const UTM_MEDIUMS: &[&str] = &["cpc", "email", "social", "referral", "organic", "display"];
const UTM_CAMPAIGNS: &[&str] = &["spring_sale", "launch_week", "black_friday", "webinar_q3", "retargeting_eu", "brand"];
const TIMEZONES: &[&str] = &[
    "America/New_York",
    "Europe/Berlin",
    "Europe/London",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "America/Los_Angeles",
    "Australia/Sydney",
];
const NETWORKS: &[&str] = &["wifi", "4g", "5g", "ethernet", "3g"];
const EXPERIMENTS: &[&str] =
    &["new_onboarding", "pricing_page_v3", "checkout_one_step", "dark_mode_default", "search_ranking_b"];
const VARIANTS: &[&str] = &["control", "variant_a", "variant_b"];
pub(super) const APP_VERSIONS: &[&str] = &["2.4.1", "2.4.0", "2.3.7", "2.5.0-beta.2", "1.9.12"];
const SDKS: &[&str] = &["tell-rust/0.7.0", "tell-js/0.7.2", "tell-swift/0.6.4", "tell-kotlin/0.6.1"];
const CITIES: &[&str] = &[
    "Berlin",
    "London",
    "New York",
    "San Francisco",
    "Bengaluru",
    "São Paulo",
    "Tokyo",
    "Amsterdam",
    "Stockholm",
    "Toronto",
];
pub(super) const REGIONS: &[&str] =
    &["us-east-1", "eu-central-1", "eu-west-2", "ap-south-1", "sa-east-1", "ap-northeast-1"];
const SCHEMES: &[&str] = &["light", "dark", "system"];
const ROLES: &[&str] = &["owner", "admin", "member", "viewer", "billing"];
const INDUSTRIES: &[&str] = &["saas", "ecommerce", "fintech", "healthcare", "gaming", "media", "education"];
const FLAGS: &[&str] = &["new_nav", "ai_summary", "bulk_export", "beta_charts", "fast_checkout", "inline_help"];
pub(super) const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 Edg/123.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
];
const TAGS: &[&str] = &[
    "beta",
    "trial",
    "promo",
    "returning",
    "mobile",
    "vip",
    "eu",
    "b2b",
    "churn_risk",
    "power_user",
    "invited",
    "sales_led",
    "self_serve",
    "annual",
    "student",
    "nonprofit",
    "partner",
    "early_adopter",
    "api_user",
    "high_intent",
    "new",
    "migrated",
];

/// Event names with relative frequencies and their own properties.
const EVENTS: &[EventSpec] = &[
    EventSpec {
        name: "Page Viewed",
        weight: 30,
        props: &[("path", V::Pick(PATHS)), ("title", V::Pick(TITLES)), ("referrer", V::Pick(REFERRERS))],
    },
    EventSpec {
        name: "Button Clicked",
        weight: 15,
        props: &[("button", V::Pick(BUTTONS)), ("path", V::Pick(PATHS)), ("position", V::Int(1, 12))],
    },
    EventSpec {
        name: "Screen Viewed",
        weight: 8,
        props: &[("screen", V::Pick(SCREENS)), ("app_version", V::Pick(APP_VERSIONS))],
    },
    EventSpec { name: "Signed In", weight: 4, props: &[("method", V::Pick(METHODS)), ("remember_me", V::Bool)] },
    EventSpec {
        name: "Signed Up",
        weight: 2,
        props: &[("plan", V::Pick(PLANS)), ("method", V::Pick(METHODS)), ("referral_code", V::Id("ref_", 6))],
    },
    EventSpec {
        name: "Search Performed",
        weight: 6,
        props: &[("query", V::Pick(QUERIES)), ("results", V::Int(0, 480)), ("page", V::Int(1, 5))],
    },
    EventSpec {
        name: "Product Viewed",
        weight: 10,
        props: &[
            ("product_id", V::Id("prod_", 8)),
            ("product_name", V::Pick(PRODUCTS)),
            ("category", V::Pick(CATEGORIES)),
            ("price", V::Money(499, 89_900)),
        ],
    },
    EventSpec {
        name: "Product Added",
        weight: 6,
        props: &[
            ("product_id", V::Id("prod_", 8)),
            ("product_name", V::Pick(PRODUCTS)),
            ("quantity", V::Int(1, 4)),
            ("price", V::Money(499, 89_900)),
        ],
    },
    EventSpec {
        name: "Checkout Started",
        weight: 3,
        props: &[
            ("cart_value", V::Money(999, 250_000)),
            ("currency", V::Pick(CURRENCIES)),
            ("item_count", V::Int(1, 9)),
        ],
    },
    EventSpec {
        name: "Order Completed",
        weight: 2,
        props: &[
            ("order_id", V::Id("ord_", 10)),
            ("total", V::Money(999, 250_000)),
            ("currency", V::Pick(CURRENCIES)),
            ("payment_method", V::Pick(PAYMENTS)),
            ("shipping", V::Pick(SHIPPING)),
        ],
    },
    EventSpec {
        name: "Subscription Upgraded",
        weight: 1,
        props: &[
            ("from_plan", V::Pick(PLANS)),
            ("to_plan", V::Pick(PLANS)),
            ("billing", V::Pick(BILLING)),
            ("mrr", V::Money(900, 499_900)),
        ],
    },
    EventSpec {
        name: "Video Played",
        weight: 4,
        props: &[("video", V::Pick(VIDEOS)), ("position_sec", V::Int(0, 1800)), ("duration_sec", V::Int(60, 3600))],
    },
    EventSpec {
        name: "Form Submitted",
        weight: 3,
        props: &[("form", V::Pick(FORMS)), ("fields", V::Int(2, 14)), ("duration_ms", V::Int(1500, 240_000))],
    },
    EventSpec {
        name: "File Downloaded",
        weight: 2,
        props: &[("file_name", V::Pick(FILES)), ("file_type", V::Pick(FILE_TYPES)), ("size_kb", V::Int(12, 250_000))],
    },
    EventSpec {
        name: "Feature Used",
        weight: 4,
        props: &[("feature", V::Pick(FEATURES)), ("plan", V::Pick(PLANS)), ("duration_ms", V::Int(200, 600_000))],
    },
];

/// On every event, after its own properties.
const CONTEXT: &[Prop] = &[("country", V::Pick(COUNTRIES)), ("browser", V::Pick(BROWSERS))];

/// More properties, added in random order while they fit the target size.
const PADDING: &[Prop] = &[
    ("os", V::Pick(OSES)),
    ("device_type", V::Pick(DEVICE_TYPES)),
    ("locale", V::Pick(LOCALES)),
    ("timezone", V::Pick(TIMEZONES)),
    ("city", V::Pick(CITIES)),
    ("screen_width", V::Int(360, 3840)),
    ("screen_height", V::Int(640, 2160)),
    ("network", V::Pick(NETWORKS)),
    ("is_returning", V::Bool),
    ("utm_source", V::Pick(UTM_SOURCES)),
    ("utm_medium", V::Pick(UTM_MEDIUMS)),
    ("utm_campaign", V::Pick(UTM_CAMPAIGNS)),
    ("experiment", V::Pick(EXPERIMENTS)),
    ("variant", V::Pick(VARIANTS)),
    ("page_load_ms", V::Int(120, 9000)),
    ("ttfb_ms", V::Int(15, 1200)),
    ("scroll_depth", V::Int(0, 100)),
    ("session_count", V::Int(1, 900)),
    ("days_since_signup", V::Int(0, 1500)),
    ("signup_date", V::Date),
    ("account_plan", V::Pick(PLANS)),
    ("account_id", V::Id("acct_", 8)),
    ("team_size", V::Int(1, 250)),
    ("role", V::Pick(ROLES)),
    ("industry", V::Pick(INDUSTRIES)),
    ("region", V::Pick(REGIONS)),
    ("color_scheme", V::Pick(SCHEMES)),
    ("sdk", V::Pick(SDKS)),
    ("app_build", V::Int(1000, 9999)),
    ("connection_rtt_ms", V::Int(5, 600)),
    ("battery_level", V::Int(3, 100)),
    ("memory_gb", V::Int(2, 64)),
    ("cpu_cores", V::Int(2, 32)),
    ("lifetime_value", V::Money(0, 1_500_000)),
    ("email_verified", V::Bool),
    ("marketing_opt_in", V::Bool),
    ("feature_flags", V::Several(FLAGS)),
    ("user_agent", V::Pick(USER_AGENTS)),
    ("landing_page", V::Pick(PATHS)),
    ("initial_referrer", V::Pick(REFERRERS)),
];

/// Writes `s` as a JSON string (the vocabulary is plain text, but escape anyway).
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

pub(super) fn pick<'a>(rng: &mut SmallRng, list: &[&'a str]) -> &'a str {
    list[rng.random_range(0..list.len())]
}

/// Writes `"key":value` to `out`.
fn push_prop(out: &mut String, rng: &mut SmallRng, (key, v): &Prop) {
    push_json_str(out, key);
    out.push(':');
    match *v {
        V::Pick(list) => push_json_str(out, pick(rng, list)),
        V::Int(lo, hi) => {
            let _ = write!(out, "{}", rng.random_range(lo..=hi));
        }
        V::Money(lo, hi) => {
            let cents = rng.random_range(lo..=hi);
            let _ = write!(out, "{}.{:02}", cents / 100, cents % 100);
        }
        V::Bool => out.push_str(if rng.random() { "true" } else { "false" }),
        V::Id(prefix, digits) => {
            out.push('"');
            push_id(out, rng, prefix, digits);
            out.push('"');
        }
        V::Date => {
            let (y, m, d) = (rng.random_range(2022..=2025), rng.random_range(1..=12), rng.random_range(1..=28));
            let _ = write!(out, "\"{y}-{m:02}-{d:02}\"");
        }
        V::Several(list) => {
            let mut chosen: Vec<&str> = list.to_vec();
            chosen.shuffle(rng);
            chosen.truncate(rng.random_range(1..=4.min(list.len())));
            push_str_array(out, &chosen);
        }
    }
}

/// A prefix and `digits` random lowercase hex digits, e.g. an order id `ord_3fa9c2d1e0`.
pub(super) fn push_id(out: &mut String, rng: &mut SmallRng, prefix: &str, digits: usize) {
    out.push_str(prefix);
    for _ in 0..digits {
        out.push(char::from(HEX[rng.random_range(0..16)]));
    }
}

fn push_str_array(out: &mut String, items: &[&str]) {
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, s);
    }
    out.push(']');
}

/// One `items` entry: a product in a cart or order.
fn push_item(out: &mut String, rng: &mut SmallRng) {
    let cents = rng.random_range(299..=129_900u64);
    let _ = write!(out, "{{\"sku\":\"SKU-{:05}\",\"name\":", rng.random_range(10_000..=99_999u32));
    push_json_str(out, pick(rng, PRODUCTS));
    let _ = write!(out, ",\"qty\":{},\"price\":{}.{:02}}}", rng.random_range(1..=5u32), cents / 100, cents % 100);
}

/// Builds one pool body: `"key":value,…}` (the prefix supplies the `{`),
/// as close to `target` bytes as the vocabulary allows without going over
/// (the event's own properties and context always go in, however small the
/// target).
fn body(rng: &mut SmallRng, spec: &EventSpec, target: usize) -> String {
    let mut out = String::with_capacity(target + 64);
    let mut used: Vec<&str> = Vec::new();
    for prop in spec.props.iter().chain(CONTEXT) {
        if !out.is_empty() {
            out.push(',');
        }
        push_prop(&mut out, rng, prop);
        used.push(prop.0);
    }
    // Room left for ",…" additions before the closing brace.
    let room = |out: &String| target.saturating_sub(out.len() + 1);
    let mut order: Vec<usize> = (0..PADDING.len()).collect();
    order.shuffle(rng);
    let mut tmp = String::new();
    for i in order {
        let prop = &PADDING[i];
        if used.contains(&prop.0) {
            continue;
        }
        tmp.clear();
        push_prop(&mut tmp, rng, prop);
        if tmp.len() < room(&out) {
            out.push(',');
            out.push_str(&tmp);
            used.push(prop.0);
        }
    }
    // Large targets: products in the cart, as many as fit.
    if room(&out) > 160 {
        out.push_str(",\"items\":[");
        let mut first = true;
        loop {
            tmp.clear();
            push_item(&mut tmp, rng);
            // The item, its comma, and the closing bracket.
            if tmp.len() + 2 > room(&out) && !first {
                break;
            }
            if !first {
                out.push(',');
            }
            out.push_str(&tmp);
            first = false;
        }
        out.push(']');
    }
    // The last few bytes: distinct tags while they fit.
    if room(&out) > ",\"tags\":[\"new\"]".len() {
        let mut tags: Vec<&str> = TAGS.to_vec();
        tags.shuffle(rng);
        let mut chosen = Vec::new();
        let mut len = ",\"tags\":[]".len();
        for t in tags {
            let add = t.len() + 2 + usize::from(!chosen.is_empty());
            if len + add <= room(&out) {
                len += add;
                chosen.push(t);
            }
        }
        out.push_str(",\"tags\":");
        push_str_array(&mut out, &chosen);
    }
    out.push('}');
    out
}

/// The event whose share of the total weight holds `w`.
fn weighted_event(mut w: u32) -> &'static EventSpec {
    for spec in EVENTS {
        if w < spec.weight {
            return spec;
        }
        w -= spec.weight;
    }
    &EVENTS[0]
}

/// Pre-generated event bodies, shared by all connections.
#[derive(Debug)]
pub struct Pool {
    arena: Vec<u8>,
    /// (event name, start, end) into `arena`.
    entries: Vec<(&'static str, u32, u32)>,
}

impl Pool {
    /// Bodies for events of about `event_bytes` bytes each (prefix included).
    pub fn new(event_bytes: usize, seed: u64) -> Pool {
        let target = event_bytes.saturating_sub(PREFIX_BYTES);
        let count = (POOL_BYTES / target.max(64)).clamp(MIN_POOL_ENTRIES, MAX_POOL_ENTRIES);
        Self::with_entries(target, count, seed)
    }

    fn with_entries(target: usize, count: usize, seed: u64) -> Pool {
        let mut rng = SmallRng::seed_from_u64(seed);
        let total_weight: u32 = EVENTS.iter().map(|e| e.weight).sum();
        let mut arena = Vec::with_capacity(count * (target + 16));
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let spec = weighted_event(rng.random_range(0..total_weight));
            let start = arena.len() as u32;
            arena.extend_from_slice(body(&mut rng, spec, target).as_bytes());
            entries.push((spec.name, start, arena.len() as u32));
        }
        Pool { arena, entries }
    }

    /// Number of distinct bodies.
    pub fn distinct_bodies(&self) -> usize {
        self.entries.len()
    }
}

#[derive(Debug, Clone)]
struct User {
    device: [u8; 16],
    session: [u8; 16],
    /// `usr_` and 10 base-36 characters.
    id: [u8; 14],
    service: &'static str,
    /// Events until the session rotates.
    session_left: u32,
}

/// One event of the batch being built.
#[derive(Debug, Clone, Copy)]
struct Slot {
    entry: u32,
    user: u32,
    session: [u8; 16],
    timestamp: u64,
    start: u32,
    end: u32,
}

const HEX: &[u8; 16] = b"0123456789abcdef";
const SERVICES: &[&str] = &["web", "web", "web", "ios", "android", "api"];

/// A simulated user's id: `usr_` and 10 base-36 characters.
pub(super) fn user_id(rng: &mut SmallRng) -> [u8; 14] {
    let mut id = *b"usr_0000000000";
    for b in &mut id[4..] {
        *b = b"0123456789abcdefghijklmnopqrstuvwxyz"[rng.random_range(0..36)];
    }
    id
}

/// Random bytes shaped as a version-4 UUID.
fn uuid(rng: &mut SmallRng) -> [u8; 16] {
    let mut id: [u8; 16] = rng.random();
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}

/// `0..len` from one random word, without division (Lemire).
fn below(r: u64, len: usize) -> usize {
    ((u128::from(r) * len as u128) >> 64) as usize
}

/// Builds batches of events for one connection.
#[derive(Debug)]
pub struct Generator {
    pool: Arc<Pool>,
    rng: SmallRng,
    users: Vec<User>,
    seq: u64,
    /// Payloads of the batch being built, back to back.
    arena: Vec<u8>,
    slots: Vec<Slot>,
    scratch: Vec<u8>,
}

impl Generator {
    pub fn new(pool: Arc<Pool>, seed: u64) -> Generator {
        let mut rng = SmallRng::seed_from_u64(seed);
        let users = (0..USERS)
            .map(|_| {
                let id = user_id(&mut rng);
                User {
                    device: uuid(&mut rng),
                    session: uuid(&mut rng),
                    id,
                    service: pick(&mut rng, SERVICES),
                    session_left: rng.random_range(1..200),
                }
            })
            .collect();
        Generator { pool, rng, users, seq: 0, arena: Vec::new(), slots: Vec::new(), scratch: Vec::new() }
    }

    /// Appends one Tell `Batch` of `n` events, with `key` and `batch_id`, to `out`.
    pub fn batch_into(&mut self, out: &mut Vec<u8>, key: &[u8; 16], batch_id: u64, n: usize) {
        self.fill(n, now_ms());
        let Generator { pool, users, arena, slots, scratch, .. } = self;
        let events: Vec<EventParams<'_>> = slots
            .iter()
            .map(|s| {
                let user = &users[s.user as usize];
                EventParams {
                    event_type: EventType::Track,
                    timestamp: s.timestamp,
                    service: Some(user.service),
                    device_id: Some(&user.device),
                    session_id: Some(&s.session),
                    event_name: Some(pool.entries[s.entry as usize].0),
                    payload: Some(&arena[s.start as usize..s.end as usize]),
                }
            })
            .collect();
        tell_batch_into(out, scratch, key, batch_id, &events);
    }

    /// Appends `n` events as JSON lines, in the flat shape the Tell browser
    /// SDK sends to `POST /v1/events`: `type`, `event`, `service`,
    /// `device_id`, `session_id` (32 hex digits), `timestamp`, then the
    /// payload's members (`event_id`, `user_id`, `seq`, the properties).
    pub fn jsonl_into(&mut self, out: &mut Vec<u8>, n: usize) {
        self.fill(n, now_ms());
        for s in &self.slots {
            let user = &self.users[s.user as usize];
            out.extend_from_slice(b"{\"type\":\"track\",\"event\":\"");
            out.extend_from_slice(self.pool.entries[s.entry as usize].0.as_bytes());
            out.extend_from_slice(b"\",\"service\":\"");
            out.extend_from_slice(user.service.as_bytes());
            out.extend_from_slice(b"\",\"device_id\":\"");
            push_hex(out, &user.device);
            out.extend_from_slice(b"\",\"session_id\":\"");
            push_hex(out, &s.session);
            out.extend_from_slice(b"\",\"timestamp\":");
            push_decimal(out, s.timestamp);
            out.push(b',');
            // The payload is a whole object: its members follow ours.
            out.extend_from_slice(&self.arena[s.start as usize + 1..s.end as usize]);
            out.push(b'\n');
        }
    }

    /// Builds the payloads and identities of `n` events.
    fn fill(&mut self, n: usize, now_ms: u64) {
        self.arena.clear();
        self.slots.clear();
        // A random run of consecutive bodies: each is random already, and
        // reading the pool in order lets the prefetcher hide that it is far
        // larger than the CPU caches (random picks cost a cache miss each).
        let pool_len = self.pool.entries.len();
        let mut entry = below(self.rng.next_u64(), pool_len);
        for _ in 0..n {
            entry = if entry + 1 == pool_len { 0 } else { entry + 1 };
            let (r1, r2) = (self.rng.next_u64(), self.rng.next_u64());
            let user_ix = below(r2, USERS);
            if self.users[user_ix].session_left == 0 {
                let session = uuid(&mut self.rng);
                let user = &mut self.users[user_ix];
                user.session = session;
                user.session_left = (r1 as u32 % 200) + 1;
            }
            let user = &mut self.users[user_ix];
            user.session_left -= 1;
            self.seq += 1;
            let start = self.arena.len();
            write_prefix(&mut self.arena, self.rng.next_u64(), &user.id, self.seq);
            let (_, a, b) = self.pool.entries[entry];
            self.arena.extend_from_slice(&self.pool.arena[a as usize..b as usize]);
            self.slots.push(Slot {
                entry: entry as u32,
                user: user_ix as u32,
                session: user.session,
                // Events reach the server up to a few seconds after they happen.
                timestamp: now_ms.saturating_sub(r2 % 3000),
                start: start as u32,
                end: self.arena.len() as u32,
            });
        }
    }

    /// Payloads of the last batch built (for tests).
    #[cfg(test)]
    fn payloads(&self) -> impl Iterator<Item = &[u8]> {
        self.slots.iter().map(|s| &self.arena[s.start as usize..s.end as usize])
    }
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

/// `{"event_id":"<16 hex>","user_id":"<id>","seq":<n>,` without `fmt`.
fn write_prefix(out: &mut Vec<u8>, id: u64, user: &[u8; 14], seq: u64) {
    out.extend_from_slice(b"{\"event_id\":\"");
    let mut hex = [0u8; 16];
    for (i, h) in hex.iter_mut().enumerate() {
        *h = HEX[((id >> (60 - 4 * i)) & 0xf) as usize];
    }
    out.extend_from_slice(&hex);
    out.extend_from_slice(b"\",\"user_id\":\"");
    out.extend_from_slice(user);
    out.extend_from_slice(b"\",\"seq\":");
    push_decimal(out, seq);
    out.push(b',');
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn generator(event_bytes: usize, entries: usize) -> Generator {
        let target = event_bytes.saturating_sub(PREFIX_BYTES);
        Generator::new(Arc::new(Pool::with_entries(target, entries, 7)), 11)
    }

    #[test]
    fn json_lines_are_browser_shaped_objects() {
        let mut g = generator(300, 64);
        let mut out = Vec::new();
        g.jsonl_into(&mut out, 20);
        let lines: Vec<serde_json::Value> =
            out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
        assert_eq!(lines.len(), 20);
        for v in &lines {
            assert_eq!(v["type"], "track");
            assert!(v["event"].is_string() && v["user_id"].is_string() && v["seq"].is_u64());
            assert_eq!(v["device_id"].as_str().unwrap().len(), 32);
        }
    }

    #[test]
    fn prefix_length_matches_the_constant() {
        let mut out = Vec::new();
        write_prefix(&mut out, u64::MAX, b"usr_0123456789", 123_456);
        assert_eq!(out.len(), PREFIX_BYTES);
        let mut json = out.clone();
        json.extend_from_slice(b"\"x\":1}");
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["event_id"], "ffffffffffffffff");
        assert_eq!(v["seq"], 123_456);
    }

    #[test]
    fn payloads_are_json_objects_near_the_target_size() {
        for event_bytes in [200usize, 500, 1000, 4000] {
            let mut g = generator(event_bytes, 500);
            let mut out = Vec::new();
            // Advance seq to 6 digits, as in a real run.
            g.seq = 100_000;
            g.batch_into(&mut out, &[1; 16], 1, 500);
            let sizes: Vec<usize> = g.payloads().map(<[u8]>::len).collect();
            for p in g.payloads() {
                let v: serde_json::Value =
                    serde_json::from_slice(p).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(p)));
                let obj = v.as_object().unwrap();
                assert!(obj.contains_key("event_id") && obj.contains_key("country"));
            }
            let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
            assert!((mean - event_bytes as f64).abs() / (event_bytes as f64) < 0.1, "{event_bytes}: mean {mean}");
            let max = *sizes.iter().max().unwrap();
            assert!(max as f64 <= event_bytes as f64 * 1.5, "{event_bytes}: max {max}");
        }
    }

    #[test]
    fn no_key_repeats_within_a_payload() {
        let pool = Pool::with_entries(4000, 200, 3);
        for &(_, a, b) in &pool.entries {
            let body = &pool.arena[a as usize..b as usize];
            let mut json = b"{".to_vec();
            json.extend_from_slice(body);
            // serde_json keeps the last of duplicate keys, so count keys in the text.
            let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
            let keys = v.as_object().unwrap().len();
            let text = String::from_utf8_lossy(body);
            let top_level_colons = count_top_level_keys(&text);
            assert_eq!(keys, top_level_colons, "{text}");
        }
    }

    /// Keys at depth 0 of a body that starts inside the object.
    fn count_top_level_keys(body: &str) -> usize {
        let (mut depth, mut in_str, mut keys, mut prev_escape) = (0i32, false, 0, false);
        for c in body.chars() {
            if in_str {
                match c {
                    '\\' if !prev_escape => prev_escape = true,
                    '"' if !prev_escape => in_str = false,
                    _ => prev_escape = false,
                }
                continue;
            }
            match c {
                '"' => in_str = true,
                '[' | '{' => depth += 1,
                ']' | '}' => depth -= 1,
                ':' if depth == 0 => keys += 1,
                _ => {}
            }
        }
        keys
    }

    #[test]
    fn consecutive_events_and_batches_differ() {
        let mut g = generator(200, 1024);
        let mut seen = HashSet::new();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        g.batch_into(&mut a, &[1; 16], 1, 100);
        seen.extend(g.payloads().map(<[u8]>::to_vec));
        g.batch_into(&mut b, &[1; 16], 2, 100);
        seen.extend(g.payloads().map(<[u8]>::to_vec));
        assert_eq!(seen.len(), 200, "every payload is distinct");
        assert_ne!(a, b);
        // Not just the counters: the bodies vary too.
        let bodies: HashSet<&[u8]> = g.payloads().map(|p| &p[PREFIX_BYTES - 6..]).collect();
        assert!(bodies.len() > 90);
    }

    #[test]
    fn pool_bodies_use_varied_vocabulary() {
        let pool = Pool::with_entries(130, 2000, 5);
        let names: HashSet<&str> = pool.entries.iter().map(|e| e.0).collect();
        assert!(names.len() >= 12, "{names:?}");
        let bodies: HashSet<&[u8]> =
            pool.entries.iter().map(|&(_, a, b)| &pool.arena[a as usize..b as usize]).collect();
        assert!(bodies.len() > 1990);
    }
}
