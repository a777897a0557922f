//! The files of a recording on disk: [`FileWriter`] carries out a [`Recorder`]'s outputs,
//! and the server runs one on a thread of its own ([`WriterThread`]) so that a slow disk
//! never delays forwarding.
//!
//! Each fragment is written whole with one `write` and no `fsync`: what a process killed
//! had written is in the operating system's cache and reaches the disk; a power cut may
//! lose what the disk had not taken yet.
//!
//! [`Recorder`]: super::Recorder

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{FileId, RecordOutput, mp4};

struct Open {
    file: File,
    path: PathBuf,
    /// Where the init segment's duration lies.
    duration_at: Option<usize>,
}

/// Writes a recorder's files, one `write` per fragment, no `fsync`: what a killed process
/// wrote reaches the disk; a power cut may lose what the disk had not taken.
#[derive(Default)]
pub struct FileWriter {
    files: HashMap<FileId, Open>,
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWriter")
            .field("open", &self.files.len())
            .finish()
    }
}

impl FileWriter {
    /// No files open.
    pub fn new() -> Self {
        Self::default()
    }

    /// Carries out one output; returns the path of a file it opened or closed. A file that
    /// could not be opened takes no appends (the error is returned once, at its opening).
    pub fn apply(&mut self, output: RecordOutput) -> std::io::Result<Option<PathBuf>> {
        match output {
            RecordOutput::Open { file, path, init } => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let (mut handle, path) = create_new(&path)?;
                handle.write_all(&init)?;
                self.files.insert(
                    file,
                    Open {
                        file: handle,
                        path: path.clone(),
                        duration_at: mp4::duration_offset(&init),
                    },
                );
                Ok(Some(path))
            }
            RecordOutput::Append { file, bytes } => {
                if let Some(open) = self.files.get_mut(&file)
                    && let Err(e) = open.file.write_all(&bytes)
                {
                    let path = open.path.clone();
                    self.files.remove(&file);
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", path.display()),
                    ));
                }
                Ok(None)
            }
            RecordOutput::Close { file, duration_ms } => {
                let Some(mut open) = self.files.remove(&file) else {
                    return Ok(None);
                };
                if let Some(at) = open.duration_at {
                    open.file.seek(SeekFrom::Start(at as u64))?;
                    open.file.write_all(&duration_ms.to_be_bytes())?;
                }
                open.file.flush()?;
                Ok(Some(open.path))
            }
        }
    }
}

/// Creates `path`, or if it exists `stem-2.ext`, `stem-3.ext`, …: a recording never
/// overwrites another.
fn create_new(path: &Path) -> std::io::Result<(File, PathBuf)> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let mut candidate = path.to_path_buf();
    for n in 2..1000 {
        match File::options()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(f) => return Ok((f, candidate)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                candidate = path.with_file_name(format!("{stem}-{n}{ext}"));
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", candidate.display()),
                ));
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("{}: 999 files of that name exist", path.display()),
    ))
}

/// Outputs the writer thread may have waiting: a disk slower than the recordings fills it,
/// and then outputs are dropped (counted, logged) rather than held without bound or the
/// server stopped. At 2 s fragments this is minutes of a room of twenty.
pub const WRITER_QUEUE: usize = 4096;

/// A [`FileWriter`] on a thread of its own: outputs are queued to it (at most
/// [`WRITER_QUEUE`]); dropping it (or [`finish`](Self::finish)) writes what is queued and
/// closes the files.
#[derive(Debug)]
pub struct WriterThread {
    queue: Option<std::sync::mpsc::SyncSender<RecordOutput>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dropped: u64,
}

impl WriterThread {
    /// Starts the thread.
    pub fn spawn() -> std::io::Result<Self> {
        let (queue, outputs) = std::sync::mpsc::sync_channel::<RecordOutput>(WRITER_QUEUE);
        let thread = std::thread::Builder::new()
            .name("madang-record".into())
            .spawn(move || {
                let mut writer = FileWriter::new();
                for output in outputs {
                    let opening = matches!(output, RecordOutput::Open { .. });
                    match writer.apply(output) {
                        Ok(Some(path)) if opening => {
                            tracing::info!("recording to {}", path.display())
                        }
                        Ok(Some(path)) => tracing::info!("recorded {}", path.display()),
                        Ok(None) => {}
                        Err(e) => tracing::warn!("recording: {e}"),
                    }
                }
            })?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
            dropped: 0,
        })
    }

    /// Queues an output; a full queue drops it (the disk does not keep up).
    pub fn send(&mut self, output: RecordOutput) {
        let Some(q) = &self.queue else {
            return;
        };
        if let Err(std::sync::mpsc::TrySendError::Full(_)) = q.try_send(output) {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    "recording: the disk does not keep up, {} outputs dropped",
                    self.dropped
                );
            }
        }
    }

    /// Outputs dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Writes what is queued, closes the files and ends the thread.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        self.stop();
    }
}
