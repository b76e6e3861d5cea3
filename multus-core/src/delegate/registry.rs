//! Resolving a plugin `type` to a delegate: built-in first, then a binary in `binDir`, then in `CNI_PATH`.
//! With a chroot directory (the thick daemon's `chrootDir`: the host's root as mounted in its container),
//! binaries are looked up and run inside it, and built-in delegates run on a thread chrooted into it
//! ([`Chrooted`]), so both work with the host's files.

use super::chrooted::Chrooted;
use super::external::{ExecOptions, ExternalPlugin};
use super::observe::{DelegateObserver, Observed};
use super::Delegate;
use crate::cni::CniError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The default timeout of one external plugin run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The set of delegates a pipeline can run.
#[derive(Clone)]
pub struct Registry {
    builtins: BTreeMap<String, Arc<dyn Delegate>>,
    bin_dirs: Vec<PathBuf>,
    timeout: Duration,
    exec: ExecOptions,
    observer: Option<Arc<dyn DelegateObserver>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("builtins", &self.builtins.keys().collect::<Vec<_>>())
            .field("bin_dirs", &self.bin_dirs)
            .field("timeout", &self.timeout)
            .field("exec", &self.exec)
            .finish()
    }
}

/// Checks that a plugin type names a file and not a path (`bridge`, not `../x` or `/bin/sh`).
pub fn validate_plugin_type(t: &str) -> Result<(), CniError> {
    if t.is_empty() || t == "." || t == ".." || t.contains('/') || t.contains('\0') {
        return Err(CniError::invalid_config(format!(
            "plugin type {t:?} is not a valid plugin name"
        )));
    }
    Ok(())
}

impl Registry {
    /// An empty registry: no built-ins, no `binDir`, the default timeout.
    pub fn new() -> Self {
        Registry {
            builtins: BTreeMap::new(),
            bin_dirs: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            exec: ExecOptions::default(),
            observer: None,
        }
    }

    /// Registers a built-in delegate for a `type`.
    pub fn register(&mut self, plugin_type: &str, delegate: Arc<dyn Delegate>) -> &mut Self {
        self.builtins.insert(plugin_type.to_string(), delegate);
        self
    }

    /// Removes a built-in, so that `type` resolves to a binary again.
    pub fn unregister(&mut self, plugin_type: &str) -> &mut Self {
        self.builtins.remove(plugin_type);
        self
    }

    /// Directories searched before `CNI_PATH` (Multus' `binDir`).
    pub fn set_bin_dirs(&mut self, dirs: Vec<PathBuf>) -> &mut Self {
        self.bin_dirs = dirs;
        self
    }

    /// The timeout of one external plugin run.
    pub fn set_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.timeout = timeout;
        self
    }

    /// How plugin binaries are started: chrooted (their paths, `binDir` and `CNI_PATH`, are then taken
    /// inside the chroot), killed with their parent.
    pub fn set_exec(&mut self, exec: ExecOptions) -> &mut Self {
        self.exec = exec;
        self
    }

    /// Reports every verb of the delegates resolved from now on to `observer` ([`Observed`]).
    pub fn set_observer(&mut self, observer: Option<Arc<dyn DelegateObserver>>) -> &mut Self {
        self.observer = observer;
        self
    }

    /// The directory plugin binaries run chrooted into.
    pub fn chroot(&self) -> Option<&Path> {
        self.exec.chroot.as_deref()
    }

    /// The same registry as seen from inside its chroot directory (what a chrooted built-in resolves in
    /// turn): no chroot directory, everything else kept.
    pub fn inside_chroot(&self) -> Registry {
        let mut r = self.clone();
        r.exec.chroot = None;
        r
    }

    /// The timeout of one external plugin run.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The `binDir`s, which are put in front of `CNI_PATH` for the plugins we run.
    pub fn bin_dirs_for_path(&self) -> &[PathBuf] {
        &self.bin_dirs
    }

    /// The built-in types.
    pub fn builtin_types(&self) -> Vec<&str> {
        self.builtins.keys().map(String::as_str).collect()
    }

    /// Finds a plugin binary in `binDir`s then `cni_path` (inside the chroot directory, when set; the path
    /// returned is the one seen from inside).
    pub fn find_binary(
        &self,
        plugin_type: &str,
        cni_path: &[PathBuf],
    ) -> Result<PathBuf, CniError> {
        validate_plugin_type(plugin_type)?;
        let dirs: Vec<&Path> = self
            .bin_dirs
            .iter()
            .chain(cni_path.iter())
            .map(PathBuf::as_path)
            .collect();
        for d in &dirs {
            let p = d.join(plugin_type);
            let seen = match &self.exec.chroot {
                Some(root) => root.join(p.strip_prefix("/").unwrap_or(&p)),
                None => p.clone(),
            };
            if is_executable(&seen) {
                return Ok(p);
            }
        }
        Err(CniError::invalid_config(format!(
            "failed to find plugin {plugin_type:?} in path {:?} (it is not built in either)",
            dirs
        )))
    }

    /// Resolves a `type`: the built-in delegate, or the binary found in `binDir` / `cni_path`.
    pub fn resolve(
        &self,
        plugin_type: &str,
        cni_path: &[PathBuf],
    ) -> Result<Arc<dyn Delegate>, CniError> {
        self.resolve_with(plugin_type, None, cni_path)
    }

    /// Resolves the `type` of one invocation config: as [`Registry::resolve`], except that a built-in that
    /// [declines](Delegate::declines) `conf` gives way to the binary (an error saying why when there is
    /// none).
    pub fn resolve_for(
        &self,
        conf: &crate::cni::PluginConf,
        cni_path: &[PathBuf],
    ) -> Result<Arc<dyn Delegate>, CniError> {
        self.resolve_with(conf.plugin_type(), Some(conf), cni_path)
    }

    fn resolve_with(
        &self,
        plugin_type: &str,
        conf: Option<&crate::cni::PluginConf>,
        cni_path: &[PathBuf],
    ) -> Result<Arc<dyn Delegate>, CniError> {
        validate_plugin_type(plugin_type)?;
        let builtin = self.builtins.get(plugin_type);
        let why = builtin.zip(conf).and_then(|(d, c)| d.declines(c));
        let d: Arc<dyn Delegate> = match (builtin, why) {
            (Some(d), None) => match &self.exec.chroot {
                None => d.clone(),
                Some(root) => Arc::new(Chrooted::new(d.clone(), root)?),
            },
            (_, why) => {
                let path = self
                    .find_binary(plugin_type, cni_path)
                    .map_err(|e| match &why {
                        Some(w) => CniError::new(e.code, format!("{w}, and {}", e.msg)),
                        None => e,
                    })?;
                if let Some(w) = why {
                    tracing::info!("{w}: running {}", path.display());
                }
                Arc::new(ExternalPlugin::new(path, self.timeout).with_exec(self.exec.clone()))
            }
        };
        Ok(match &self.observer {
            Some(o) => Arc::new(Observed::new(d, plugin_type, o.clone())),
            None => d,
        })
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_paths_as_types() {
        let r = Registry::new();
        for bad in ["", "..", "../bridge", "/bin/sh", "a\0b"] {
            assert_eq!(
                r.resolve(bad, &[]).err().map(|e| e.code.code()),
                Some(7),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn finds_binaries_in_bin_dir_first() {
        use std::os::unix::fs::PermissionsExt;
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            let p = d.join("plug");
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(b.path().join("noexec"), "").unwrap();
        let mut r = Registry::new();
        r.set_bin_dirs(vec![a.path().to_path_buf()]);
        assert_eq!(
            r.find_binary("plug", &[b.path().to_path_buf()]).unwrap(),
            a.path().join("plug")
        );
        let e = r
            .find_binary("noexec", &[b.path().to_path_buf()])
            .unwrap_err();
        assert_eq!(e.code.code(), 7);
        assert!(e.msg.contains("noexec"));
    }

    #[test]
    fn finds_binaries_inside_the_chroot() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("opt/cni/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("plug"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(bin.join("plug"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut r = Registry::new();
        r.set_bin_dirs(vec!["/opt/cni/bin".into()]);
        assert!(r.find_binary("plug", &[]).is_err());
        r.set_exec(ExecOptions {
            chroot: Some(root.path().to_path_buf()),
            die_with_parent: false,
        });
        // The path as the plugin sees it from inside the chroot.
        assert_eq!(
            r.find_binary("plug", &[]).unwrap(),
            PathBuf::from("/opt/cni/bin/plug")
        );
    }
}
