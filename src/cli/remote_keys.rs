//! `sluice apikeys create|list|delete [--server URL]`: streaming keys through
//! the admin API with the stored login (the key is printed once, on create).

use anyhow::anyhow;
use serde_json::json;

use super::ApikeysCommand;
use super::credentials;
use super::http::ApiClient;
use crate::store::control::KeyRecord;

pub fn run(cmd: &ApikeysCommand, server: &str) -> anyhow::Result<()> {
    let api = ApiClient::new(server);
    let token = credentials::token_for(server)?;
    match cmd {
        ApikeysCommand::Create { name, workspace, json, .. } => {
            let v = api.post("/api/v1/apikeys", Some(&token), &json!({"name": name}))?.ok()?;
            if v["workspace"].as_u64() != Some(u64::from(*workspace)) && *workspace != 1 {
                eprintln!("note: keys go to the workspace of your login ({}); log in with --workspace", v["workspace"]);
            }
            if *json {
                let line = json!({"id": v["id"], "key": v["key"], "workspace": v["workspace"], "name": v["name"]});
                println!("{line}");
            } else {
                println!("Created streaming key {} \"{}\" for workspace {}:\n", v["id"], name, v["workspace"]);
                println!("{}\n", v["key"].as_str().unwrap_or_default());
                println!("Store it now: it will not be shown again (sluice keeps only its SHA-256 digest).");
            }
            Ok(())
        }
        ApikeysCommand::List { json, .. } => {
            let v = api.get("/api/v1/apikeys", Some(&token))?.ok()?;
            let keys: Vec<KeyRecord> = serde_json::from_value(v["apikeys"].clone())?;
            if *json {
                for k in &keys {
                    println!("{}", serde_json::to_string(k)?);
                }
                return Ok(());
            }
            super::apikeys::print_table(&keys)
        }
        ApikeysCommand::Delete { id, json, .. } => {
            let r = api.delete(&format!("/api/v1/apikeys/{id}"), Some(&token))?;
            if r.status == 404 {
                return Err(anyhow!("no streaming key with id {id} in your workspace on {server}"));
            }
            r.ok()?;
            if *json {
                println!("{}", json!({"id": id, "deleted": true}));
            } else {
                println!("Deleted streaming key {id}.");
            }
            Ok(())
        }
    }
}
