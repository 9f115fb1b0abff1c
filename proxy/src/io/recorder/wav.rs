//! The `wav` sink's files: a stereo 8 kHz 16-bit WAV streamed to a temporary file while the
//! call goes on, optionally age-encrypted, made final (fsync + rename) when the call ends.
//!
//! Plain: `.NAME.wav.partial` gets a placeholder header, then the interleaved samples as they
//! are released; at the end the RIFF and data sizes are patched in place, the file is fsynced
//! and renamed to `NAME.wav`.
//!
//! Encrypted (`encrypt_to` non-empty): the plaintext never touches the disk. An age header
//! must precede the WAV header, whose sizes are only known at the end, so while the call goes
//! on the samples are streamed through an age encryptor into `.NAME.wav.age.stage`, encrypted
//! to a one-off X25519 key that exists only in this process's memory. At the end the stage is
//! decrypted in memory, chunk by chunk, and re-encrypted to the configured recipients behind
//! a WAV header with the right sizes into `.NAME.wav.age.partial`, which is fsynced and renamed
//! to `NAME.wav.age`. Memory stays bounded (age works in 64 KiB chunks), and the result
//! decrypts (`age -d -i key.txt NAME.wav.age > NAME.wav`) to exactly the bytes of the
//! unencrypted recording. The JSON sidecar is small and is encrypted in memory.
//!
//! Any temporary file is removed when the recording fails or is dropped unfinished, so a
//! failed recording never leaves a partial file behind.
//!
//! [`WavSink`] is the sink: one such file per call in its directory, written from the
//! recorder's aligned stereo stream, made final with the call's sidecar on a blocking thread.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use age::x25519;
use tokio::task::JoinHandle;

use super::sink::{CallEnd, CallStart, RecorderSink};
use super::{retention, RATE};
use crate::core::proxy::CallRef;
use crate::metrics::{Label, Metrics, SinkKind};

/// WAV header size (RIFF + fmt + data chunk headers).
pub(super) const HEADER_LEN: usize = 44;

/// The header of an 8 kHz 16-bit stereo PCM WAV with `data_len` bytes of samples.
pub(super) fn header(data_len: u64) -> [u8; HEADER_LEN] {
    let data = u32::try_from(data_len).unwrap_or(u32::MAX - 36);
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&data.saturating_add(36).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&2u16.to_le_bytes()); // channels
    h[24..28].copy_from_slice(&RATE.hz().to_le_bytes());
    h[28..32].copy_from_slice(&(RATE.hz() * 4).to_le_bytes()); // byte rate
    h[32..34].copy_from_slice(&4u16.to_le_bytes()); // block align
    h[34..36].copy_from_slice(&16u16.to_le_bytes()); // bits per sample
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

/// A temporary file that is removed on drop unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn new(path: PathBuf) -> Self {
        TempFile { path, armed: true }
    }

    /// fsync'd `file` at this path becomes `to`.
    fn persist(mut self, file: File, to: &Path) -> io::Result<()> {
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.path, to)?;
        self.armed = false;
        if let Some(dir) = to.parent() {
            // Make the rename itself durable (best effort: not every filesystem allows it).
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Output buffer per file: one write system call per ~0.5 s of stereo audio (32 KB/s). It is
/// held for the whole call, so it is most of a recording call's memory: 16 KiB keeps a
/// thousand calls' buffers at 16 MiB for ~2,000 writes/s on the recorder thread (64 KiB
/// would be 64 MiB for 500 writes/s).
const BUF: usize = 16 * 1024;

enum Body {
    Plain {
        file: BufWriter<File>,
    },
    Encrypted {
        stage: age::stream::StreamWriter<BufWriter<File>>,
        /// The one-off key of the stage file (memory only).
        key: x25519::Identity,
        recipients: Vec<x25519::Recipient>,
    },
}

/// One call's recording in one directory, being written.
pub(super) struct WavFile {
    body: Body,
    temp: TempFile,
    final_path: PathBuf,
    data_len: u64,
}

/// Final name of the recording `name` in `dir`.
pub(super) fn final_path(dir: &Path, name: &str, encrypted: bool) -> PathBuf {
    dir.join(if encrypted {
        format!("{name}.wav.age")
    } else {
        format!("{name}.wav")
    })
}

impl WavFile {
    /// Start the recording `name` in `dir` (created if missing); encrypted when `recipients`
    /// is non-empty.
    pub(super) fn create(
        dir: &Path,
        name: &str,
        recipients: &[x25519::Recipient],
    ) -> io::Result<WavFile> {
        std::fs::create_dir_all(dir)?;
        let final_path = final_path(dir, name, !recipients.is_empty());
        if recipients.is_empty() {
            let temp = TempFile::new(dir.join(format!(".{name}.wav.partial")));
            let mut file = BufWriter::with_capacity(BUF, File::create(&temp.path)?);
            file.write_all(&header(0))?;
            Ok(WavFile {
                body: Body::Plain { file },
                temp,
                final_path,
                data_len: 0,
            })
        } else {
            let temp = TempFile::new(dir.join(format!(".{name}.wav.age.stage")));
            let key = x25519::Identity::generate();
            let file = BufWriter::with_capacity(BUF, File::create(&temp.path)?);
            let stage = encryptor(&[key.to_public()])?.wrap_output(file)?;
            Ok(WavFile {
                body: Body::Encrypted {
                    stage,
                    key,
                    recipients: recipients.to_vec(),
                },
                temp,
                final_path,
                data_len: 0,
            })
        }
    }

    /// Append interleaved sample bytes.
    pub(super) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.body {
            Body::Plain { file } => file.write_all(bytes)?,
            Body::Encrypted { stage, .. } => stage.write_all(bytes)?,
        }
        self.data_len += bytes.len() as u64;
        Ok(())
    }

    /// Make the recording final; returns its path and size on disk.
    pub(super) fn finish(self) -> io::Result<(PathBuf, u64)> {
        let WavFile {
            body,
            temp,
            final_path,
            data_len,
        } = self;
        match body {
            Body::Plain { file } => {
                let mut file = file.into_inner().map_err(|e| e.into_error())?;
                file.seek(SeekFrom::Start(0))?;
                file.write_all(&header(data_len))?;
                let size = file.seek(SeekFrom::End(0))?;
                temp.persist(file, &final_path)?;
                Ok((final_path, size))
            }
            Body::Encrypted {
                stage,
                key,
                recipients,
            } => {
                let mut staged = stage.finish()?;
                staged.flush()?;
                drop(staged);
                let dir = final_path
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                let name = final_path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let out_temp = TempFile::new(dir.join(format!(".{name}.partial")));
                let reader = BufReader::with_capacity(BUF, File::open(&temp.path)?);
                let mut plain = age::Decryptor::new_buffered(reader)
                    .and_then(|d| d.decrypt(std::iter::once(&key as &dyn age::Identity)))
                    .map_err(io::Error::other)?;
                let out = BufWriter::with_capacity(BUF, File::create(&out_temp.path)?);
                let mut w = encryptor(&recipients)?.wrap_output(out)?;
                w.write_all(&header(data_len))?;
                let copied = io::copy(&mut plain, &mut w)?;
                if copied != data_len {
                    return Err(io::Error::other("the staged recording is truncated"));
                }
                // Nothing must follow the stream.
                if plain.read(&mut [0u8; 1])? != 0 {
                    return Err(io::Error::other("the staged recording is too long"));
                }
                let file = w.finish()?.into_inner().map_err(|e| e.into_error())?;
                let size = file.metadata()?.len();
                out_temp.persist(file, &final_path)?;
                drop(temp); // removes the stage
                Ok((final_path, size))
            }
        }
    }
}

fn encryptor(recipients: &[x25519::Recipient]) -> io::Result<age::Encryptor> {
    age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
        .map_err(io::Error::other)
}

/// `bytes` encrypted in memory to `recipients`.
pub(super) fn encrypt(bytes: &[u8], recipients: &[x25519::Recipient]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() + 256);
    let mut w = encryptor(recipients)?.wrap_output(&mut out)?;
    w.write_all(bytes)?;
    w.finish()?;
    Ok(out)
}

/// Write `bytes` to `path` atomically: temporary name, fsync, rename (temporary removed on
/// failure).
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = TempFile::new(dir.join(format!(".{name}.partial")));
    let mut file = File::create(&temp.path)?;
    file.write_all(bytes)?;
    temp.persist(file, path)
}

/// A configured `wav` sink: per call, one stereo WAV and its JSON sidecar in `dir`.
pub(super) struct WavSink {
    dir: PathBuf,
    recipients: Vec<x25519::Recipient>,
    /// `encrypt_to` named a recipient that is not a usable X25519 key: record nothing (never
    /// plaintext), count an error per call.
    broken: bool,
    retention_days: Option<u16>,
    /// `hash_numbers` (default true): the sidecar carries keyed hashes, not numbers.
    hash_numbers: bool,
    metrics: Arc<Metrics>,
    /// Per call its file; `None` once it failed (the failure was counted and logged).
    calls: HashMap<CallRef, Option<WavFile>>,
    sweeper: Option<JoinHandle<()>>,
}

impl WavSink {
    /// The sink `cfg` describes (an unusable `encrypt_to` is logged here; the sink then
    /// writes nothing).
    pub(super) fn new(cfg: &config::WavRecorder, metrics: Arc<Metrics>) -> Self {
        let (recipients, broken) = age_recipients(&cfg.encrypt_to, &cfg.dir, "wav");
        WavSink {
            dir: cfg.dir.clone(),
            recipients,
            broken,
            retention_days: cfg.retention_days.map(|d| d.get()),
            hash_numbers: cfg.hash_numbers,
            metrics,
            calls: HashMap::new(),
            sweeper: None,
        }
    }
}

impl RecorderSink for WavSink {
    fn kind(&self) -> SinkKind {
        SinkKind::Wav
    }

    /// The retention sweeper, with `retention_days`.
    fn activate(&mut self, _: usize, _: &tokio::sync::mpsc::Sender<super::sink::Datagram>) -> bool {
        if let Some(days) = self.retention_days {
            self.sweeper = Some(tokio::spawn(retention::sweeper(
                self.dir.clone(),
                days,
                self.metrics.clone(),
            )));
        }
        false
    }

    fn deactivate(&mut self) {
        if let Some(h) = self.sweeper.take() {
            h.abort();
        }
    }

    fn start(&mut self, call: CallRef, start: &CallStart<'_>) {
        self.metrics
            .recorder()
            .recorder_session_opened(SinkKind::Wav);
        let file = if self.broken {
            self.metrics.recorder().recorder_error(SinkKind::Wav);
            None
        } else {
            match WavFile::create(&self.dir, start.name, &self.recipients) {
                Ok(w) => Some(w),
                Err(e) => {
                    write_failure(&self.metrics, SinkKind::Wav, call, &e);
                    None
                }
            }
        };
        self.calls.insert(call, file);
    }

    fn stereo(&mut self, call: CallRef, bytes: &[u8]) {
        if let Some(slot) = self.calls.get_mut(&call) {
            write_wav(slot, bytes, &self.metrics, SinkKind::Wav, call);
        }
    }

    /// The file made final with its sidecar on a blocking thread; a call without media drops
    /// its file (no empty recording is left behind).
    fn finish(&mut self, call: CallRef, end: &CallEnd<'_>) -> Option<JoinHandle<()>> {
        let file = self.calls.remove(&call)?;
        let metrics = self.metrics.clone();
        let Some(w) = file.filter(|_| end.had_media) else {
            metrics.recorder().recorder_session_closed(SinkKind::Wav);
            return None;
        };
        let (dir, recipients, name) = (
            self.dir.clone(),
            self.recipients.clone(),
            end.name.to_owned(),
        );
        let json = end.sidecar.json(self.hash_numbers).to_vec();
        Some(tokio::task::spawn_blocking(move || {
            match finish_one(w, &dir, &name, &recipients, &json) {
                Ok((path, bytes)) => {
                    metrics
                        .recorder()
                        .recorder_bytes(SinkKind::Wav)
                        .inc_by(bytes);
                    metrics.recorder().set_recorder_disk_full(false);
                    tracing::info!(call = call.0, path = %path.display(), "recording written");
                }
                Err(e) => write_failure(&metrics, SinkKind::Wav, call, &e),
            }
            metrics.recorder().recorder_session_closed(SinkKind::Wav);
        }))
    }

    fn calls(&self) -> usize {
        self.calls.len()
    }
}

/// The `encrypt_to` recipients of a sink writing to `dir`; `broken` when one is not a usable
/// X25519 key: that sink then writes nothing (never plaintext), which is logged here.
pub(super) fn age_recipients(
    list: &[config::types::AgeRecipient],
    dir: &Path,
    sink: &str,
) -> (Vec<x25519::Recipient>, bool) {
    let parsed: Result<Vec<x25519::Recipient>, _> = list
        .iter()
        .map(|r| r.as_str().parse::<x25519::Recipient>())
        .collect();
    match parsed {
        Ok(v) => (v, false),
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, sink, "recorder: an encrypt_to recipient is unusable; no file will be written there");
            (Vec::new(), true)
        }
    }
}

/// Appends `bytes` to the WAV in `slot` (the `wav` sink's files, the `siprec` sink's local
/// fallback): the one place a failed write drops the file, is counted against `sink` and
/// logged.
pub(super) fn write_wav(
    slot: &mut Option<WavFile>,
    bytes: &[u8],
    metrics: &Metrics,
    sink: SinkKind,
    call: CallRef,
) {
    if let Some(w) = slot {
        if let Err(e) = w.write(bytes) {
            *slot = None;
            write_failure(metrics, sink, call, &e);
        }
    }
}

/// A recording of `sink` abandoned for a failed write: counted, the disk-full alarm raised on
/// ENOSPC, logged once.
pub(super) fn write_failure(metrics: &Metrics, sink: SinkKind, call: CallRef, e: &io::Error) {
    metrics.recorder().recorder_error(sink);
    let full = e.kind() == io::ErrorKind::StorageFull;
    if full {
        metrics.recorder().set_recorder_disk_full(true);
    }
    tracing::error!(call = call.0, sink = sink.as_str(), error = %e, disk_full = full, "recording abandoned: write failed (no partial file kept; proxying goes on)");
}

/// Make one WAV final and write its sidecar (both encrypted when there are recipients).
pub(super) fn finish_one(
    w: WavFile,
    dir: &Path,
    name: &str,
    recipients: &[x25519::Recipient],
    json: &[u8],
) -> io::Result<(PathBuf, u64)> {
    let (path, size) = w.finish()?;
    let written = if recipients.is_empty() {
        write_atomic(&dir.join(format!("{name}.json")), json).map(|()| json.len())
    } else {
        encrypt(json, recipients).and_then(|ct| {
            write_atomic(&dir.join(format!("{name}.json.age")), &ct).map(|()| ct.len())
        })
    };
    match written {
        Ok(n) => Ok((path, size + n as u64)),
        Err(e) => {
            // A recording without its sidecar is still a recording: keep it, report the error.
            tracing::warn!(path = %path.display(), "sidecar not written");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "callmask-wav-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&d).expect("tmp");
        d
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn plain_streaming_patches_the_header() {
        let dir = tmpdir("plain");
        let mut w = WavFile::create(&dir, "r", &[]).expect("create");
        w.write(&[1, 0, 2, 0]).expect("write");
        w.write(&[3, 0, 4, 0]).expect("write");
        assert_eq!(files(&dir), [".r.wav.partial"]);
        let (p, size) = w.finish().expect("finish");
        assert_eq!(files(&dir), ["r.wav"]);
        let bytes = std::fs::read(p).expect("read");
        assert_eq!(size, 52);
        assert_eq!(&bytes[..44], &header(8));
        assert_eq!(&bytes[44..], &[1, 0, 2, 0, 3, 0, 4, 0]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn encrypted_streaming_decrypts_to_the_plain_bytes_and_leaves_no_stage() {
        let dir = tmpdir("enc");
        let id = x25519::Identity::generate();
        let mut w = WavFile::create(&dir, "r", &[id.to_public()]).expect("create");
        let samples: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        for c in samples.chunks(640) {
            w.write(c).expect("write");
        }
        // The stage on disk is age ciphertext, never the WAV.
        let stage = std::fs::read(dir.join(".r.wav.age.stage")).expect("stage");
        assert!(stage.is_empty() || stage.starts_with(b"age-encryption.org/v1"));
        let (p, _) = w.finish().expect("finish");
        assert_eq!(files(&dir), ["r.wav.age"]);
        let ct = std::fs::read(p).expect("read");
        let pt = age::decrypt(&id, &ct).expect("decrypt");
        assert_eq!(&pt[..44], &header(samples.len() as u64));
        assert_eq!(&pt[44..], &samples[..]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn dropping_unfinished_removes_the_temp() {
        let dir = tmpdir("drop");
        let mut w = WavFile::create(&dir, "r", &[]).expect("create");
        w.write(&[0; 400]).expect("write");
        drop(w);
        assert!(files(&dir).is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn enospc_sets_the_alarm_and_counts() {
        let m = Metrics::new();
        let e = io::Error::from_raw_os_error(28); // ENOSPC
        write_failure(&m, SinkKind::Wav, CallRef(1), &e);
        let out = m.render();
        assert!(out.contains("callmask_recorder_disk_full 1"), "{out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("callmask_recorder_errors_total{sink=\"wav\"} 1")),
            "{out}"
        );
    }

    #[test]
    fn other_errors_do_not_set_the_alarm() {
        let m = Metrics::new();
        write_failure(&m, SinkKind::Wav, CallRef(1), &io::Error::other("x"));
        assert!(m.render().contains("callmask_recorder_disk_full 0"));
    }
}
