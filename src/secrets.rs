//! Secrets the service makes for itself. A secret written in a configuration file that ships with the code is
//! everybody's secret, so the files carry none: the embedded default draws each missing one at random on its first
//! start and keeps it in a folder of the data directory that only the owner can read, where the next start finds it;
//! the production configuration draws nothing and refuses to start until each is set.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;

/// Where a secret came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Read from the folder, as an earlier start left it.
    Kept,
    /// Drawn now, and written to the folder for the next start.
    Drawn,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct KeepError {
    path: PathBuf,
    source: std::io::Error,
}

/// The secret kept in `dir/name`, drawn (`bytes` random bytes, base64url) and written there if there is none yet.
/// The folder is made readable by its owner only, and so is the file.
pub fn kept(dir: &Path, name: &str, bytes: usize) -> Result<(String, Origin), KeepError> {
    let path = dir.join(name);
    let failed = |source| KeepError { path: path.clone(), source };
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(failed)?;
    let mut random = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut random);
    let drawn = URL_SAFE_NO_PAD.encode(&random);
    match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(mut file) => {
            file.write_all(drawn.as_bytes()).and_then(|()| file.sync_all()).map_err(failed)?;
            Ok((drawn, Origin::Drawn))
        }
        Err(err) if err.kind() == ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path).map_err(failed)?;
            Ok((text.trim_end().to_owned(), Origin::Kept))
        }
        Err(err) => Err(failed(err)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_secret_is_drawn_once_kept_for_the_owner_and_differs_between_folders() {
        let (one, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let folder = one.path().join("secrets");
        let (first, origin) = kept(&folder, "jwt-secret", 48).unwrap();
        assert_eq!(origin, Origin::Drawn);
        assert_eq!(first.len(), 64, "48 bytes in base64url");
        let (again, origin) = kept(&folder, "jwt-secret", 48).unwrap();
        assert_eq!((again.as_str(), origin), (first.as_str(), Origin::Kept));
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&folder), 0o700);
        assert_eq!(mode(&folder.join("jwt-secret")), 0o600);
        let (elsewhere, _) = kept(other.path(), "jwt-secret", 48).unwrap();
        assert_ne!(elsewhere, first, "another data folder draws its own");
    }
}
