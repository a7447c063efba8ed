//! `[sources.http.tls]` and `[admin.tls]`: HTTP ingest and the admin API
//! over HTTPS, driven by curl with the test CA. A plaintext request to an
//! HTTPS port gets no answer and stores nothing. The CLI's admin commands
//! and `bench http` speak HTTPS with the global `--ca-file`, and refuse a
//! server whose CA they were not given.

use crate::common::admin::{ADMIN_EMAIL, admin_section};
use crate::common::{BIN, Daemon, create_key, export};
use crate::tls_support::Certs;

use std::path::Path;
use std::process::{Command, Output};

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

/// `sluice args…` with `env` added and `stdin`.
fn sluice(args: &[&str], env: &[(&str, &Path)], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_CA_FILE")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sluice");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_cli_and_bench_http_speak_https_with_a_ca_file_and_refuse_an_unknown_ca() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = create_key(&data, 1).1;
    let certs = Certs::new(&dir.path().join("tls"), "sluice test CA");
    let other = Certs::new(&dir.path().join("other"), "another CA");
    let d = Daemon::start(
        &data,
        &format!(
            "[sources.http]\naddress = \"127.0.0.1:0\"\n{table}\n[sources.http.rate_limit]\nper = \"off\"\n{admin}{table}\n",
            table = certs.table(),
            admin = admin_section("")
        ),
    );
    let (http, admin) = (d.http.expect("http"), d.admin.expect("admin"));
    let url = format!("https://{admin}");
    let creds = dir.path().join("credentials.json");
    let env = [("SLUICE_CREDENTIALS", creds.as_path())];

    // Without the CA (Mozilla's roots only) and with another CA: refused.
    for ca in [None, Some(other.ca.as_path())] {
        let mut args = vec!["status", "--server", &url];
        let ca_arg;
        if let Some(ca) = ca {
            ca_arg = ca.to_str().unwrap().to_owned();
            args.splice(0..0, ["--ca-file", ca_arg.as_str()]);
        }
        let out = sluice(&args, &env, "");
        assert!(!out.status.success(), "{}", text(&out));
        assert!(text(&out).contains("cannot reach"), "{}", text(&out));
    }
    // With it: setup (a POST), authenticated GETs, and later the streaming export.
    let ca = certs.ca.to_str().unwrap();
    let out = sluice(
        &["--ca-file", ca, "setup", "--server", &url, "--email", ADMIN_EMAIL, "--password-stdin"],
        &env,
        "first password\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let env_ca = [("SLUICE_CREDENTIALS", creds.as_path()), ("SLUICE_CA_FILE", certs.ca.as_path())];
    let out = sluice(&["apikeys", "list", "--server", &url, "--json"], &env_ca, "");
    assert!(out.status.success() && text(&out).contains("\"workspace\""), "{}", text(&out));
    let out = sluice(&["status", "--server", &url, "--json"], &env_ca, "");
    assert!(out.status.success() && text(&out).contains(&url), "{}", text(&out));

    let bench = |ca: &str| {
        let addr = http.to_string();
        let args = ["--ca-file", ca, "bench", "http", "--addr", &addr, "--key", &key, "--connections", "2"];
        sluice(&[&args[..], &["--batch-size", "20", "--duration", "1", "--server-name", "localhost"]].concat(), &[], "")
    };
    let out = bench(ca);
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    let sent = line["events"].as_u64().unwrap_or(0);
    assert!(out.status.success() && sent > 0, "{}", text(&out));
    assert!(!bench(other.ca.to_str().unwrap()).status.success());
    let out = sluice(&["export", "--server", &url], &env_ca, "");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count() as u64, sent, "the export streams over HTTPS");

    assert!(d.stop().success());
    assert_eq!(export(&data).len() as u64, sent, "every acknowledged request is stored");
}
