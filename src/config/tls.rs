//! The `tls` table of a TCP listener.
//!
//! ```toml
//! [sources.syslog_tls.tls]
//! cert = "/etc/sluice/tls/server.crt"   # PEM: the certificate chain, leaf first
//! key = "/etc/sluice/tls/server.key"    # PEM: PKCS#8, RSA (PKCS#1) or SEC1
//! client_ca = "/etc/sluice/tls/ca.crt"  # optional: require client certificates it signed
//! # syslog and RELP listeners with client_ca: the workspace by the client certificate's
//! # DNS name (subjectAltName) or subject CN; other certificates are refused
//! client_workspaces = { "web-1.example.com" = 3, "db-1.example.com" = 4 }
//! ```
//!
//! The files are read when the listener starts (and by `check-config`),
//! see `net::tls`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// Where a listener's certificate, key and client CA are.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// With it, clients must present a certificate this CA (a PEM bundle)
    /// signed; without it, none is asked for.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Client certificate name (DNS subjectAltName or subject CN) →
    /// workspace, for syslog listeners; needs `client_ca`.
    #[serde(default)]
    pub client_workspaces: BTreeMap<String, u32>,
}
