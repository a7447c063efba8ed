//! Certificates made for one test (a CA, a server certificate for
//! `localhost` and 127.0.0.1 that it signed, client certificates it signs),
//! written as PEM files, and a rustls client that trusts a given CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// PEM files in a test's directory.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

/// A client certificate and its key, as PEM files.
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    /// A fresh CA named `name` and a server certificate it signed, in `dir`.
    pub fn new(dir: &Path, name: &str) -> Certs {
        std::fs::create_dir_all(dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let certs = Certs {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            dir: dir.to_path_buf(),
            issuer: ca,
        };
        std::fs::write(&certs.ca, certs.issuer.pem()).unwrap();
        std::fs::write(&certs.cert, cert.pem()).unwrap();
        std::fs::write(&certs.key, key.serialize_pem()).unwrap();
        certs
    }

    /// A client certificate this CA signed, for DNS name `dns` and CN `cn`.
    pub fn client(&self, dns: &str, cn: &str) -> ClientCert {
        self.client_with(dns, cn, |_| {})
    }

    /// [`Self::client`], valid only in 2020.
    pub fn expired_client(&self, dns: &str, cn: &str) -> ClientCert {
        self.client_with(dns, cn, |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 12, 31);
        })
    }

    fn client_with(&self, dns: &str, cn: &str, tweak: impl FnOnce(&mut CertificateParams)) -> ClientCert {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![dns.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        tweak(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let out = ClientCert { cert: self.dir.join(format!("{cn}.pem")), key: self.dir.join(format!("{cn}.key")) };
        std::fs::write(&out.cert, cert.pem()).unwrap();
        std::fs::write(&out.key, key.serialize_pem()).unwrap();
        out
    }

    /// The listener's `tls` table for these files.
    pub fn table(&self) -> String {
        format!("tls = {{ cert = {:?}, key = {:?} }}", self.cert.display().to_string(), self.key.display().to_string())
    }
}

/// Connects to `addr` over TLS, trusting only the CA in `ca` (PEM).
pub async fn connect(addr: std::net::SocketAddr, ca: &Path) -> std::io::Result<TlsStream<TcpStream>> {
    connect_as(addr, ca, None).await
}

/// [`connect`], showing `client` when given.
pub async fn connect_as(
    addr: std::net::SocketAddr,
    ca: &Path,
    client: Option<&ClientCert>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => config.with_no_client_auth(),
        Some(c) => {
            let chain = CertificateDer::pem_file_iter(&c.cert).unwrap().map(Result::unwrap).collect();
            config.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&c.key).unwrap()).unwrap()
        }
    };
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost").unwrap(), tcp).await
}
