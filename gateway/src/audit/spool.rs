//! The on-disk spool between the writer thread and one network sink: events survive the
//! sink being down and the gateway restarting, and memory stays bounded whatever the backlog.
//!
//! A folder of segment files (`00000000000000000001.log`, ...) holding JSON lines, and a
//! `cursor` file naming the segment and byte offset delivered up to. The writer appends to
//! the newest segment and starts a new one past [`SEGMENT_BYTES`]; the reader reads complete
//! lines from the cursor on, and moves the cursor only after the sink accepted them, so a
//! crash between delivery and cursor write re-sends (at least once, never lost). Finished
//! segments are deleted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// A segment is closed past this size; delivered segments are deleted whole.
const SEGMENT_BYTES: u64 = 8 << 20;
const CURSOR_FILE: &str = "cursor";
/// Largest single event read back (an SQL text at the API body limit fits).
const MAX_EVENT_BYTES: u64 = 256 << 20;

/// What the writer and reader of one spool share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub dir: PathBuf,
    /// Bytes written and not yet delivered.
    pub backlog: AtomicU64,
    /// Rung after each append.
    pub appended: Notify,
}

/// The writer's end (on the writer thread).
#[derive(Debug)]
pub(crate) struct SpoolWriter {
    shared: Arc<Shared>,
    max_bytes: u64,
    segment: u64,
    file: File,
    size: u64,
}

/// The reader's end (in the sink's delivery task).
#[derive(Debug)]
pub(crate) struct SpoolReader {
    shared: Arc<Shared>,
    segment: u64,
    offset: u64,
}

/// A batch read from the spool: complete lines and where the cursor goes once delivered.
#[derive(Debug)]
pub(crate) struct Batch {
    pub lines: Vec<u8>,
    pub events: usize,
    next: (u64, u64),
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.log"))
}

/// Segment numbers present, ascending.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    found.sort_unstable();
    Ok(found)
}

/// Opens (creating if needed) the spool in `dir`: both ends, with the backlog left by a
/// previous run counted.
pub(crate) fn open(dir: &Path, max_bytes: u64) -> io::Result<(SpoolWriter, SpoolReader)> {
    fs::create_dir_all(dir)?;
    let present = segments(dir)?;
    let oldest = present.first().copied().unwrap_or(1);
    let newest = present.last().copied().unwrap_or(1);
    let (mut segment, mut offset) = read_cursor(dir).unwrap_or((oldest, 0));
    // A cursor behind the oldest segment (deleted after delivery) starts at that segment.
    if segment < oldest {
        (segment, offset) = (oldest, 0);
    }
    let mut backlog = 0;
    for &s in &present {
        if s >= segment {
            let len = fs::metadata(segment_path(dir, s))?.len();
            backlog += if s == segment { len.saturating_sub(offset) } else { len };
        }
    }
    let file = OpenOptions::new().create(true).append(true).mode(0o600).open(segment_path(dir, newest))?;
    let size = file.metadata()?.len();
    let shared = Arc::new(Shared { dir: dir.to_path_buf(), backlog: AtomicU64::new(backlog), appended: Notify::new() });
    let writer = SpoolWriter { shared: Arc::clone(&shared), max_bytes, segment: newest, file, size };
    Ok((writer, SpoolReader { shared, segment, offset }))
}

fn read_cursor(dir: &Path) -> Option<(u64, u64)> {
    let text = fs::read_to_string(dir.join(CURSOR_FILE)).ok()?;
    let (segment, offset) = text.trim().split_once(' ')?;
    Some((segment.parse().ok()?, offset.parse().ok()?))
}

impl SpoolWriter {
    /// Appends whole lines; refuses (and writes nothing) past the spool's size limit.
    pub(crate) fn append(&mut self, lines: &[u8], sync: bool) -> io::Result<()> {
        let backlog = self.shared.backlog.load(Ordering::Relaxed);
        if backlog + lines.len() as u64 > self.max_bytes {
            return Err(io::Error::other(format!("spool full ({backlog} bytes waiting for the sink)")));
        }
        if self.size > 0 && self.size + lines.len() as u64 > SEGMENT_BYTES {
            let next = self.segment + 1;
            let file =
                OpenOptions::new().create(true).append(true).mode(0o600).open(segment_path(&self.shared.dir, next))?;
            (self.segment, self.file, self.size) = (next, file, 0);
        }
        self.file.write_all(lines)?;
        if sync {
            self.file.sync_data()?;
        }
        self.size += lines.len() as u64;
        self.shared.backlog.fetch_add(lines.len() as u64, Ordering::Relaxed);
        self.shared.appended.notify_one();
        Ok(())
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl SpoolReader {
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Up to `max_events` complete lines from the cursor on (blocking file I/O: call from
    /// `spawn_blocking`). An empty batch means nothing is waiting.
    pub(crate) fn read(&mut self, max_events: usize, max_bytes: usize) -> io::Result<Batch> {
        loop {
            let path = segment_path(&self.shared.dir, self.segment);
            let mut file = match File::open(&path) {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    // Nothing written to this segment yet, or it was the last delivered.
                    match segments(&self.shared.dir)?.into_iter().find(|&s| s > self.segment) {
                        Some(next) => {
                            (self.segment, self.offset) = (next, 0);
                            continue;
                        }
                        None => return Ok(self.empty()),
                    }
                }
                Err(error) => return Err(error),
            };
            let len = file.metadata()?.len();
            if self.offset >= len {
                // This segment is done; if a newer one exists, it will not grow again.
                let newer = segments(&self.shared.dir)?.into_iter().find(|&s| s > self.segment);
                match newer {
                    Some(next) => {
                        drop(file);
                        fs::remove_file(&path)?;
                        (self.segment, self.offset) = (next, 0);
                        self.save()?;
                        continue;
                    }
                    None => return Ok(self.empty()),
                }
            }
            // One event can exceed the batch size (a long SQL text): read more until a line ends.
            let mut limit = max_bytes as u64;
            let (chunk, end, events) = loop {
                file.seek(SeekFrom::Start(self.offset))?;
                let mut chunk = vec![0; (len - self.offset).min(limit) as usize];
                file.read_exact(&mut chunk)?;
                let (mut end, mut events) = (0, 0);
                for (i, byte) in chunk.iter().enumerate() {
                    if *byte == b'\n' {
                        end = i + 1;
                        events += 1;
                        if events == max_events {
                            break;
                        }
                    }
                }
                if end > 0 || (chunk.len() as u64) < limit || limit >= MAX_EVENT_BYTES {
                    break (chunk, end, events);
                }
                limit *= 4;
            };
            let mut chunk = chunk;
            chunk.truncate(end);
            let next = (self.segment, self.offset + end as u64);
            return Ok(Batch { lines: chunk, events, next });
        }
    }

    /// The batch was delivered: move the cursor past it.
    pub(crate) fn commit(&mut self, batch: &Batch) -> io::Result<()> {
        (self.segment, self.offset) = batch.next;
        self.shared.backlog.fetch_sub(batch.lines.len() as u64, Ordering::Relaxed);
        self.save()
    }

    fn empty(&self) -> Batch {
        Batch { lines: Vec::new(), events: 0, next: (self.segment, self.offset) }
    }

    /// Written to a temporary file and renamed, so a crash leaves the old or the new cursor.
    fn save(&self) -> io::Result<()> {
        let tmp = self.shared.dir.join("cursor.tmp");
        fs::write(&tmp, format!("{} {}\n", self.segment, self.offset))?;
        fs::rename(tmp, self.shared.dir.join(CURSOR_FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_survive_reopening_and_are_read_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut reader) = open(dir.path(), 1 << 20).unwrap();
        writer.append(b"{\"a\":1}\n{\"a\":2}\n", false).unwrap();
        let batch = reader.read(1, 1 << 16).unwrap();
        assert_eq!(batch.lines, b"{\"a\":1}\n");
        reader.commit(&batch).unwrap();
        drop((writer, reader));
        // A restart: the uncommitted second line is still there, the first is not.
        let (mut writer, mut reader) = open(dir.path(), 1 << 20).unwrap();
        assert_eq!(reader.shared().backlog.load(Ordering::Relaxed), 8);
        writer.append(b"{\"a\":3}\n", false).unwrap();
        let batch = reader.read(10, 1 << 16).unwrap();
        assert_eq!(batch.lines, b"{\"a\":2}\n{\"a\":3}\n");
        assert_eq!(batch.events, 2);
        reader.commit(&batch).unwrap();
        assert_eq!(reader.read(10, 1 << 16).unwrap().events, 0);
        assert_eq!(reader.shared().backlog.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_torn_last_line_waits_and_the_limit_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut reader) = open(dir.path(), 20).unwrap();
        writer.append(b"{\"a\":1}\n{\"b\"", false).unwrap();
        let batch = reader.read(10, 1 << 16).unwrap();
        assert_eq!((batch.events, batch.lines.as_slice()), (1, &b"{\"a\":1}\n"[..]));
        let err = writer.append(b"0123456789", false).unwrap_err();
        assert!(err.to_string().contains("spool full"), "{err}");
    }

    #[test]
    fn delivered_segments_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut writer, mut reader) = open(dir.path(), u64::MAX).unwrap();
        let line = vec![b'x'; 1 << 20];
        for _ in 0..10 {
            let mut l = line.clone();
            l.push(b'\n');
            writer.append(&l, false).unwrap();
        }
        assert!(segments(dir.path()).unwrap().len() >= 2);
        let mut delivered = 0;
        loop {
            let batch = reader.read(3, 4 << 20).unwrap();
            if batch.events == 0 {
                break;
            }
            delivered += batch.events;
            reader.commit(&batch).unwrap();
        }
        assert_eq!(delivered, 10);
        assert_eq!(segments(dir.path()).unwrap().len(), 1, "only the segment still written to remains");
    }
}
