//! An export file hashed while it is written: its size and SHA-256 are known when its last
//! byte is, so the manifest never reads a file of a gigabyte back to hash it.
//!
//! On Linux the file is written with `O_DIRECT` where the file system takes it: the bytes go
//! from an aligned buffer of ours to the disk, not through the page cache. Measured on the
//! project's 2-core VM, 1 GiB took 3.2 s through the page cache and its `fsync` (332 MB/s, the
//! kernel's copy and writeback) and 0.6 s direct (1.8 GB/s); a million people's JSON Lines and
//! CSV are 1.7 GB. Whole aligned blocks go direct; the last partial block is written through a
//! second, ordinary handle, and a file system that refuses direct writes gets ordinary ones.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// What the manifest records of a written file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub sha256: String,
}

/// Direct writes start at, and are a multiple of, this many bytes (Linux asks for the
/// device's logical block size, 512 or 4096).
const ALIGN: usize = 4096;

/// Bytes gathered before a direct write.
const BLOCK_WRITE: usize = 4 << 20;

/// A file being written and hashed; [`HashedFile::finish`] makes it durable.
pub struct HashedFile {
    file: File,
    path: PathBuf,
    hasher: Sha256,
    /// Bytes given to `write` so far.
    bytes: u64,
    /// The aligned buffer while writes go direct; `None` once they are ordinary.
    direct: Option<Aligned>,
}

/// `BLOCK_WRITE` bytes of a vector, starting at an `ALIGN`ed address.
struct Aligned {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl Aligned {
    fn new() -> Aligned {
        let buf = vec![0u8; BLOCK_WRITE + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        Aligned { buf, start, len: 0 }
    }

    fn filled(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl HashedFile {
    pub fn create(path: &Path) -> Result<HashedFile> {
        let fail = |e| Error::io(format!("creating {}", path.display()), e);
        let (file, direct) = match open(path, true) {
            Ok(file) => (file, Some(Aligned::new())),
            // EINVAL: this file system does not do direct I/O.
            Err(e) if e.raw_os_error() == Some(EINVAL) => (open(path, false).map_err(fail)?, None),
            Err(e) => return Err(fail(e)),
        };
        Ok(HashedFile {
            file,
            path: path.to_path_buf(),
            hasher: Sha256::new(),
            bytes: 0,
            direct,
        })
    }

    /// Appends `chunk`.
    pub fn write(&mut self, mut chunk: &[u8]) -> Result<()> {
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        while let Some(a) = &mut self.direct {
            if chunk.is_empty() {
                return Ok(());
            }
            let n = (BLOCK_WRITE - a.len).min(chunk.len());
            let at = a.start + a.len;
            a.buf[at..at + n].copy_from_slice(&chunk[..n]);
            a.len += n;
            chunk = &chunk[n..];
            if a.len == BLOCK_WRITE {
                self.write_direct()?;
            }
        }
        self.file.write_all(chunk).map_err(|e| self.error(e))
    }

    /// Writes the whole aligned buffer direct, or, if the kernel refuses that here, switches
    /// to ordinary writes from where the file ends.
    fn write_direct(&mut self) -> Result<()> {
        let Some(a) = &mut self.direct else {
            return Ok(());
        };
        match self.file.write_all(a.filled()) {
            Ok(()) => {
                a.len = 0;
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(EINVAL) => {
                let pending = a.filled().to_vec();
                self.direct = None;
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&self.path)
                    .map_err(|e| self.error(e))?;
                file.write_all(&pending).map_err(|e| self.error(e))?;
                self.file = file;
                Ok(())
            }
            Err(e) => Err(self.error(e)),
        }
    }

    fn error(&self, e: std::io::Error) -> Error {
        Error::io(format!("writing {}", self.path.display()), e)
    }

    /// Writes what is left, syncs the file to disk (the export directory is renamed into
    /// place only after) and returns its size and digest.
    pub fn finish(mut self) -> Result<Written> {
        if let Some(a) = &mut self.direct {
            // The whole blocks direct, the partial last one through an ordinary handle.
            let rest = a.len % ALIGN;
            let tail = a.filled()[a.len - rest..].to_vec();
            a.len -= rest;
            self.write_direct()?;
            if self.direct.is_some() {
                self.direct = None;
                let file = open_existing(&self.path).map_err(|e| self.error(e))?;
                let at = self.bytes - tail.len() as u64;
                write_at(&file, &tail, at).map_err(|e| self.error(e))?;
                self.file = file;
            } else {
                self.file.write_all(&tail).map_err(|e| self.error(e))?;
            }
        }
        self.file
            .sync_all()
            .map_err(|e| Error::io(format!("syncing {}", self.path.display()), e))?;
        Ok(Written {
            bytes: self.bytes,
            sha256: crate::digest::hex(&self.hasher.finalize()),
        })
    }
}

#[cfg(target_os = "linux")]
const EINVAL: i32 = libc::EINVAL;
#[cfg(not(target_os = "linux"))]
const EINVAL: i32 = 22;

/// Creates (truncating) `path`, with `O_DIRECT` when `direct` and the platform has it.
fn open(path: &Path, direct: bool) -> std::io::Result<File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(target_os = "linux")]
    if direct {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_DIRECT);
    }
    #[cfg(not(target_os = "linux"))]
    if direct {
        return Err(std::io::Error::from_raw_os_error(EINVAL));
    }
    o.open(path)
}

fn open_existing(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().write(true).open(path)
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, at)
}

#[cfg(not(unix))]
fn write_at(mut file: &File, bytes: &[u8], at: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(at))?;
    file.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(bytes: &[u8]) -> String {
        crate::digest::hex(&Sha256::digest(bytes))
    }

    #[test]
    fn size_and_digest_are_those_of_the_bytes_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = HashedFile::create(&path).unwrap();
        f.write(b"hello ").unwrap();
        f.write(b"").unwrap();
        f.write(b"world").unwrap();
        let w = f.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
        assert_eq!(w.bytes, 11);
        assert_eq!(
            w.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        let e = HashedFile::create(&dir.path().join("no/such/dir/f"))
            .err()
            .unwrap();
        assert!(e.to_string().contains("no/such/dir/f"), "{e}");
    }

    /// A direct write the kernel refuses (here a buffer moved off its alignment, as a device
    /// with larger blocks would refuse it) goes on as ordinary writes, losing no byte.
    #[test]
    fn a_refused_direct_write_falls_back_to_ordinary_writes() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2 * BLOCK_WRITE + 99).map(|i| (i % 253) as u8).collect();
        let path = dir.path().join("f");
        let mut f = HashedFile::create(&path).unwrap();
        if let Some(a) = &mut f.direct {
            a.start += 1;
        }
        f.write(&data[..BLOCK_WRITE + 10]).unwrap();
        f.write(&data[BLOCK_WRITE + 10..]).unwrap();
        let w = f.finish().unwrap();
        assert!(std::fs::read(&path).unwrap() == data);
        assert_eq!(w.sha256, digest(&data));
    }

    /// Sizes around the aligned blocks and the direct writes: every byte lands once, in order.
    #[test]
    fn every_size_around_the_blocks_is_written_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3 * BLOCK_WRITE + 3 * ALIGN)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        for size in [
            0,
            1,
            ALIGN - 1,
            ALIGN,
            ALIGN + 1,
            BLOCK_WRITE - 1,
            BLOCK_WRITE,
            BLOCK_WRITE + 1,
            2 * BLOCK_WRITE + ALIGN + 17,
            data.len(),
        ] {
            for piece in [1000, ALIGN, BLOCK_WRITE + 5] {
                let path = dir.path().join(format!("f-{size}-{piece}"));
                let mut f = HashedFile::create(&path).unwrap();
                for part in data[..size].chunks(piece) {
                    f.write(part).unwrap();
                }
                let w = f.finish().unwrap();
                let on_disk = std::fs::read(&path).unwrap();
                assert!(on_disk == data[..size], "size {size} in pieces of {piece}");
                assert_eq!(w.bytes, size as u64);
                assert_eq!(w.sha256, digest(&data[..size]));
            }
        }
    }
}
