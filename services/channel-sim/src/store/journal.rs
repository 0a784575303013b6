//! The state file: one JSON line per decision, appended before the answer leaves the simulator.
//!
//! Each line goes to the kernel in a single `write(2)`, so a SIGKILLed simulator loses nothing it
//! answered (the page cache outlives the process); there is no fsync, so a power loss may lose the
//! tail, which is acceptable for a test double. A line torn by a crash mid-write is cut off at
//! start-up: its request was never answered.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    path::{Path, PathBuf},
};

use crate::domain::book::Event;

pub struct Journal {
    file: File,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("state file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path}, line {line}: {source}")]
    Corrupt {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

impl Journal {
    /// Opens (or creates) the state file and reads back every decision in it.
    pub fn open(path: &Path) -> Result<(Self, Vec<Event>), JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(io)?;

        // Everything after the last newline is a torn write.
        let complete = text.rfind('\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            tracing::warn!(path = %path.display(), bytes = text.len() - complete, "cutting off a torn last line");
            file.set_len(complete as u64).map_err(io)?;
        }
        let mut events = Vec::new();
        for (i, line) in text[..complete].lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let event = serde_json::from_str(line).map_err(|source| JournalError::Corrupt {
                path: path.to_owned(),
                line: i + 1,
                source,
            })?;
            events.push(event);
        }
        let file = OpenOptions::new().append(true).open(path).map_err(io)?;
        Ok((
            Self {
                file,
                path: path.to_owned(),
            },
            events,
        ))
    }

    /// Appends one decision.
    pub fn append(&mut self, event: &Event) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(event).map_err(|e| JournalError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::domain::book::{ChargeInput, ChargeRecord, Outcome};

    fn event(id: &str) -> Event {
        Event::Charge(ChargeRecord {
            input: ChargeInput {
                channel_id: "wallet".into(),
                request_id: id.into(),
                payment_id: "p".into(),
                amount_minor: 5,
                currency: "CNY".into(),
                method: 5,
                payer_id: "a".into(),
                merchant_id: "b".into(),
            },
            outcome: Outcome::Approved,
            reference: "WALL1".into(),
            decline_code: String::new(),
            decided_at: Utc::now(),
        })
    }

    #[test]
    fn reads_back_what_was_appended_and_cuts_a_torn_tail() {
        let dir = std::env::temp_dir().join(format!("channel-sim-journal-{}", std::process::id()));
        let path = dir.join("state.jsonl");
        let _ = std::fs::remove_file(&path);
        let (mut j, events) = Journal::open(&path).unwrap();
        assert!(events.is_empty());
        j.append(&event("a")).unwrap();
        j.append(&event("b")).unwrap();
        drop(j);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"kind\":\"cha")
            .unwrap();
        let (mut j, events) = Journal::open(&path).unwrap();
        assert_eq!(
            events,
            vec![event_like(&events[0], "a"), event_like(&events[1], "b")]
        );
        j.append(&event("c")).unwrap();
        let (_, events) = Journal::open(&path).unwrap();
        assert_eq!(events.len(), 3);
        std::fs::write(&path, "{not json}\n").unwrap();
        assert!(matches!(
            Journal::open(&path),
            Err(JournalError::Corrupt { line: 1, .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `event(id)` with the timestamp it was written with.
    fn event_like(read: &Event, id: &str) -> Event {
        let Event::Charge(read) = read else {
            panic!("not a charge")
        };
        let Event::Charge(mut e) = event(id) else {
            unreachable!()
        };
        e.decided_at = read.decided_at;
        Event::Charge(e)
    }
}
