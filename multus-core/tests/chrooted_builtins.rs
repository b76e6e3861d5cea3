//! Built-in delegates of a registry with a chroot directory (the thick daemon's `chrootDir`) resolve their
//! paths inside it, as plugin binaries do; what they resolve in turn (their IPAM) too, without chrooting a
//! second time; the caller's own root is untouched; a chroot directory that cannot be entered is a CNI
//! error. Needs root (`chroot`).

use async_trait::async_trait;
use multus_core::cni::{CniError, CniResult, Command, PluginConf};
use multus_core::delegate::external::ExecOptions;
use multus_core::delegate::{Context, Delegate, Registry};
use std::path::PathBuf;
use std::sync::Arc;

/// Writes `file` (an absolute path) and, for ADD, runs its IPAM through the context.
struct Writer {
    file: &'static str,
    runs_ipam: bool,
}

#[async_trait]
impl Delegate for Writer {
    fn describe(&self) -> String {
        format!("writer of {}", self.file)
    }

    async fn add(&self, ctx: &Context, conf: &PluginConf) -> Result<CniResult, CniError> {
        std::fs::write(self.file, ctx.container_id.as_bytes())
            .map_err(|e| CniError::io(format!("{}: {e}", self.file)))?;
        if self.runs_ipam {
            return Ok(ctx.ipam(Command::Add, conf).await?.expect("an IPAM result"));
        }
        Ok(CniResult::new("1.0.0"))
    }

    async fn check(&self, _: &Context, _: &PluginConf) -> Result<(), CniError> {
        Ok(())
    }

    async fn del(&self, _: &Context, _: &PluginConf) -> Result<(), CniError> {
        std::fs::remove_file(self.file).map_err(|e| CniError::io(format!("{}: {e}", self.file)))
    }
}

fn registry(root: Option<PathBuf>) -> Arc<Registry> {
    let mut r = Registry::new();
    r.register(
        "writer",
        Arc::new(Writer {
            file: "/marker",
            runs_ipam: true,
        }),
    );
    r.register(
        "ipam-writer",
        Arc::new(Writer {
            file: "/nested",
            runs_ipam: false,
        }),
    );
    r.set_exec(ExecOptions {
        chroot: root,
        die_with_parent: false,
    });
    Arc::new(r)
}

fn conf() -> PluginConf {
    PluginConf::from_value(serde_json::json!({
        "cniVersion": "1.0.0", "name": "n", "type": "writer", "ipam": {"type": "ipam-writer"}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtins_and_their_ipam_write_inside_the_chroot_directory() {
    multus_testsupport::require_root();
    let root = tempfile::tempdir().unwrap();
    let reg = registry(Some(root.path().to_path_buf()));
    let ctx = Context::new(Command::Add, "c-chroot", None, "net1", reg.clone());
    let d = reg.resolve("writer", &[]).unwrap();
    assert!(d.describe().contains("chrootDir"), "{}", d.describe());
    d.add(&ctx, &conf()).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(root.path().join("marker")).unwrap(),
        "c-chroot"
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("nested")).unwrap(),
        "c-chroot",
        "the IPAM resolved inside the chroot runs inside it, without a second chroot"
    );
    assert!(!std::path::Path::new("/marker").exists());
    assert!(!std::path::Path::new("/nested").exists());
    // The caller (and the runtime's threads) kept their root: the temp dir is still where it was.
    assert!(root.path().join("marker").exists());
    d.del(&ctx.with_command(Command::Del), &conf())
        .await
        .unwrap();
    assert!(!root.path().join("marker").exists());
}

#[tokio::test]
async fn a_chroot_directory_that_cannot_be_entered_is_a_cni_error() {
    multus_testsupport::require_root();
    let gone = tempfile::tempdir().unwrap().path().join("missing");
    let reg = registry(Some(gone));
    let ctx = Context::new(Command::Add, "c-missing", None, "net1", reg.clone());
    let e = reg
        .resolve("writer", &[])
        .unwrap()
        .add(&ctx, &conf())
        .await
        .unwrap_err();
    assert_eq!(e.code.code(), 5, "{e}");
    assert!(e.to_string().contains("chrootDir"), "{e}");
}

#[tokio::test]
async fn without_a_chroot_directory_builtins_run_in_place() {
    let reg = registry(None);
    let d = reg.resolve("writer", &[]).unwrap();
    assert_eq!(d.describe(), "writer of /marker");
}
