//! `--record-dir`: writes what the engine saw each round (format:
//! [`autoscaler_core::recording`]) to rotating JSON Lines files, bounded by
//! `--record-max-bytes` over the whole folder.
//!
//! Files are `recording-NNNNNN.jsonl`; a file is closed once it reaches an eighth of the
//! cap, and the oldest files are deleted while the folder holds more than the cap. A
//! restart continues after the highest number already there, so nothing is overwritten.
//! Each file starts with the header and every definition in use, so it reads alone.

use crate::hpa_watch::HpaWatch;
use autoscaler_core::recording::{Encoder, ObservedHpa, RecordLine};
use autoscaler_core::{ClusterSnapshot, Decision, Event, Timestamp};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Files per cap: a file is rotated at `max_bytes / FILES_PER_CAP`.
const FILES_PER_CAP: u64 = 8;
/// Smallest file before rotation, so a tiny cap still holds whole rounds.
const MIN_FILE_BYTES: u64 = 4096;

/// A recording that cannot be written.
#[derive(Debug, Error)]
pub enum RecordingError {
    /// The folder or a file could not be created, written or removed.
    #[error("--record-dir {path}: {source} (give a writable folder, or drop --record-dir)")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line could not be serialized (a bug).
    #[error("serializing a recording line: {0}")]
    Json(#[from] serde_json::Error),
}

struct OpenFile {
    out: BufWriter<File>,
    path: PathBuf,
    bytes: u64,
}

/// The recorder: one per controller, called once per successful round.
pub struct RecordingWriter {
    dir: PathBuf,
    max_bytes: u64,
    file_max_bytes: u64,
    encoder: Encoder,
    current: Option<OpenFile>,
    /// Closed files, oldest first, with their sizes.
    closed: VecDeque<(PathBuf, u64)>,
    next_seq: u64,
    /// Where each round's HPAs come from (none: the recording holds no HPAs).
    hpas: Option<HpaWatch>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecordingError + '_ {
    move |source| RecordingError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn seq_of(name: &str) -> Option<u64> {
    name.strip_prefix("recording-")?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

impl RecordingWriter {
    /// Opens (creates) `dir`; files of an earlier run there count toward `max_bytes`.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        encoder: Encoder,
    ) -> Result<RecordingWriter, RecordingError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut existing = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            if let Some(seq) = entry.file_name().to_str().and_then(seq_of) {
                let len = entry.metadata().map_err(io(&entry.path()))?.len();
                existing.push((seq, entry.path(), len));
            }
        }
        existing.sort();
        let next_seq = existing.last().map_or(0, |e| e.0 + 1);
        let mut w = RecordingWriter {
            dir: dir.to_path_buf(),
            max_bytes,
            file_max_bytes: (max_bytes / FILES_PER_CAP).max(MIN_FILE_BYTES),
            encoder,
            current: None,
            closed: existing.into_iter().map(|(_, p, l)| (p, l)).collect(),
            next_seq,
            hpas: None,
        };
        w.enforce_cap()?;
        Ok(w)
    }

    /// Records the HPAs this watch sees with every round.
    pub fn with_hpa_watch(mut self, watch: HpaWatch) -> RecordingWriter {
        self.hpas = Some(watch);
        self
    }

    /// The HPAs of the next round, when not taken from a watch (tests, tools).
    pub fn observe_hpas(&mut self, hpas: Vec<ObservedHpa>) {
        self.encoder.observe_hpas(hpas);
    }

    /// Records one round.
    pub fn round(
        &mut self,
        now: Timestamp,
        priorities: Option<&str>,
        snap: &ClusterSnapshot,
        events: &[Event],
        decisions: &[Decision],
    ) -> Result<(), RecordingError> {
        if let Some(w) = &self.hpas {
            self.encoder.observe_hpas(w.observations());
        }
        let lines = self.encoder.round(now, priorities, snap, events, decisions);
        let mut text = Vec::new();
        for l in &lines {
            serde_json::to_writer(&mut text, l)?;
            text.push(b'\n');
        }
        let full = self
            .current
            .as_ref()
            .is_some_and(|f| f.bytes > 0 && f.bytes + text.len() as u64 > self.file_max_bytes);
        if full || self.current.is_none() {
            self.rotate(now)?;
        }
        self.write(&text)?;
        if let Some(f) = &mut self.current {
            f.out.flush().map_err(io(&f.path))?;
        }
        self.enforce_cap()
    }

    /// Bytes in the folder's recording files now.
    pub fn bytes_on_disk(&self) -> u64 {
        self.closed.iter().map(|c| c.1).sum::<u64>() + self.current.as_ref().map_or(0, |f| f.bytes)
    }

    fn write(&mut self, text: &[u8]) -> Result<(), RecordingError> {
        if let Some(f) = &mut self.current {
            f.out.write_all(text).map_err(io(&f.path))?;
            f.bytes += text.len() as u64;
        }
        Ok(())
    }

    fn rotate(&mut self, now: Timestamp) -> Result<(), RecordingError> {
        if let Some(mut f) = self.current.take() {
            f.out.flush().map_err(io(&f.path))?;
            self.closed.push_back((f.path, f.bytes));
        }
        let path = self
            .dir
            .join(format!("recording-{:06}.jsonl", self.next_seq));
        self.next_seq += 1;
        let file = File::create(&path).map_err(io(&path))?;
        self.current = Some(OpenFile {
            out: BufWriter::new(file),
            path,
            bytes: 0,
        });
        let mut text = Vec::new();
        for l in self.encoder.preamble(now) {
            serde_json::to_writer(&mut text, &l)?;
            text.push(b'\n');
        }
        self.write(&text)
    }

    fn enforce_cap(&mut self) -> Result<(), RecordingError> {
        while self.bytes_on_disk() > self.max_bytes {
            let Some((path, _)) = self.closed.pop_front() else {
                break;
            };
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Ok(())
    }
}

/// Reads every line of a recording file (for tests and tools; the simulator has its own
/// reader).
pub fn read_lines(path: &Path) -> Result<Vec<RecordLine>, RecordingError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    text.lines()
        .map(|l| serde_json::from_str(l).map_err(RecordingError::Json))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use autoscaler_core::fixtures::{group, node, pod};
    use autoscaler_core::recording::RECORDING_VERSION;
    use autoscaler_core::{AutoscalerConfig, CapacityType, SnapshotParts};
    use std::collections::BTreeSet;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rec-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// A snapshot whose names, labels and annotations carry markers that must never
    /// reach the recording.
    fn snapshot(pods: usize) -> ClusterSnapshot {
        let g = group("spot", CapacityType::Spot, &["a"], &["m5.large"]);
        let mut n = node("SECRET-node-name", &g, "a", "m5.large", Timestamp::ZERO);
        n.annotations.insert("SECRET-node-ann".into(), "x".into());
        ClusterSnapshot::new(SnapshotParts {
            groups: vec![g],
            nodes: vec![n],
            pods: (0..pods)
                .map(|i| {
                    let mut p = pod(&format!("SECRET-pod-{i}"), "web", 100, 128, None);
                    p.labels.insert("SECRET-label".into(), "v".into());
                    p.annotations
                        .insert("token".into(), "SECRET-annotation-value".into());
                    p.into()
                })
                .collect(),
            ..SnapshotParts::default()
        })
        .unwrap()
    }

    fn files(dir: &Path) -> Vec<(u64, PathBuf)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter_map(|p| Some((seq_of(p.file_name()?.to_str()?)?, p)))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn files_rotate_the_cap_holds_and_each_file_reads_alone() {
        let dir = tmp("rotate");
        let cap = 64 * 1024;
        let enc = Encoder::new(AutoscalerConfig::default(), 10_000, true);
        let mut w = RecordingWriter::open(&dir, cap, enc).unwrap();
        let decision = Decision::ScaleUp {
            group: "spot".into(),
            delta: 1,
            new_target: 1,
            cause: autoscaler_core::ScaleUpCause::PendingPods,
            reason: "SECRET-pod-0 needs a node".into(),
        };
        for round in 0..2000u64 {
            w.round(
                Timestamp::from_secs(round),
                Some("10: ['spot']"),
                &snapshot(1 + (round % 7) as usize),
                &[],
                std::slice::from_ref(&decision),
            )
            .unwrap();
        }
        let on_disk = files(&dir);
        let total: u64 = on_disk
            .iter()
            .map(|(_, p)| std::fs::metadata(p).unwrap().len())
            .sum();
        assert!(total <= cap, "{total} bytes on disk over the {cap} cap");
        assert_eq!(total, w.bytes_on_disk());
        assert!(on_disk.len() >= 4, "rotated: {on_disk:?}");
        assert!(
            on_disk[0].0 > 0,
            "the oldest files were deleted: {on_disk:?}"
        );
        for (_, p) in &on_disk {
            let lines = read_lines(p).unwrap();
            assert!(
                matches!(&lines[0], RecordLine::Header(h) if h.version == RECORDING_VERSION && h.dry_run),
                "{} starts with the header",
                p.display()
            );
            let defined: BTreeSet<u32> = lines
                .iter()
                .filter_map(|l| match l {
                    RecordLine::Workload(d) => Some(d.id),
                    _ => None,
                })
                .collect();
            for l in &lines {
                if let RecordLine::Round(r) = l {
                    assert!(r.workloads.iter().all(|c| defined.contains(&c.id)));
                    assert_eq!(r.decisions[0].kind, "ScaleUp");
                }
            }
            let text = std::fs::read_to_string(p).unwrap();
            assert!(
                !text.contains("SECRET"),
                "names, labels, annotations or reasons leaked into {}",
                p.display()
            );
        }
        // A restart continues after the last file instead of overwriting it.
        let last = on_disk.last().unwrap().0;
        drop(w);
        let enc = Encoder::new(AutoscalerConfig::default(), 10_000, true);
        let mut w = RecordingWriter::open(&dir, cap, enc).unwrap();
        w.round(Timestamp::from_secs(5000), None, &snapshot(1), &[], &[])
            .unwrap();
        assert_eq!(files(&dir).last().unwrap().0, last + 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_folder_is_named_in_the_error() {
        let file = tmp("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let enc = Encoder::new(AutoscalerConfig::default(), 10_000, false);
        let err = RecordingWriter::open(&file.join("sub"), 1 << 20, enc)
            .err()
            .expect("a file is not a folder")
            .to_string();
        assert!(
            err.contains("--record-dir") && err.contains("not-a-dir"),
            "{err}"
        );
        std::fs::remove_file(&file).unwrap();
    }
}
