//! The simulated shop: 8 services with their endpoints, tables and peers,
//! the instances (resources) that run them, and the HTTP calls they answer,
//! which access logs, metrics and SERVER spans describe.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use rand::Rng;
use rand::rngs::SmallRng;

use super::{Gen, int, latency, s};
use crate::cli::bench::workload::{APP_VERSIONS, REGIONS, USER_AGENTS, pick, push_id};

/// An HTTP endpoint of a service; `{id}` (or `:id`, `<id>`) ends the route
/// when `id` names the prefix of the ids that stand there.
pub(super) struct Endpoint {
    pub(super) method: &'static str,
    pub(super) route: &'static str,
    pub(super) id: Option<&'static str>,
    /// Typical latency.
    pub(super) ms: f64,
    pub(super) handler: &'static str,
}

const fn ep(method: &'static str, route: &'static str, id: Option<&'static str>, ms: f64, h: &'static str) -> Endpoint {
    Endpoint { method, route, id, ms, handler: h }
}

pub(super) struct Service {
    pub(super) name: &'static str,
    pub(super) language: &'static str,
    pub(super) sdk_version: &'static str,
    pub(super) scope: &'static str,
    pub(super) scope_version: &'static str,
    pub(super) endpoints: &'static [Endpoint],
    /// Services it calls.
    pub(super) calls: &'static [&'static str],
    /// Its PostgreSQL tables.
    pub(super) tables: &'static [&'static str],
}

const SPRING: &str = "io.opentelemetry.spring-webmvc-6.0";
const OTELHTTP: &str = "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp";
const FLASK: &str = "opentelemetry.instrumentation.flask";

pub(super) const SERVICES: &[Service] = &[
    Service {
        name: "frontend",
        language: "nodejs",
        sdk_version: "1.30.1",
        scope: "@opentelemetry/instrumentation-http",
        scope_version: "0.57.2",
        endpoints: &[
            ep("GET", "/", None, 35.0, "renderHome"),
            ep("GET", "/products/:id", Some("prod_"), 48.0, "renderProduct"),
            ep("GET", "/cart", None, 30.0, "renderCart"),
            ep("POST", "/api/checkout", None, 260.0, "submitCheckout"),
            ep("GET", "/search", None, 70.0, "renderSearch"),
        ],
        calls: &["catalog", "cart", "checkout", "recommendation", "auth"],
        tables: &[],
    },
    Service {
        name: "checkout",
        language: "java",
        sdk_version: "1.46.0",
        scope: SPRING,
        scope_version: "2.12.0-alpha",
        endpoints: &[
            ep("POST", "/api/v1/checkout", None, 180.0, "CheckoutController.checkout"),
            ep("POST", "/api/v1/orders", None, 120.0, "OrderController.create"),
            ep("GET", "/api/v1/orders/{id}", Some("ord_"), 14.0, "OrderController.get"),
        ],
        calls: &["cart", "payment", "shipping"],
        tables: &["orders", "order_items"],
    },
    Service {
        name: "cart",
        language: "go",
        sdk_version: "1.34.0",
        scope: OTELHTTP,
        scope_version: "0.59.0",
        endpoints: &[
            ep("GET", "/api/v1/cart", None, 8.0, "cart.Get"),
            ep("POST", "/api/v1/cart/items", None, 16.0, "cart.AddItem"),
            ep("DELETE", "/api/v1/cart/items/{id}", Some("prod_"), 11.0, "cart.RemoveItem"),
        ],
        calls: &["catalog"],
        tables: &["carts", "cart_items"],
    },
    Service {
        name: "catalog",
        language: "python",
        sdk_version: "1.29.0",
        scope: FLASK,
        scope_version: "0.50b0",
        endpoints: &[
            ep("GET", "/api/v1/products", None, 28.0, "list_products"),
            ep("GET", "/api/v1/products/<id>", Some("prod_"), 12.0, "get_product"),
            ep("GET", "/api/v1/search", None, 45.0, "search"),
        ],
        calls: &[],
        tables: &["products", "categories", "stock"],
    },
    Service {
        name: "payment",
        language: "java",
        sdk_version: "1.46.0",
        scope: SPRING,
        scope_version: "2.12.0-alpha",
        endpoints: &[
            ep("POST", "/api/v1/payments", None, 240.0, "PaymentController.charge"),
            ep("POST", "/api/v1/refunds", None, 190.0, "PaymentController.refund"),
        ],
        calls: &[],
        tables: &["payments", "refunds"],
    },
    Service {
        name: "auth",
        language: "go",
        sdk_version: "1.34.0",
        scope: OTELHTTP,
        scope_version: "0.59.0",
        endpoints: &[
            ep("POST", "/api/v1/sessions", None, 62.0, "auth.SignIn"),
            ep("DELETE", "/api/v1/sessions/{id}", Some("sess_"), 6.0, "auth.SignOut"),
            ep("GET", "/api/v1/users/{id}", Some("usr_"), 7.0, "auth.GetUser"),
        ],
        calls: &[],
        tables: &["users", "sessions"],
    },
    Service {
        name: "recommendation",
        language: "python",
        sdk_version: "1.29.0",
        scope: FLASK,
        scope_version: "0.50b0",
        endpoints: &[ep("GET", "/api/v1/recommendations", None, 55.0, "recommend")],
        calls: &["catalog"],
        tables: &["user_events"],
    },
    Service {
        name: "shipping",
        language: "dotnet",
        sdk_version: "1.10.0",
        scope: "OpenTelemetry.Instrumentation.AspNetCore",
        scope_version: "1.10.1",
        endpoints: &[
            ep("GET", "/api/v1/shipping/quote", None, 33.0, "ShippingController.Quote"),
            ep("POST", "/api/v1/shipments", None, 85.0, "ShippingController.Create"),
        ],
        calls: &[],
        tables: &["shipments"],
    },
];

pub(super) const TOPICS: &[&str] = &["orders", "payments", "emails", "inventory-updates", "shipments"];
pub(super) const UPSTREAM_ERRORS: &[&str] = &[
    "connection reset by peer",
    "context deadline exceeded after 5s",
    "503 Service Unavailable",
    "connection refused",
    "TLS handshake timeout",
];

fn status_code(rng: &mut SmallRng, method: &str) -> i64 {
    match rng.random_range(0..1000) {
        0..850 if method == "POST" => 201,
        0..850 => 200,
        850..880 if method == "GET" => 304,
        850..880 => 204,
        880..910 => 400,
        910..925 => 401,
        925..955 => 404,
        955..962 => 409,
        962..970 => 429,
        970..988 => 500,
        988..994 => 502,
        _ => 503,
    }
}

/// A process of a service.
#[derive(Clone, Copy)]
pub(super) struct Origin {
    pub(super) service: &'static Service,
    pub(super) started_ns: u64,
}

/// A process and its resource.
pub(super) struct Instance {
    pub(super) origin: Origin,
    pub(super) resource: Resource,
}

/// An HTTP call a service answered.
pub(super) struct Call {
    pub(super) ep: &'static Endpoint,
    pub(super) path: String,
    pub(super) status: i64,
    pub(super) ms: f64,
    pub(super) user: Option<String>,
    pub(super) client: String,
    pub(super) agent: &'static str,
}

impl Call {
    /// What the access log and the SERVER span say about it.
    pub(super) fn attributes(&self) -> Vec<KeyValue> {
        let mut a = vec![
            s("http.request.method", self.ep.method),
            s("http.route", self.ep.route),
            s("url.path", &self.path),
            s("url.scheme", "https"),
            int("http.response.status_code", self.status),
            s("client.address", &self.client),
            s("user_agent.original", self.agent),
        ];
        if let Some(user) = &self.user {
            a.push(s("user.id", user));
        }
        a
    }
}

impl Gen {
    pub(super) fn instance(&mut self, service: &'static Service) -> Instance {
        let r = &mut self.rng;
        let region = pick(r, REGIONS);
        let mut pod = format!("{}-", service.name);
        push_id(&mut pod, r, "", 10);
        push_id(&mut pod, r, "-", 5);
        let mut instance_id = String::new();
        push_id(&mut instance_id, r, "", 32);
        let (a, b, c) = (r.random_range(0..4), r.random_range(0..256), r.random_range(1..255));
        let resource = Resource {
            attributes: vec![
                s("service.name", service.name),
                s("service.namespace", "shop"),
                s("service.version", pick(r, APP_VERSIONS)),
                s("service.instance.id", instance_id),
                s("deployment.environment.name", if r.random_ratio(9, 10) { "production" } else { "staging" }),
                s("host.name", format!("ip-10-{a}-{b}-{c}.{region}.compute.internal")),
                s("cloud.provider", "aws"),
                s("cloud.region", region),
                s("k8s.namespace.name", "shop"),
                s("k8s.pod.name", pod),
                int("process.pid", r.random_range(1..=65_535)),
                s("telemetry.sdk.name", "opentelemetry"),
                s("telemetry.sdk.language", service.language),
                s("telemetry.sdk.version", service.sdk_version),
            ],
            ..Default::default()
        };
        let uptime_ns = r.random_range(60..=30 * 86_400) * 1_000_000_000;
        Instance { origin: Origin { service, started_ns: self.now_ns.saturating_sub(uptime_ns) }, resource }
    }

    pub(super) fn call(&mut self, svc: &'static Service) -> Call {
        let ep = &svc.endpoints[self.rng.random_range(0..svc.endpoints.len())];
        let path = match ep.id {
            Some("usr_") => format!("{}{}", &ep.route[..=ep.route.rfind('/').unwrap_or(0)], self.user()),
            Some(prefix) => format!("{}{}", &ep.route[..=ep.route.rfind('/').unwrap_or(0)], self.id(prefix, 10)),
            None => ep.route.to_owned(),
        };
        let status = status_code(&mut self.rng, ep.method);
        let ms = latency(&mut self.rng, ep.ms) * if status >= 500 { 3.0 } else { 1.0 };
        let user = self.rng.random_ratio(7, 10).then(|| self.user());
        let r = &mut self.rng;
        let client = format!("10.{}.{}.{}", r.random_range(0..4), r.random_range(0..256), r.random_range(1..255));
        Call { ep, path, status, ms, user, client, agent: pick(r, USER_AGENTS) }
    }
}
