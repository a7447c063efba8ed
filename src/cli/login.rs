//! `sluice setup`, `sluice login` and `sluice logout` through the admin API.

use anyhow::Context as _;
use serde_json::{Value, json};

use super::credentials::ServerArg;
use super::credentials::{self, Credentials};
use super::http::ApiClient;
use super::prompt;

/// `sluice login` and `sluice setup`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub server: ServerArg,
    /// The user's email (asked for when missing).
    #[arg(long)]
    pub email: Option<String>,
    /// Read the password from the first line of stdin instead of the terminal.
    #[arg(long)]
    pub password_stdin: bool,
    /// Work in this workspace (default: the user's first).
    #[arg(long)]
    pub workspace: Option<u32>,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `sluice logout`.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// Print one JSON line {"server","logged_out"} instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `sluice setup`.
#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    #[command(flatten)]
    pub login: LoginArgs,
    /// The one-time setup token from DATA_DIR/setup-token (needed from another host).
    #[arg(long, env = "SLUICE_SETUP_TOKEN")]
    pub setup_token: Option<String>,
}

/// `sluice login`: asks for the password, stores the token.
pub fn login(args: &LoginArgs) -> anyhow::Result<()> {
    let server = credentials::server_url(args.server.server.as_deref())?;
    let email = prompt::email(args.email.as_deref())?;
    let password = prompt::password(args.password_stdin, "Password: ")?;
    let api = ApiClient::new(&server);
    let mut body = json!({"email": email, "password": password});
    if let Some(w) = args.workspace {
        body["workspace"] = json!(w);
    }
    let v = api.post("/api/v1/auth/login", None, &body)?.ok()?;
    let saved = store(&api, &v)?;
    if args.json {
        let line = json!({"server": api.base(), "email": email, "workspace": v["workspace"],
                          "expires_at": v["expires_at"], "token_store": saved.store()});
        println!("{line}");
    } else {
        println!("Logged in to {} as {} (workspace {}).", api.base(), email, v["workspace"]);
    }
    eprintln!("{saved}");
    Ok(())
}

/// `sluice setup`: creates the first admin, prints the first streaming key.
pub fn setup(setup: &SetupArgs) -> anyhow::Result<()> {
    let (args, setup_token) = (&setup.login, setup.setup_token.as_deref());
    let server = credentials::server_url(args.server.server.as_deref())?;
    let email = prompt::email(args.email.as_deref())?;
    let password = prompt::password(args.password_stdin, "New admin password (8+ characters): ")?;
    let api = ApiClient::new(&server);
    let mut body = json!({"email": email, "password": password});
    if let Some(t) = setup_token {
        body["setup_token"] = json!(t);
    }
    let v = api.post("/api/v1/auth/setup", None, &body)?.ok()?;
    let saved = store(&api, &v)?;
    let key = v["streaming_key"].as_str().context("the server sent no streaming key")?;
    if args.json {
        let line = json!({"server": api.base(), "email": email, "workspace": v["workspace"],
                          "streaming_key": key, "token_store": saved.store()});
        println!("{line}");
    } else {
        println!("Created admin {email} on {}.", api.base());
        println!("First streaming key (workspace {}):\n\n{key}\n", v["workspace"]);
        println!("Store it now: it will not be shown again.");
    }
    eprintln!("{saved}");
    Ok(())
}

/// `sluice logout`: ends every session of the user on the server, forgets the token.
pub fn logout(args: &LogoutArgs) -> anyhow::Result<()> {
    let Some(stored) = credentials::stored()? else {
        if args.json {
            println!("{}", json!({"server": null, "logged_out": false}));
        } else {
            println!("Not logged in.");
        }
        return Ok(());
    };
    // A token the keyring no longer gives cannot end the sessions; the login is forgotten still.
    match stored.fetch_token() {
        Ok(token) => match ApiClient::new(&stored.server).post("/api/v1/auth/logout", Some(&token), &json!({})) {
            Ok(r) if r.status == 204 || r.status == 401 => {}
            Ok(r) => eprintln!("warning: the server answered {}: {}", r.status, r.body),
            Err(e) => eprintln!("warning: {e:#}; forgetting the token anyway"),
        },
        Err(e) => eprintln!("warning: {e:#}; the sessions on the server were not ended"),
    }
    credentials::remove()?;
    if args.json {
        println!("{}", json!({"server": stored.server, "logged_out": true}));
    } else {
        println!("Logged out of {}.", stored.server);
    }
    Ok(())
}

fn store(api: &ApiClient, v: &Value) -> anyhow::Result<credentials::Saved> {
    credentials::save(&Credentials {
        server: api.base().to_owned(),
        token: v["token"].as_str().context("the server sent no token")?.to_owned(),
        email: v["user"]["email"].as_str().unwrap_or_default().to_owned(),
        expires_at: v["expires_at"].as_u64().unwrap_or(0),
    })
}
