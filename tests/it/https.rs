//! `[sources.http.tls]` and `[admin.tls]`: HTTP ingest and the admin API
//! over HTTPS, driven by curl with the test CA. A plaintext request to an
//! HTTPS port gets no answer and stores nothing.

use crate::common::{Daemon, create_key, export};
use crate::tls_support::Certs;

use std::process::Command;

/// `curl -sS` with the test CA; status code and body.
fn curl(ca: &std::path::Path, args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .args(args)
        .output()
        .expect("curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_owned(), format!("{body}{}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn curl_posts_events_and_reads_the_admin_api_over_https_and_plaintext_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = create_key(&data, 1).1;
    let certs = Certs::new(&dir.path().join("tls"), "sluice test CA");
    let d = Daemon::start(
        &data,
        &format!(
            "[sources.http]\naddress = \"127.0.0.1:0\"\n{table}\n[admin]\naddress = \"127.0.0.1:0\"\n{table}\n",
            table = certs.table()
        ),
    );
    let (http, admin) = (d.http.expect("http"), d.admin.expect("admin"));

    let url = format!("https://{http}/v1/events");
    let auth = format!("Authorization: Bearer {key}");
    let (code, body) = curl(
        &certs.ca,
        &["-X", "POST", &url, "-H", &auth, "--data-binary", r#"{"event":"Over TLS","marker":"https"}"#],
    );
    assert_eq!(code, "202", "{body}");
    let (code, body) = curl(&certs.ca, &[&format!("https://{admin}/health")]);
    assert_eq!(code, "200", "{body}");

    // Plain HTTP to the HTTPS ports: no HTTP answer.
    for addr in [http, admin] {
        let (code, body) =
            curl(&certs.ca, &["-X", "POST", &format!("http://{addr}/v1/events"), "-H", &auth, "-d", "{}"]);
        assert_eq!(code, "000", "{addr}: {body}");
    }
    let (code, body) = curl(&certs.ca, &[&format!("https://{admin}/metrics")]);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("sluice_tls_handshake_failures_total{listener=\"http\"} 1"), "{body}");
    assert!(body.contains("sluice_tls_handshake_failures_total{listener=\"admin\"} 1"), "{body}");

    assert!(d.stop().success());
    let stored = export(&data);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["payload"]["marker"], "https");
}
