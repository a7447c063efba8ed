//! TLS for the TCP listeners: a listener's certificate, key and client CA
//! loaded into a rustls server config (the `ring` provider, TLS 1.3 and
//! 1.2: rsyslog's GnuTLS driver in anonymous mode speaks 1.2 only), and
//! the handshake every connection of a TLS listener goes through before the
//! listener's own protocol sees a byte.
//!
//! A handshake has the listener's frame deadline, and a client address may
//! have at most [`HANDSHAKES_PER_ADDRESS`] handshakes in progress at once
//! (more are closed at once, counted as `per_address` cuts), so peers
//! without a certificate or key cannot hold slots or spend the cores on
//! key exchanges. A failed handshake (no TLS, a certificate the client CA
//! did not sign, a timeout) is counted in
//! `sluice_tls_handshake_failures_total` and logged at DEBUG only.
//!
//! With `client_workspaces`, [`Tls::client_workspace`] names the workspace
//! of a session from its verified client certificate: its DNS names
//! (subjectAltName) first, then its subject CNs.
//!
//! [`Tls::reload`] reads the files again (on SIGHUP): new handshakes use the
//! new certificate, sessions already open keep theirs, and files that do
//! not load leave the old certificate in place.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::accept::PerAddress;
use crate::config::TlsConfig;
use crate::metrics::{Cut, SourceMetrics};

/// Handshakes one client address may have in progress on one listener.
pub const HANDSHAKES_PER_ADDRESS: usize = 8;

/// Why a listener's TLS settings cannot be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {what} {path}: {reason}")]
    File { what: &'static str, path: String, reason: String },
    #[error("{what} {path} holds no {expected}")]
    Empty { what: &'static str, path: String, expected: &'static str },
    #[error("the certificate and key do not make a TLS server config: {0}")]
    Config(String),
    #[error("client_workspaces needs client_ca: only verified client certificates can choose a workspace")]
    WorkspacesWithoutCa,
    #[error(
        "client_workspaces is for the syslog and RELP listeners (the others take the workspace from the streaming key)"
    )]
    WorkspacesNotSyslog,
}

/// A listener's TLS: where its files are, the server config made from them
/// last, and its handshakes in progress.
pub struct Tls {
    config: TlsConfig,
    acceptor: RwLock<TlsAcceptor>,
    handshakes: Arc<PerAddress>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the files named in `config` and builds the server config.
    pub fn load(config: &TlsConfig) -> Result<Tls, TlsError> {
        if !config.client_workspaces.is_empty() && config.client_ca.is_none() {
            return Err(TlsError::WorkspacesWithoutCa);
        }
        Ok(Tls {
            acceptor: RwLock::new(TlsAcceptor::from(Arc::new(server_config(config)?))),
            config: config.clone(),
            handshakes: Arc::default(),
        })
    }

    /// Whether clients must show a certificate the client CA signed.
    pub fn verifies_clients(&self) -> bool {
        self.config.client_ca.is_some()
    }

    /// The workspace `client_workspaces` gives a session's client
    /// certificate: `None` without a mapping, `Some(None)` when the
    /// certificate maps to nothing.
    pub fn client_workspace(&self, session: &rustls::ServerConnection) -> Option<Option<u32>> {
        if self.config.client_workspaces.is_empty() {
            return None;
        }
        let cert = session.peer_certificates().and_then(|c| c.first());
        let names = cert.map(|c| certificate_names(c)).unwrap_or_default();
        Some(names.iter().find_map(|n| self.config.client_workspaces.get(n).copied()))
    }

    /// Reads the files again; on success, handshakes from now on use them.
    /// On error nothing changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = TlsAcceptor::from(Arc::new(server_config(&self.config)?));
        *self.acceptor.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// The TLS session over `stream`, or `None` (counted, logged at DEBUG)
    /// when the handshake fails or is not done within `deadline`.
    pub async fn handshake(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        deadline: Duration,
        listener: &str,
        metrics: &SourceMetrics,
    ) -> Option<TlsStream<TcpStream>> {
        let Some(_slot) = self.handshakes.try_take(peer.ip(), HANDSHAKES_PER_ADDRESS) else {
            metrics.cut(Cut::PerAddress);
            tracing::debug!(listener, %peer, "too many TLS handshakes from one address; closed");
            return None;
        };
        let acceptor = self.acceptor.read().unwrap_or_else(|e| e.into_inner()).clone();
        let why = match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => return Some(tls),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("not done in {deadline:?}"),
        };
        metrics.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(listener, %peer, reason = %why, "TLS handshake failed");
        None
    }
}

/// A certificate's DNS subjectAltNames, then its subject CNs (none if it
/// does not parse; rustls has verified it already).
pub fn certificate_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert.as_ref()) else { return Vec::new() };
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    names.extend(cert.subject().iter_common_name().filter_map(|cn| cn.as_str().ok()).map(str::to_owned));
    names
}

/// A client's TLS: the CAs it trusts (a PEM bundle) and the server name it
/// checks the certificate against.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    server_name: rustls::pki_types::ServerName<'static>,
}

impl ClientTls {
    /// Trusts the CAs in `ca_file` for a server named `server_name` (a DNS
    /// name or an IP address, as in its certificate).
    pub fn new(ca_file: &Path, server_name: &str) -> Result<ClientTls, TlsError> {
        let mut roots = RootCertStore::empty();
        for cert in ca_certificates(ca_file)? {
            roots.add(cert).map_err(|e| TlsError::Config(format!("{}: {e}", ca_file.display())))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
            .map_err(|e| TlsError::Config(format!("server name {server_name:?}: {e}")))?;
        Ok(ClientTls { config: Arc::new(config), server_name })
    }

    /// The TLS session over `stream`.
    pub async fn connect(&self, stream: TcpStream) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        tokio_rustls::TlsConnector::from(self.config.clone()).connect(self.server_name.clone(), stream).await
    }

    /// The TLS session over a blocking `stream`, handshake done.
    pub fn connect_blocking(
        &self,
        mut stream: std::net::TcpStream,
    ) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
        let mut session = rustls::ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map_err(std::io::Error::other)?;
        while session.is_handshaking() {
            session.complete_io(&mut stream)?;
        }
        Ok(rustls::StreamOwned::new(session, stream))
    }
}

/// The CA certificates of a PEM bundle, for clients that trust them.
pub fn ca_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certificates(path, "ca_file")
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(config: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let certs = certificates(&config.cert, "cert")?;
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| file_error("key", &config.key, e))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &config.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path, "client_ca")? {
                roots.add(cert).map_err(|e| TlsError::Config(format!("client_ca {}: {e}", path.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| TlsError::Config(e.to_string()))?;
    // No TLS 1.3 session tickets after the handshake: a one-way syslog
    // sender never reads them, and a socket closed with unread data sends
    // a reset, which throws away whatever the server had not read yet.
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// Every certificate of a PEM file, in order; an error when there is none.
fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Empty { what, path: path.display().to_string(), expected: "PEM certificate" });
    }
    Ok(certs)
}

fn file_error(what: &'static str, path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::File { what, path: path.display().to_string(), reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A self-signed certificate and its key, as PEM files in `dir`.
    fn write_pair(dir: &Path) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> TlsConfig {
        TlsConfig {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            client_ca: client_ca.map(Path::to_path_buf),
            client_workspaces: Default::default(),
        }
    }

    #[test]
    fn a_certificate_and_its_key_load_with_or_without_a_client_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path());
        assert!(Tls::load(&config(&cert, &key, None)).is_ok());
        assert!(Tls::load(&config(&cert, &key, Some(&cert))).is_ok());
    }

    #[test]
    fn names_are_the_dns_alt_names_then_the_common_name() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["web-1.example.com".to_string(), "10.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "web-1");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(certificate_names(cert.der()), ["web-1.example.com", "web-1"]);
        assert!(certificate_names(&CertificateDer::from(vec![1, 2, 3])).is_empty());
    }

    #[test]
    fn unusable_files_are_refused_with_what_and_where() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = write_pair(dir.path());
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = write_pair(other.path());
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no PEM here\n").unwrap();
        let missing = dir.path().join("missing.pem");
        let cases = [
            (config(&missing, &key, None), "cannot read cert"),
            (config(&empty, &key, None), "holds no PEM certificate"),
            (config(&cert, &empty, None), "cannot read key"),
            (config(&cert, &cert, None), "cannot read key"),
            (config(&cert, &other_key, None), "do not make a TLS server config"),
            (config(&cert, &key, Some(&empty)), "client_ca"),
            (
                TlsConfig { client_workspaces: [("a".to_string(), 2)].into(), ..config(&cert, &key, None) },
                "client_workspaces needs client_ca",
            ),
        ];
        for (cfg, want) in cases {
            let err = Tls::load(&cfg).map(|_| ()).unwrap_err().to_string();
            assert!(err.contains(want), "{cfg:?}: {err}");
        }
    }
}
