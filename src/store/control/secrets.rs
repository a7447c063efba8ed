//! Secrets generated once and kept: the JWT signing key and the one-time
//! setup token.
//!
//! | table     | key            | value          |
//! |-----------|----------------|----------------|
//! | `secrets` | `jwt_secret`   | 32 random bytes |
//! | `secrets` | `setup_token`  | 32 hex chars, present only until setup |

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use super::ControlStore;
use super::users::USERS;
use crate::store::StoreError;

pub(super) const SECRETS: TableDefinition<&str, &[u8]> = TableDefinition::new("secrets");
const JWT_SECRET: &str = "jwt_secret";
pub(super) const SETUP_TOKEN: &str = "setup_token";
const JWT_SECRET_LEN: usize = 32;

impl ControlStore {
    /// The HS256 signing secret, generated on first use.
    pub fn jwt_secret(&self) -> Result<Vec<u8>, StoreError> {
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        let secret = {
            let mut table = tx.open_table(SECRETS).map_err(|e| self.err(e))?;
            let found = table.get(JWT_SECRET).map_err(|e| self.err(e))?.map(|v| v.value().to_vec());
            match found {
                Some(s) => s,
                None => {
                    let mut s = vec![0u8; JWT_SECRET_LEN];
                    rand::Rng::fill(&mut rand::rng(), s.as_mut_slice());
                    table.insert(JWT_SECRET, s.as_slice()).map_err(|e| self.err(e))?;
                    s
                }
            }
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(secret)
    }

    /// The one-time setup token while no user exists (generated on first
    /// use); `None` once setup is done.
    pub fn setup_token(&self) -> Result<Option<String>, StoreError> {
        let tx = self.db()?.begin_write().map_err(|e| self.err(e))?;
        if tx.open_table(USERS).map_err(|e| self.err(e))?.len().map_err(|e| self.err(e))? > 0 {
            return Ok(None);
        }
        let token = {
            let mut table = tx.open_table(SECRETS).map_err(|e| self.err(e))?;
            let found = table.get(SETUP_TOKEN).map_err(|e| self.err(e))?.map(|v| v.value().to_vec());
            match found {
                Some(t) => String::from_utf8_lossy(&t).into_owned(),
                None => {
                    let mut raw = [0u8; 16];
                    rand::Rng::fill(&mut rand::rng(), &mut raw);
                    let t = hex::encode(raw);
                    table.insert(SETUP_TOKEN, t.as_bytes()).map_err(|e| self.err(e))?;
                    t
                }
            }
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Some(token))
    }
}
