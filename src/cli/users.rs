//! `sluice users reset-password --data-dir DIR EMAIL`: sets a new password
//! directly in a stopped daemon's control.redb (for a locked-out admin) and
//! ends every session of that user.

use std::path::PathBuf;

use super::prompt;

#[derive(Debug, clap::Subcommand)]
pub enum UsersCommand {
    /// Set a user's password offline (the daemon must be stopped).
    ResetPassword {
        /// Data directory of the stopped daemon.
        #[arg(long, default_value = crate::config::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// Read the new password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// Print one JSON line {"id","email"} instead of text.
        #[arg(long)]
        json: bool,
        email: String,
    },
}

pub fn run(cmd: &UsersCommand) -> anyhow::Result<()> {
    match cmd {
        UsersCommand::ResetPassword { data_dir, password_stdin, json, email } => {
            let password = prompt::password(*password_stdin, "New password (8+ characters): ")?;
            let hash = crate::auth::password::hash_blocking(&password)?;
            let store = super::apikeys::open(data_dir)?;
            let user = store.set_password(email, &hash)?;
            if *json {
                println!("{}", serde_json::json!({"id": user.id, "email": user.email}));
            } else {
                println!("Password of {} (user {}) reset; all of their sessions ended.", user.email, user.id);
            }
            Ok(())
        }
    }
}
