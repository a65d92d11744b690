//! Paths in a config file are relative to that file's folder, not to the working directory:
//! a gateway started from `/` with `-c /etc/portcullis/gateway.yaml` reads `tls/server.pem`
//! from `/etc/portcullis/tls/`. The rule is applied here, once, while the file is read, so no
//! section lists its path fields a second time and a new `ConfigPath` field cannot miss it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

thread_local! {
    /// The folder of the config file being deserialized on this thread, if any.
    static BASE: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// A path from the config: absolute, or relative to the config file's folder (to the working
/// directory for a config not read from a file).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigPath(PathBuf);

impl ConfigPath {
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for ConfigPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ConfigPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl From<PathBuf> for ConfigPath {
    fn from(path: PathBuf) -> Self {
        Self(path)
    }
}

impl From<&str> for ConfigPath {
    fn from(path: &str) -> Self {
        Self(PathBuf::from(path))
    }
}

impl From<&Path> for ConfigPath {
    fn from(path: &Path) -> Self {
        Self(path.to_path_buf())
    }
}

impl From<ConfigPath> for PathBuf {
    fn from(path: ConfigPath) -> Self {
        path.0
    }
}

impl<'de> Deserialize<'de> for ConfigPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let path = PathBuf::deserialize(deserializer)?;
        Ok(Self(rebased(path)))
    }
}

/// `path` against the folder of the file being read (unchanged when absolute or when no file
/// is being read).
pub(super) fn rebased(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    BASE.with(|base| match &*base.borrow() {
        Some(dir) => dir.join(&path),
        None => path,
    })
}

/// Runs `read` with relative paths resolved against `dir`; the previous base comes back after,
/// however `read` ends.
pub(super) fn relative_to<T>(dir: &Path, read: impl FnOnce() -> T) -> T {
    struct Restore(Option<PathBuf>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            BASE.with(|base| *base.borrow_mut() = previous);
        }
    }
    let previous = BASE.with(|base| base.replace(Some(dir.to_path_buf())));
    let _restore = Restore(previous);
    read()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_base_and_absolute_ones_stay() {
        let read = || serde_yaml_ng::from_str::<Vec<ConfigPath>>("[a/b.pem, /etc/c.pem]").unwrap();
        let inside = relative_to(Path::new("/srv/conf"), read);
        assert_eq!(inside[0].as_path(), Path::new("/srv/conf/a/b.pem"));
        assert_eq!(inside[1].as_path(), Path::new("/etc/c.pem"));
        // Outside a file read, and after one, nothing is rebased.
        assert_eq!(read()[0].as_path(), Path::new("a/b.pem"));
    }

    #[test]
    fn the_base_is_restored_when_the_read_panics() {
        let result = std::panic::catch_unwind(|| relative_to(Path::new("/x"), || panic!("mid-read")));
        assert!(result.is_err());
        assert_eq!(rebased(PathBuf::from("y")), PathBuf::from("y"));
    }
}
