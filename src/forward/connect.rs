//! Connecting to NATS (the forwarder and `[sources.nats]` alike): the
//! configured credentials and CA, reconnecting for ever, and a first
//! connect that does not wait (ingest never waits for NATS).

use std::time::Duration;

use async_nats::{ConnectOptions, Event, ServerAddr};

use crate::config::NatsAuth;

/// A client that connects (and reconnects) in the background; `name` is
/// what the server shows for the connection.
pub async fn connect(servers: &[String], auth: &NatsAuth, name: &str) -> Result<async_nats::Client, String> {
    let mut opts = match (&auth.creds, &auth.token, &auth.user) {
        (Some(creds), _, _) => ConnectOptions::with_credentials_file(creds)
            .await
            .map_err(|e| format!("cannot read NATS credentials {}: {e}", creds.display()))?,
        (None, Some(token), _) => ConnectOptions::with_token(token.clone()),
        (None, None, Some(user)) => {
            ConnectOptions::with_user_and_password(user.clone(), auth.password.clone().unwrap_or_default())
        }
        (None, None, None) => ConnectOptions::new(),
    };
    if let Some(ca) = &auth.ca_file {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    let label = name.to_string();
    opts = opts
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .event_callback(move |event| {
            let label = label.clone();
            async move {
                match event {
                    Event::Connected => tracing::info!(client = %label, "connected to NATS"),
                    Event::Disconnected => tracing::warn!(client = %label, "disconnected from NATS; reconnecting"),
                    other => tracing::debug!(client = %label, event = %other, "NATS client event"),
                }
            }
        });
    let addrs = servers
        .iter()
        .map(|s| s.parse::<ServerAddr>().map_err(|e| format!("{s:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    opts.connect(addrs).await.map_err(|e| format!("cannot connect to NATS: {e}"))
}
