//! The renew tokens of the partition locks this gateway holds, kept on local disk next to its
//! write-ahead log. A gateway killed with SIGKILL cannot release its locks; started again on the
//! same data directory it renews them with the remembered tokens and takes its partitions back
//! at once, instead of answering NOT_LEADER_OR_FOLLOWER until they expire.
//!
//! Safe because one process at a time uses a data directory (`WalDir` holds an exclusive lock
//! on it): a remembered token belongs to a predecessor that is gone. The filer accepts a token
//! only while it is the lock's current one, so a lock another gateway took meanwhile is not
//! affected. Writes are not fsynced: a token lost with the machine just means waiting for the
//! expiry, as without this.

use std::path::{Path, PathBuf};

use crate::error::{GatewayError, GatewayResult};

#[derive(Debug)]
pub struct LockTokens {
    dir: PathBuf,
}

/// What was remembered for one lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub filer: String,
    pub token: String,
}

impl LockTokens {
    pub fn open(dir: &Path) -> GatewayResult<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| GatewayError::Wal(format!("creating {}: {e}", dir.display())))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// One file per lock, named by the lock name's bytes in hex (lock names hold slashes).
    fn path(&self, name: &str) -> PathBuf {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        self.dir.join(hex)
    }

    pub fn remembered(&self, name: &str) -> Option<Remembered> {
        let text = std::fs::read_to_string(self.path(name)).ok()?;
        let (filer, token) = text.trim_end().split_once('\n')?;
        (!filer.is_empty() && !token.is_empty()).then(|| Remembered {
            filer: filer.to_string(),
            token: token.to_string(),
        })
    }

    /// Best effort: failing to remember only costs the wait after a SIGKILL.
    pub fn remember(&self, name: &str, filer: &str, token: &str) {
        let path = self.path(name);
        if let Err(e) = std::fs::write(&path, format!("{filer}\n{token}\n")) {
            tracing::debug!(path = %path.display(), error = %e, "remembering a lock's renew token failed");
        }
    }

    pub fn forget(&self, name: &str) {
        let _ = std::fs::remove_file(self.path(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_forgets_and_ignores_torn_files() {
        let dir = std::env::temp_dir().join(format!("kgw-lock-tokens-{}", rand::random::<u64>()));
        let t = LockTokens::open(&dir).unwrap();
        assert_eq!(t.remembered("kafka-gateway/kafka/a/0"), None);
        t.remember("kafka-gateway/kafka/a/0", "127.0.0.1:18888", "tok-1");
        t.remember("kafka-gateway/kafka/a/1", "127.0.0.1:18888", "tok-2");
        t.remember("kafka-gateway/kafka/a/0", "127.0.0.1:18888", "tok-3");
        assert_eq!(
            t.remembered("kafka-gateway/kafka/a/0"),
            Some(Remembered {
                filer: "127.0.0.1:18888".to_string(),
                token: "tok-3".to_string()
            })
        );
        t.forget("kafka-gateway/kafka/a/0");
        assert_eq!(t.remembered("kafka-gateway/kafka/a/0"), None);
        assert_eq!(
            t.remembered("kafka-gateway/kafka/a/1").map(|r| r.token),
            Some("tok-2".to_string())
        );
        // A write cut short (truncated, then killed) reads as nothing remembered.
        std::fs::write(t.path("kafka-gateway/kafka/a/1"), "").unwrap();
        assert_eq!(t.remembered("kafka-gateway/kafka/a/1"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
