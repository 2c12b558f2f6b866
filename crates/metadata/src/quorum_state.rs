//! The quorum-state file: the Raft term (Kafka's leader epoch) this node has seen and whom it voted
//! for in it, which Raft requires to survive a crash before the vote is answered. Like Kafka's
//! `quorum-state` file it is a small JSON document in the metadata directory, replaced atomically
//! (write a temporary file, fsync it, rename it over the old one, fsync the directory).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const QUORUM_STATE_FILE: &str = "quorum-state";

/// The durable vote of this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QuorumState {
    /// The highest epoch (term) this node has seen.
    #[serde(rename = "leaderEpoch")]
    pub epoch: i32,
    /// The candidate this node voted for in `epoch`, -1 for none.
    #[serde(rename = "votedId")]
    pub voted_id: i32,
    /// The leader of `epoch` once it is known to have won (Raft's committed vote), -1 otherwise.
    #[serde(rename = "leaderId")]
    pub leader_id: i32,
    #[serde(rename = "data_version")]
    pub data_version: i32,
}

/// Why the quorum state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum QuorumStateError {
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("quorum state {path} is not valid: {source}")]
    Invalid {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl QuorumState {
    /// A state with no epoch and no vote.
    pub fn initial() -> Self {
        Self {
            epoch: 0,
            voted_id: -1,
            leader_id: -1,
            data_version: 0,
        }
    }

    /// Reads the state in the metadata directory `dir`; a missing file is the initial state.
    pub fn load(dir: &Path) -> Result<Self, QuorumStateError> {
        let path = dir.join(QUORUM_STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| QuorumStateError::Invalid { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::initial()),
            Err(source) => Err(QuorumStateError::Io {
                context: "reading",
                path,
                source,
            }),
        }
    }

    /// Durably replaces the state in `dir`; when this returns the new state survives a crash.
    pub fn store(&self, dir: &Path) -> Result<(), QuorumStateError> {
        let path = dir.join(QUORUM_STATE_FILE);
        let tmp = dir.join(format!("{QUORUM_STATE_FILE}.tmp"));
        let io = |context| {
            let path = path.clone();
            move |source| QuorumStateError::Io {
                context,
                path,
                source,
            }
        };
        let json = serde_json::to_vec(self).map_err(|source| QuorumStateError::Invalid {
            path: path.clone(),
            source,
        })?;
        fs::write(&tmp, json)
            .and_then(|()| fs::File::open(&tmp)?.sync_all())
            .map_err(io("writing"))?;
        fs::rename(&tmp, &path).map_err(io("replacing"))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing the directory of"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_defaults_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            QuorumState::load(dir.path()).unwrap(),
            QuorumState::initial()
        );
        let state = QuorumState {
            epoch: 7,
            voted_id: 2,
            leader_id: 2,
            data_version: 0,
        };
        state.store(dir.path()).unwrap();
        assert_eq!(QuorumState::load(dir.path()).unwrap(), state);
        let text = fs::read_to_string(dir.path().join(QUORUM_STATE_FILE)).unwrap();
        assert!(text.contains("\"leaderEpoch\":7"), "{text}");
    }
}
