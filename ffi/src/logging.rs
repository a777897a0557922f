//! Log lines for C: madang's (and its WebRTC stack's) log records are formatted into a
//! bounded queue that C reads with `madang_log_pop` on a thread of its choosing; madang never
//! calls into C to log.

use std::collections::VecDeque;
use std::ffi::c_char;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

use crate::{madang_result, write_str};

/// Lines kept when C does not read them; older ones are dropped first.
const CAPACITY: usize = 1024;

/// How much madang logs. The numbers are stable.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum madang_log_level {
    /// Nothing (the default until `madang_log_set_level` is called).
    MADANG_LOG_OFF = 0,
    /// Failures.
    MADANG_LOG_ERROR = 1,
    /// Problems madang recovered from.
    MADANG_LOG_WARN = 2,
    /// Joins, leaves, connection changes.
    MADANG_LOG_INFO = 3,
    /// Detail for debugging.
    MADANG_LOG_DEBUG = 4,
    /// Everything, per packet.
    MADANG_LOG_TRACE = 5,
}

impl madang_log_level {
    fn filter(self) -> LevelFilter {
        match self {
            Self::MADANG_LOG_OFF => LevelFilter::OFF,
            Self::MADANG_LOG_ERROR => LevelFilter::ERROR,
            Self::MADANG_LOG_WARN => LevelFilter::WARN,
            Self::MADANG_LOG_INFO => LevelFilter::INFO,
            Self::MADANG_LOG_DEBUG => LevelFilter::DEBUG,
            Self::MADANG_LOG_TRACE => LevelFilter::TRACE,
        }
    }

    fn of(level: &tracing::Level) -> Self {
        match *level {
            tracing::Level::ERROR => Self::MADANG_LOG_ERROR,
            tracing::Level::WARN => Self::MADANG_LOG_WARN,
            tracing::Level::INFO => Self::MADANG_LOG_INFO,
            tracing::Level::DEBUG => Self::MADANG_LOG_DEBUG,
            tracing::Level::TRACE => Self::MADANG_LOG_TRACE,
        }
    }

    fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::MADANG_LOG_OFF,
            1 => Self::MADANG_LOG_ERROR,
            2 => Self::MADANG_LOG_WARN,
            3 => Self::MADANG_LOG_INFO,
            4 => Self::MADANG_LOG_DEBUG,
            5 => Self::MADANG_LOG_TRACE,
            _ => return None,
        })
    }
}

/// The queue C reads, with the count of lines dropped since the last read.
#[derive(Default)]
struct Queue {
    lines: VecDeque<(madang_log_level, String)>,
    dropped: u64,
}

fn queue() -> &'static Mutex<Queue> {
    static QUEUE: OnceLock<Mutex<Queue>> = OnceLock::new();
    QUEUE.get_or_init(Default::default)
}

fn push(level: madang_log_level, line: String) {
    let mut q = queue().lock().unwrap_or_else(|e| e.into_inner());
    if q.lines.len() >= CAPACITY {
        q.lines.pop_front();
        q.dropped += 1;
    }
    q.lines.push_back((level, line));
}

/// One formatted record on its way into the queue.
struct LineWriter {
    level: madang_log_level,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let line = text.trim_end();
        if !line.is_empty() {
            push(self.level, line.to_owned());
        }
    }
}

struct QueueWriter;

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            level: madang_log_level::MADANG_LOG_INFO,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter {
        LineWriter {
            level: madang_log_level::of(meta.level()),
            buf: Vec::new(),
        }
    }
}

/// Installs the queue as the process's log sink on first use. `None` when the host process
/// already installed another one (a Rust host with its own logging).
fn handle() -> Option<&'static reload::Handle<LevelFilter, tracing_subscriber::Registry>> {
    static HANDLE: OnceLock<Option<reload::Handle<LevelFilter, tracing_subscriber::Registry>>> =
        OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let (filter, handle) = reload::Layer::new(LevelFilter::OFF);
            let format = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_target(true)
                .with_writer(QueueWriter);
            tracing_subscriber::registry()
                .with(filter)
                .with(format)
                .try_init()
                .ok()
                .map(|_| handle)
        })
        .as_ref()
}

/// Sets how much madang logs (`MADANG_LOG_OFF` … `MADANG_LOG_TRACE`). Lines then wait in a
/// queue of 1024 (the oldest are dropped first) until read with `madang_log_pop`. Any thread.
///
/// Errors: `MADANG_RESULT_INVALID_ARGUMENT` for an unknown level; `MADANG_RESULT_IO` when the
/// process already has another log sink installed.
#[unsafe(no_mangle)]
pub extern "C" fn madang_log_set_level(level: u32) -> madang_result {
    ffi_boundary!({
        let Some(level) = madang_log_level::from_u32(level) else {
            return madang_result::MADANG_RESULT_INVALID_ARGUMENT;
        };
        let Some(handle) = handle() else {
            return madang_result::MADANG_RESULT_IO;
        };
        if handle.reload(level.filter()).is_err() {
            return madang_result::MADANG_RESULT_IO;
        }
        madang_result::MADANG_RESULT_OK
    })
}

/// Takes the oldest waiting log line: copies it NUL-terminated into `buf` (`len` bytes), its
/// length to `out_len` and its level to `out_level`. Lines dropped because nobody read them
/// are reported as one line saying how many. Any thread; never blocks.
///
/// Errors: `MADANG_RESULT_EMPTY` when no line waits; `MADANG_RESULT_BUFFER_TOO_SMALL` when the
/// line does not fit (it stays queued; 1024 bytes always suffice for the notice of dropped
/// lines, most lines are shorter than 512).
///
/// # Safety
/// `buf` must have `len` writable bytes; `out_len` and `out_level` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn madang_log_pop(
    out_level: *mut madang_log_level,
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> madang_result {
    ffi_boundary!({
        if out_level.is_null() {
            return madang_result::MADANG_RESULT_NULL_ARGUMENT;
        }
        let mut q = queue().lock().unwrap_or_else(|e| e.into_inner());
        let (level, line) = if q.dropped > 0 {
            let notice = format!("madang: {} log lines dropped (read faster)", q.dropped);
            (madang_log_level::MADANG_LOG_WARN, notice)
        } else {
            match q.lines.front() {
                Some((level, line)) => (*level, line.clone()),
                None => return madang_result::MADANG_RESULT_EMPTY,
            }
        };
        // SAFETY: per the contract.
        let r = unsafe { write_str(&line, buf, len, out_len) };
        if r == madang_result::MADANG_RESULT_OK {
            if q.dropped > 0 {
                q.dropped = 0;
            } else {
                q.lines.pop_front();
            }
            // SAFETY: checked non-NULL above.
            unsafe { *out_level = level };
        }
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_reach_the_queue_at_the_set_level_only() {
        assert_eq!(
            madang_log_set_level(9),
            madang_result::MADANG_RESULT_INVALID_ARGUMENT
        );
        assert_eq!(
            madang_log_set_level(madang_log_level::MADANG_LOG_INFO as u32),
            madang_result::MADANG_RESULT_OK
        );
        tracing::debug!(target: "madang::test", "too detailed");
        tracing::info!(target: "madang::test", district = "jongno", "joined");
        let mut buf = [0 as c_char; 512];
        let (mut len, mut level) = (0usize, madang_log_level::MADANG_LOG_OFF);
        let mut lines = Vec::new();
        // SAFETY: valid buffers.
        while unsafe { madang_log_pop(&mut level, buf.as_mut_ptr(), buf.len(), &mut len) }
            == madang_result::MADANG_RESULT_OK
        {
            let line = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
            lines.push((level, line.to_string_lossy().into_owned()));
        }
        let ours: Vec<_> = lines
            .iter()
            .filter(|(_, l)| l.contains("madang::test"))
            .collect();
        assert_eq!(ours.len(), 1, "{lines:?}");
        assert_eq!(ours[0].0, madang_log_level::MADANG_LOG_INFO);
        assert!(ours[0].1.contains("joined") && ours[0].1.contains("district=\"jongno\""));

        // A line that does not fit stays queued.
        tracing::warn!(target: "madang::test", "{}", "x".repeat(100));
        let mut small = [0 as c_char; 16];
        let r = unsafe { madang_log_pop(&mut level, small.as_mut_ptr(), small.len(), &mut len) };
        assert_eq!(r, madang_result::MADANG_RESULT_BUFFER_TOO_SMALL);
        let mut found = None;
        while unsafe { madang_log_pop(&mut level, buf.as_mut_ptr(), buf.len(), &mut len) }
            == madang_result::MADANG_RESULT_OK
        {
            let line = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
            if line.to_string_lossy().contains(&"x".repeat(100)) {
                found = Some(level);
            }
        }
        assert_eq!(found, Some(madang_log_level::MADANG_LOG_WARN));
        assert_eq!(
            madang_log_set_level(madang_log_level::MADANG_LOG_OFF as u32),
            madang_result::MADANG_RESULT_OK
        );
    }
}
