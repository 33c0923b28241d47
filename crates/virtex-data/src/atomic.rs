//! Writing a file so that a crash never leaves it half-written (shards here,
//! weights, checkpoints and metrics in the crates above).

use std::fs::File;
use std::io;
use std::path::Path;

/// Runs `write` on a temporary file beside `path`, syncs it, and renames it
/// over `path`; on any failure the temporary file is removed and `path` is
/// left as it was.
pub fn write_file(path: &Path, write: impl FnOnce(File) -> io::Result<File>) -> io::Result<()> {
    let tmp = path.with_extension("tmp-write");
    let result = File::create(&tmp)
        .and_then(write)
        .and_then(|file| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// [`write_file`] with the whole content at hand.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_file(path, |mut file| {
        io::Write::write_all(&mut file, bytes)?;
        Ok(file)
    })
}
