//! The shipped model: fitted on the shipped corpus for the vocabulary in force. Fitting takes
//! seconds of CPU, so the result is kept in the user's cache folder (`$XDG_CACHE_HOME/hermes`,
//! else `~/.cache/hermes`), named by a digest of this build and the vocabulary; a later start
//! (and every replica and test on the machine) loads it in milliseconds. Without a writable
//! cache folder each start fits it again.

use super::model::Model;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("hermes"))
}

/// This build (the executable's path, size and time) and the vocabulary: what the fit depends on.
fn name(vocabulary: &str) -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let meta = std::fs::metadata(&exe).ok()?;
    let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    let mut h = Sha256::new();
    h.update(exe.to_string_lossy().as_bytes());
    h.update(meta.len().to_le_bytes());
    h.update(modified.as_nanos().to_le_bytes());
    h.update(vocabulary.as_bytes());
    let digest: String = h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
    Some(format!("classifier-{digest}.bin"))
}

/// The cached fit for this build and vocabulary, or `fit()` (then kept for next time).
pub fn load_or_fit(vocabulary: &str, fit: impl FnOnce() -> Model) -> Model {
    let place = cache_dir().zip(name(vocabulary));
    if let Some(model) = place.as_ref().and_then(|(dir, name)| std::fs::read(dir.join(name)).ok()).and_then(|b| Model::from_bytes(&b).ok()) {
        return model;
    }
    let model = fit();
    if let Some((dir, name)) = place {
        // Written aside and renamed: a start that reads it at the same time sees all or nothing.
        let aside = dir.join(format!("{name}.{}", std::process::id()));
        let kept =
            std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&aside, model.to_bytes())).and_then(|()| std::fs::rename(&aside, dir.join(&name)));
        match kept {
            Ok(()) => forget_others(&dir, &name),
            Err(e) => {
                let _ = std::fs::remove_file(&aside);
                log::debug!("the fitted classifier was not cached in {}: {e}", dir.display());
            }
        }
    }
    model
}

/// Fits of other builds older than a day are of no more use (a day: builds side by side, as
/// in a benchmark of two, keep theirs).
fn forget_others(dir: &std::path::Path, keep: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let file = e.file_name();
        let file = file.to_string_lossy();
        let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age.as_secs() > 86_400);
        if file.starts_with("classifier-") && file != keep && old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
