//! The `dpdk` delegate: binds the attachment's PCI device to vfio-pci on ADD, gives it back on DEL.
//!
//! Config keys:
//!
//! | key | type | meaning |
//! |-----|------|---------|
//! | `deviceID` | string | the device's PCI address `dddd:bb:dd.f`; also `pciBusID` and `runtimeConfig.deviceID` (that order) |
//! | `master` / `pfName` | string | without a device ID: take a free VF of this PF (the SR-IOV allocator's choice) |
//! | `allowNoIommu` | bool | bind without an IOMMU when vfio's unsafe no-IOMMU mode is on (default false) |
//! | `dataDir` | string | the state directory (default `/var/lib/cni/multus/dpdk`) |
//! | `runtimeConfig.CNIDeviceInfoFile` | string | where to write the device-info (spec 1.1.0), as Multus asks |
//! | `mac`, `vlan`, `vlanQoS`, `vlanProto`, `spoofchk`, `trust`, `link_state`, `min_tx_rate`, `max_tx_rate` | | VF settings applied on the PF, as the `sriov` delegate does (see `multus_sriov::config`) |
//!
//! For an SR-IOV VF, ADD first allocates it and applies the VF settings on its PF with the SR-IOV delegate's
//! `multus_sriov::vf::acquire` (state under `<dataDir>/sriov`, or the SR-IOV delegate's default directory, so that
//! the two delegates never hand out one VF twice); DEL puts them back with `vf::release` once the VF is on its
//! kernel driver again. The DPDK application then sees the VF with the configured MAC and VLAN.
//!
//! ADD: checks and binds ([`crate::bind`]), recording the device's original driver, netdev name, MAC and up flag
//! under `dataDir` (before touching it); returns one interface named after `CNI_IFNAME` with the device's `pciID`
//! (CNI 1.1) and the pod's netns as sandbox, and no netdev enters the pod; writes the device-info file. DEL: gives
//! the device back to its original driver, renames its netdev back to its original name, puts its MAC and up flag
//! back, removes the device-info file and the record; succeeds when there is nothing to undo. CHECK: the device is
//! still on vfio-pci and its group device exists. STATUS: vfio-pci and an IOMMU are there. GC: restores the
//! devices of attachments that are not in the valid list.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use multus_core::cni::keys::Keys;
use multus_core::cni::{CniError, CniResult, Interface, PluginConf, CURRENT_VERSION};
use multus_core::delegate::{Context, Delegate};
use multus_core::devinfo::{self, DeviceInfo};
use multus_core::netlink::netdev::{self, NetdevState};
use multus_core::netlink::{link, Netlink};
use multus_sriov::cache::VfRecord;
use multus_sriov::config::{SriovConf, VfSelector};
use multus_sriov::vf::{self, AttachmentId, SriovEnv};
use multus_sriov::PciAddress;

use crate::bind::{Binder, Original, RestoreOutcome, VfioGroup};
use crate::state::{Phase, Record, Store, DEFAULT_STATE_DIR};

/// A parsed `dpdk` config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpdkConf {
    /// The device (`deviceID`, `pciBusID`, `runtimeConfig.deviceID`); `None` when none is given (an error for ADD,
    /// fine for DEL, which uses its record).
    pub device: Option<PciAddress>,
    /// `allowNoIommu`.
    pub allow_no_iommu: bool,
    /// `dataDir`.
    pub state_dir: Option<PathBuf>,
    /// `runtimeConfig.CNIDeviceInfoFile`.
    pub device_info_file: Option<PathBuf>,
}

impl DpdkConf {
    /// Parses the keys above; each present device key must be a valid PCI address.
    pub fn parse(conf: &PluginConf) -> Result<Self, CniError> {
        let k = Keys::of(conf).plugin("dpdk");
        let device = match multus_sriov::config::select_device(&k)? {
            Some((VfSelector::Vf(pci), _)) => Some(pci),
            _ => None,
        };
        Ok(DpdkConf {
            device,
            allow_no_iommu: k.bool("allowNoIommu")?.unwrap_or(false),
            state_dir: k.string("dataDir")?.map(PathBuf::from),
            device_info_file: devinfo::file_of(conf)?,
        })
    }
}

/// The `dpdk` delegate.
#[derive(Debug, Clone)]
pub struct Dpdk {
    binder: Binder,
    state_dir: PathBuf,
    netlink: bool,
}

impl Dpdk {
    /// On the host: [`Binder::system`], state under `/var/lib/cni/multus/dpdk` unless `dataDir` says otherwise.
    pub fn system() -> Self {
        Dpdk::new(Binder::system(), DEFAULT_STATE_DIR)
    }

    /// With a binder and a default state directory (tests use a fake sysfs tree).
    pub fn new(binder: Binder, state_dir: impl Into<PathBuf>) -> Self {
        Dpdk {
            binder,
            state_dir: state_dir.into(),
            netlink: true,
        }
    }

    /// Never touches netdevs through netlink (the rename / MAC / up after a restore): for tests on fake trees,
    /// whose netdev names are not the host's.
    pub fn without_netlink(mut self) -> Self {
        self.netlink = false;
        self
    }

    /// The SR-IOV state (allocation records, VF settings cache) for a VF: `<dataDir>/sriov` when `dataDir` is
    /// set, else the SR-IOV delegate's default, so that both delegates see each other's allocations.
    fn sriov_env(&self, conf: &DpdkConf) -> SriovEnv {
        let dir = conf
            .state_dir
            .as_ref()
            .map(|d| d.join("sriov"))
            .unwrap_or_else(|| PathBuf::from(multus_sriov::cache::DEFAULT_DATA_DIR));
        SriovEnv::new(self.binder.sysfs().clone(), dir)
    }

    /// The device, and for an SR-IOV VF (with netlink) its allocation and VF settings on the PF (the SR-IOV
    /// delegate's `vf::acquire`; a new record only when this attachment did not already have one). Without a
    /// device ID, `master` / `pfName` names a PF and a free VF of it is allocated, as the `sriov` delegate does.
    async fn acquire_vf(
        &self,
        ctx: &Context,
        conf: &PluginConf,
        c: &DpdkConf,
    ) -> Result<(PciAddress, Option<VfRecord>), CniError> {
        let no_device = || {
            CniError::invalid_config(
                "dpdk: no device given: set \"deviceID\" (or \"pciBusID\", \"runtimeConfig.deviceID\") to its PCI \
                 address, or \"master\" / \"pfName\" to take a free VF of that PF",
            )
        };
        if let Some(d) = c.device {
            if !self.netlink || !self.binder.sysfs().is_vf(d).unwrap_or(false) {
                return Ok((d, None));
            }
        } else if !self.netlink || !["master", "pfName"].iter().any(|k| conf.get(k).is_some()) {
            return Err(no_device());
        }
        let env = self.sriov_env(c);
        if let Some(rec) = env.cache().load(&ctx.container_id, &ctx.ifname)? {
            return Ok((c.device.unwrap_or(rec.vf), None));
        }
        let sconf = SriovConf::parse(conf)?;
        let nl = Netlink::current()?;
        let id = AttachmentId {
            network: conf.name().unwrap_or_default().to_string(),
            container_id: ctx.container_id.clone(),
            ifname: ctx.ifname.clone(),
            netns: ctx
                .netns
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let rec = vf::acquire(&env, &nl, &sconf, &id).await?;
        Ok((rec.vf, Some(rec)))
    }

    /// Puts back the VF settings of an attachment and frees its VF (`vf::release`), when it has a record.
    async fn release_vf(
        &self,
        c: &DpdkConf,
        container_id: &str,
        ifname: &str,
    ) -> Result<(), CniError> {
        if !self.netlink {
            return Ok(());
        }
        let env = self.sriov_env(c);
        let Some(rec) = env.cache().load(container_id, ifname)? else {
            return Ok(());
        };
        let nl = Netlink::current()?;
        vf::release(&env, &nl, &rec).await
    }

    fn store(&self, conf: &DpdkConf) -> Store {
        Store::new(
            conf.state_dir
                .clone()
                .unwrap_or_else(|| self.state_dir.clone()),
        )
    }

    /// Restores a record's device (blocking) and returns what happened.
    fn restore_record(binder: &Binder, r: &Record) -> Result<crate::bind::Restored, CniError> {
        let pci: PciAddress = r.pci.parse().map_err(|_| {
            CniError::io(format!(
                "dpdk: record of {}/{} has a bad PCI address {:?}",
                r.container_id, r.ifname, r.pci
            ))
        })?;
        let restored = binder.restore(pci, &r.original)?;
        match &restored.outcome {
            RestoreOutcome::TakenOver(d) => tracing::warn!(
                "{pci} is bound to {d} now, not vfio-pci: left alone (its original driver was {})",
                r.original.driver.as_deref().unwrap_or("none")
            ),
            RestoreOutcome::Gone => tracing::info!("{pci} no longer exists; nothing to restore"),
            o => tracing::debug!("{pci}: {o:?}"),
        }
        Ok(restored)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CniError> + Send + 'static,
) -> Result<T, CniError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CniError::io(format!("dpdk: worker thread failed: {e}")))?
}

/// Writes the device-info file ([`devinfo::write`]); failing is code 5 naming the file.
fn write_device_info(path: &Path, info: &DeviceInfo) -> Result<(), CniError> {
    devinfo::write(path, info)
        .map_err(|e| CniError::io(format!("dpdk: device-info file {}: {e}", path.display())))
}

/// After a restore: the netdev the kernel made gets its original name, MAC and up flag back. Failures are logged,
/// not returned: the device is back on its driver, which is what DEL must achieve.
async fn restore_netdev(current: &str, original: &Original) {
    if let Err(e) = try_restore_netdev(current, original).await {
        tracing::warn!(
            "dpdk: netdev {current} (originally {}): {e}",
            original.netdev.as_deref().unwrap_or("?")
        );
    }
}

async fn try_restore_netdev(current: &str, original: &Original) -> Result<(), CniError> {
    let Some(name) = &original.netdev else {
        return Ok(());
    };
    let nl = Netlink::current()?;
    let l = link::by_name(&nl, current)
        .await?
        .ok_or_else(|| CniError::kernel(format!("netdev {current} vanished")))?;
    // The MTU was never changed by the bind (a new netdev of the same driver): not restored.
    let saved = NetdevState {
        name: name.clone(),
        mac: original.mac.unwrap_or_default(),
        mtu: 0,
        up: original.up,
    };
    netdev::restore(&nl, l.index, &saved).await?;
    if name != current {
        tracing::info!("dpdk: netdev {current} renamed back to {name}");
    }
    Ok(())
}

#[async_trait]
impl Delegate for Dpdk {
    fn describe(&self) -> String {
        "built-in dpdk".into()
    }

    async fn add(&self, ctx: &Context, conf: &PluginConf) -> Result<CniResult, CniError> {
        let c = DpdkConf::parse(conf)?;
        let (device, acquired) = self.acquire_vf(ctx, conf, &c).await?;
        let store = self.store(&c);
        let binder = self.binder.clone();
        let (cid, ifname) = (ctx.container_id.clone(), ctx.ifname.clone());
        let netns = ctx
            .netns
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let allow = c.allow_no_iommu;
        let bound = {
            let netns = netns.clone();
            blocking(move || {
                Ok(bind_for(
                    &binder, &store, &cid, &ifname, &netns, device, allow,
                ))
            })
            .await?
        };
        let (record, fresh) = match bound {
            Ok(x) => x,
            Err(f) => {
                if let (Some((original, Some(cur))), true) =
                    (f.rolled_back.as_deref(), self.netlink)
                {
                    restore_netdev(cur, original).await;
                }
                if acquired.is_some() {
                    if let Err(e) = self.release_vf(&c, &ctx.container_id, &ctx.ifname).await {
                        tracing::warn!(
                            "dpdk: putting the VF settings back after a failed ADD: {e}"
                        );
                    }
                }
                return Err(f.err);
            }
        };
        if let Some(f) = &c.device_info_file {
            let info = DeviceInfo::pci(&record.pci, record.pf.as_deref())
                .with_vfio_device(&record.vfio_dev);
            if let Err(e) = write_device_info(f, &info) {
                if fresh {
                    // Undo this ADD's bind: the runtime may not call DEL.
                    let (binder, store, r) = (self.binder.clone(), self.store(&c), record.clone());
                    let undone = blocking(move || {
                        let _l = store.lock()?;
                        let x = Dpdk::restore_record(&binder, &r)?;
                        store.remove(&r.container_id, &r.ifname)?;
                        Ok(x)
                    })
                    .await;
                    if let (Ok(x), true) = (&undone, self.netlink) {
                        if let Some(cur) = &x.netdev {
                            restore_netdev(cur, &record.original).await;
                        }
                    }
                    if let Err(e) = self.release_vf(&c, &ctx.container_id, &ctx.ifname).await {
                        tracing::warn!(
                            "dpdk: putting the VF settings back after a failed ADD: {e}"
                        );
                    }
                }
                return Err(e);
            }
        }
        let mut result = CniResult::new(conf.cni_version().unwrap_or(CURRENT_VERSION));
        result.interfaces.push(Interface {
            name: ctx.ifname.clone(),
            sandbox: netns,
            pci_id: record.pci.clone(),
            ..Default::default()
        });
        Ok(result)
    }

    async fn check(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        let c = DpdkConf::parse(conf)?;
        let store = self.store(&c);
        let binder = self.binder.clone();
        let (cid, ifname) = (ctx.container_id.clone(), ctx.ifname.clone());
        blocking(move || {
            let r = {
                let _l = store.lock()?;
                store.get(&cid, &ifname)?
            };
            let r = r.ok_or_else(|| {
                CniError::kernel(format!(
                    "dpdk: no device is bound for container {cid} ifname {ifname}"
                ))
            })?;
            let (Some(number), Ok(pci)) = (r.group, r.pci.parse::<PciAddress>()) else {
                return Err(CniError::kernel(format!(
                    "dpdk: {} was never fully bound",
                    r.pci
                )));
            };
            binder.verify(
                pci,
                &VfioGroup {
                    number,
                    noiommu: r.noiommu,
                },
            )?;
            Ok(())
        })
        .await
    }

    async fn del(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        // DEL must work with a config that no longer parses for ADD (no device): only the state is needed.
        let c = DpdkConf::parse(conf).unwrap_or(DpdkConf {
            device: None,
            allow_no_iommu: false,
            state_dir: None,
            device_info_file: None,
        });
        let store = self.store(&c);
        let binder = self.binder.clone();
        let (cid, ifname) = (ctx.container_id.clone(), ctx.ifname.clone());
        let done = blocking(move || {
            let _l = store.lock()?;
            let Some(r) = store.get(&cid, &ifname)? else {
                return Ok(None);
            };
            let restored = Dpdk::restore_record(&binder, &r)?;
            store.remove(&cid, &ifname)?;
            Ok(Some((r, restored)))
        })
        .await?;
        if let Some((r, restored)) = done.filter(|_| self.netlink) {
            if let Some(cur) = &restored.netdev {
                restore_netdev(cur, &r.original).await;
            }
        }
        // The VF's settings last, with its kernel driver and netdev back (as in netdev mode).
        self.release_vf(&c, &ctx.container_id, &ctx.ifname).await?;
        if let Some(f) = &c.device_info_file {
            devinfo::remove(f);
        }
        Ok(())
    }

    async fn status(&self, _ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        let c = DpdkConf::parse(conf)?;
        let vfio = self
            .binder
            .sysfs()
            .root()
            .join("sys/bus/pci/drivers/vfio-pci");
        if !vfio.is_dir() {
            return Err(CniError::not_available(format!(
                "dpdk: the vfio-pci driver is not loaded ({} does not exist)",
                vfio.display()
            )));
        }
        if !c.allow_no_iommu && !self.binder.iommu_present()? {
            return Err(CniError::not_available(
                "dpdk: no IOMMU on this host (/sys/class/iommu is empty)",
            ));
        }
        Ok(())
    }

    async fn gc(&self, _ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        let c = DpdkConf::parse(conf)?;
        let valid = conf.valid_attachments()?;
        let store = self.store(&c);
        let binder = self.binder.clone();
        let restored = blocking(move || {
            let _l = store.lock()?;
            let mut out = Vec::new();
            for r in store.list()? {
                if valid
                    .iter()
                    .any(|a| a.container_id == r.container_id && a.ifname == r.ifname)
                {
                    continue;
                }
                tracing::info!(
                    "dpdk GC: restoring {} of {}/{}",
                    r.pci,
                    r.container_id,
                    r.ifname
                );
                let x = Dpdk::restore_record(&binder, &r)?;
                store.remove(&r.container_id, &r.ifname)?;
                out.push((r, x));
            }
            Ok(out)
        })
        .await?;
        for (r, x) in restored.into_iter().filter(|_| self.netlink) {
            if let Some(cur) = &x.netdev {
                restore_netdev(cur, &r.original).await;
            }
            self.release_vf(&c, &r.container_id, &r.ifname).await?;
        }
        Ok(())
    }
}

/// ADD's blocking part, under the store's lock: returns the record and whether this call bound the device.
fn bind_for(
    binder: &Binder,
    store: &Store,
    cid: &str,
    ifname: &str,
    netns: &str,
    device: PciAddress,
    allow_no_iommu: bool,
) -> Result<(Record, bool), Failed> {
    let _l = store.lock()?;
    let pci = device.to_string();
    let existing = store.get(cid, ifname)?;
    if let Some(r) = &existing {
        if r.pci != pci {
            return Err(CniError::invalid_config(format!(
                "dpdk: container {cid} ifname {ifname} already holds {}; DEL it before adding {pci}",
                r.pci
            ))
            .into());
        }
        if let (Phase::Bound, Some(number)) = (r.phase, r.group) {
            if binder
                .verify(
                    device,
                    &VfioGroup {
                        number,
                        noiommu: r.noiommu,
                    },
                )
                .is_ok()
            {
                return Ok((r.clone(), false));
            }
        }
    }
    if let Some(o) = store
        .list()?
        .into_iter()
        .find(|o| o.pci == pci && (o.container_id != cid || o.ifname != ifname))
    {
        return Err(CniError::kernel(format!(
            "dpdk: {pci} is already bound for container {} ifname {}",
            o.container_id, o.ifname
        ))
        .into());
    }
    let mut plan = binder.plan(device, allow_no_iommu)?;
    if let Some(r) = &existing {
        // A retried ADD after an interrupted one: the device's true original is in the record.
        plan.original = r.original.clone();
    }
    let mut record = Record {
        container_id: cid.to_string(),
        ifname: ifname.to_string(),
        netns: netns.to_string(),
        pci: pci.clone(),
        pf: plan.pf.map(|p| p.to_string()),
        original: plan.original.clone(),
        phase: Phase::Binding,
        vfio_dev: String::new(),
        group: None,
        noiommu: plan.noiommu,
    };
    store.put(&record)?;
    match binder.bind(&plan) {
        Ok(b) => {
            record.phase = Phase::Bound;
            record.group = Some(b.group.number);
            record.vfio_dev = b.dev.to_string_lossy().into_owned();
            store.put(&record)?;
            tracing::info!(
                "dpdk: {pci} bound to vfio-pci ({}), was on {}",
                record.vfio_dev,
                plan.original.driver.as_deref().unwrap_or("no driver")
            );
            Ok((record, true))
        }
        Err(e) => {
            // Rolled back to the original: nothing left to undo but the netdev's name. Otherwise the record stays
            // for DEL.
            let mut f = Failed::from(CniError::from(e));
            if binder.sysfs().driver(device).ok() == Some(plan.original.driver.clone()) {
                store.remove(cid, ifname)?;
                let netdev = binder
                    .sysfs()
                    .netdevs(device)
                    .ok()
                    .and_then(|n| n.into_iter().next());
                f.rolled_back = Some(Box::new((plan.original, netdev)));
            }
            Err(f)
        }
    }
}

/// A failed ADD: the error, and after a successful rollback the original and the netdev the kernel made.
struct Failed {
    err: CniError,
    rolled_back: Option<Box<(Original, Option<String>)>>,
}

impl<E: Into<CniError>> From<E> for Failed {
    fn from(e: E) -> Self {
        Failed {
            err: e.into(),
            rolled_back: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{igb_host, pci, Fault, Sim};
    use multus_core::cni::Command;
    use multus_core::delegate::Registry;
    use serde_json::{json, Value};
    use std::fs;
    use std::sync::Arc;

    struct T {
        _d: tempfile::TempDir,
        sim: Sim,
        dpdk: Dpdk,
        state: PathBuf,
        devinfo: PathBuf,
    }

    fn setup() -> T {
        let d = tempfile::tempdir().unwrap();
        let sim = igb_host(d.path(), 2);
        let state = d.path().join("state");
        let devinfo = d.path().join("devinfo/cni/net-c1_net1");
        let dpdk = Dpdk::new(sim.binder(), &state).without_netlink();
        T {
            _d: d,
            sim,
            dpdk,
            state,
            devinfo,
        }
    }

    fn ctx(cmd: Command, cid: &str, ifname: &str) -> Context {
        Context::new(
            cmd,
            cid,
            Some("/var/run/netns/p1".into()),
            ifname,
            Arc::new(Registry::new()),
        )
    }

    fn conf(t: &T, extra: Value) -> PluginConf {
        let mut v = json!({"cniVersion": "1.1.0", "name": "net", "type": "dpdk", "deviceID": "0000:01:10.0",
            "runtimeConfig": {"CNIDeviceInfoFile": t.devinfo}});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        PluginConf::from_value(v).unwrap()
    }

    fn driver(t: &T, p: &str) -> Option<String> {
        t.sim.fake.sysfs().driver(pci(p)).unwrap()
    }

    #[test]
    fn config_keys() {
        let t = setup();
        let c = DpdkConf::parse(&conf(&t, json!({"allowNoIommu": true, "dataDir": "/s"}))).unwrap();
        assert_eq!(c.device, Some(pci("0000:01:10.0")));
        assert!(c.allow_no_iommu);
        assert_eq!(c.state_dir.as_deref(), Some(Path::new("/s")));
        assert_eq!(c.device_info_file.as_deref(), Some(t.devinfo.as_path()));
        let c = DpdkConf::parse(&conf(
            &t,
            json!({"deviceID": "", "pciBusID": "0000:01:10.2",
            "runtimeConfig": {"deviceID": "0000:01:10.4"}}),
        ))
        .unwrap();
        assert_eq!(c.device, Some(pci("0000:01:10.2")));
        let c = DpdkConf::parse(&conf(
            &t,
            json!({"deviceID": null, "runtimeConfig": {"deviceID": "0000:01:10.4"}}),
        ))
        .unwrap();
        assert_eq!(c.device, Some(pci("0000:01:10.4")));
        for (bad, what) in [
            (
                json!({"deviceID": "01:10.0"}),
                "dpdk: invalid \"deviceID\" value \"01:10.0\": must be a PCI address",
            ),
            (
                json!({"deviceID": 3}),
                "invalid \"deviceID\" value 3: must be a string",
            ),
            (
                json!({"allowNoIommu": "yes"}),
                "invalid \"allowNoIommu\" value \"yes\": must be a boolean",
            ),
            (
                json!({"runtimeConfig": []}),
                "invalid \"runtimeConfig\" value []: must be an object",
            ),
        ] {
            let e = DpdkConf::parse(&conf(&t, bad)).unwrap_err();
            assert_eq!(e.code.code(), 7);
            assert!(e.msg.contains(what), "{e}");
        }
    }

    #[tokio::test]
    async fn add_check_del() {
        let t = setup();
        let c = conf(&t, json!({}));
        let r = t
            .dpdk
            .add(&ctx(Command::Add, "c1", "net1"), &c)
            .await
            .unwrap();
        let v = r.to_value("1.1.0").unwrap();
        assert_eq!(
            v["interfaces"],
            json!([{"name": "net1", "sandbox": "/var/run/netns/p1", "pciID": "0000:01:10.0"}])
        );
        assert!(v.get("ips").is_none());
        assert_eq!(driver(&t, "0000:01:10.0").as_deref(), Some("vfio-pci"));
        assert!(t.sim.dev_vfio.join("8").exists());
        let info: Value = serde_json::from_slice(&fs::read(&t.devinfo).unwrap()).unwrap();
        assert_eq!(
            info,
            json!({"type": "pci", "version": "1.1.0",
                "pci": {"pci-address": "0000:01:10.0", "pf-pci-address": "0000:01:00.0",
                    "vfio-device": t.sim.dev_vfio.join("8")}})
        );
        let rec: Value =
            serde_json::from_slice(&fs::read(t.state.join("c1@net1.json")).unwrap()).unwrap();
        assert_eq!(rec["phase"], "bound");
        assert_eq!(
            rec["original"],
            json!({"driver": "igbvf", "netdev": "ens1v0", "mac": "02:00:00:00:01:00", "up": true})
        );
        assert_eq!(
            rec["vfioDevice"],
            t.sim.dev_vfio.join("8").to_string_lossy().as_ref()
        );
        t.dpdk
            .check(&ctx(Command::Check, "c1", "net1"), &c)
            .await
            .unwrap();

        // ADD again: the same answer, nothing done.
        let n = t.sim.log().len();
        let r2 = t
            .dpdk
            .add(&ctx(Command::Add, "c1", "net1"), &c)
            .await
            .unwrap();
        assert_eq!(r2, r);
        assert_eq!(t.sim.log().len(), n);
        // Another attachment cannot take the same device; this one cannot switch devices.
        let e = t
            .dpdk
            .add(&ctx(Command::Add, "c2", "net1"), &c)
            .await
            .unwrap_err();
        assert!(
            e.msg
                .contains("0000:01:10.0 is already bound for container c1 ifname net1"),
            "{e}"
        );
        let e = t
            .dpdk
            .add(
                &ctx(Command::Add, "c1", "net1"),
                &conf(&t, json!({"deviceID": "0000:01:10.2"})),
            )
            .await
            .unwrap_err();
        assert!(e.msg.contains("already holds 0000:01:10.0"), "{e}");
        // A CHECK of an attachment with nothing bound fails.
        let e = t
            .dpdk
            .check(&ctx(Command::Check, "c9", "net1"), &c)
            .await
            .unwrap_err();
        assert!(
            e.msg
                .contains("no device is bound for container c9 ifname net1"),
            "{e}"
        );

        // DEL: back on igbvf, record and device-info gone; again: nothing to do.
        t.dpdk
            .del(&ctx(Command::Del, "c1", "net1"), &c)
            .await
            .unwrap();
        assert_eq!(driver(&t, "0000:01:10.0").as_deref(), Some("igbvf"));
        assert!(!t.devinfo.exists());
        assert!(!t.state.join("c1@net1.json").exists());
        let n = t.sim.log().len();
        t.dpdk
            .del(&ctx(Command::Del, "c1", "net1"), &c)
            .await
            .unwrap();
        // DEL with a config that has no device at all still works.
        t.dpdk
            .del(
                &ctx(Command::Del, "c1", "net1"),
                &conf(&t, json!({"deviceID": "junk"})),
            )
            .await
            .unwrap();
        assert_eq!(t.sim.log().len(), n);
        let e = t
            .dpdk
            .check(&ctx(Command::Check, "c1", "net1"), &c)
            .await
            .unwrap_err();
        assert!(e.msg.contains("no device is bound"), "{e}");
    }

    #[tokio::test]
    async fn a_failed_add_leaves_the_device_and_no_record() {
        let t = setup();
        t.sim.fail(Fault::Probe, 0);
        let e = t
            .dpdk
            .add(&ctx(Command::Add, "c1", "net1"), &conf(&t, json!({})))
            .await
            .unwrap_err();
        assert_eq!(e.code.code(), 103);
        assert!(
            e.msg
                .contains("rolled back: 0000:01:10.0 is bound to igbvf again"),
            "{e}"
        );
        assert_eq!(driver(&t, "0000:01:10.0").as_deref(), Some("igbvf"));
        assert!(!t.state.join("c1@net1.json").exists());
        assert!(!t.devinfo.exists());
        // No device: a config error.
        let e = t
            .dpdk
            .add(
                &ctx(Command::Add, "c1", "net1"),
                &conf(&t, json!({"deviceID": null})),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code.code(), 7);
        assert!(e.msg.contains("no device given"), "{e}");
        // The device-info file cannot be written: the bind is undone.
        let blocker = t.state.parent().unwrap().join("file");
        fs::write(&blocker, "").unwrap();
        let e = t
            .dpdk
            .add(
                &ctx(Command::Add, "c1", "net1"),
                &conf(
                    &t,
                    json!({"runtimeConfig": {"CNIDeviceInfoFile": blocker.join("x")}}),
                ),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code.code(), 5);
        assert!(e.msg.contains("device-info file"), "{e}");
        assert_eq!(driver(&t, "0000:01:10.0").as_deref(), Some("igbvf"));
        assert!(!t.state.join("c1@net1.json").exists());
    }

    #[tokio::test]
    async fn an_interrupted_add_is_undone_by_del() {
        let t = setup();
        // The rollback fails too: the device is left unbound, the record (phase binding) stays for DEL.
        t.sim.fail(Fault::Probe, 0);
        t.sim.fail(Fault::SetOverride, 1);
        let c = conf(&t, json!({}));
        let e = t
            .dpdk
            .add(&ctx(Command::Add, "c1", "net1"), &c)
            .await
            .unwrap_err();
        assert!(e.msg.contains("ROLLBACK FAILED"), "{e}");
        assert_eq!(driver(&t, "0000:01:10.0"), None);
        let rec: Value =
            serde_json::from_slice(&fs::read(t.state.join("c1@net1.json")).unwrap()).unwrap();
        assert_eq!(rec["phase"], "binding");
        assert_eq!(rec["original"]["driver"], "igbvf");
        // A retried ADD keeps the true original (igbvf), not "unbound".
        t.dpdk
            .add(&ctx(Command::Add, "c1", "net1"), &c)
            .await
            .unwrap();
        let rec: Value =
            serde_json::from_slice(&fs::read(t.state.join("c1@net1.json")).unwrap()).unwrap();
        assert_eq!(rec["original"]["driver"], "igbvf");
        t.dpdk
            .del(&ctx(Command::Del, "c1", "net1"), &c)
            .await
            .unwrap();
        assert_eq!(driver(&t, "0000:01:10.0").as_deref(), Some("igbvf"));
    }

    #[tokio::test]
    async fn status_and_gc() {
        let t = setup();
        let c = conf(&t, json!({}));
        t.dpdk
            .status(&ctx(Command::Status, "", ""), &c)
            .await
            .unwrap();
        t.dpdk
            .add(&ctx(Command::Add, "c1", "net1"), &c)
            .await
            .unwrap();
        t.dpdk
            .add(
                &ctx(Command::Add, "c2", "net1"),
                &conf(&t, json!({"deviceID": "0000:01:10.2"})),
            )
            .await
            .unwrap();
        let mut gc = conf(&t, json!({}));
        gc.set_valid_attachments(&[multus_core::cni::AttachmentRef {
            container_id: "c2".into(),
            ifname: "net1".into(),
        }]);
        t.dpdk.gc(&ctx(Command::Gc, "", ""), &gc).await.unwrap();
        assert_eq!(driver(&t, "0000:01:10.0").as_deref(), Some("igbvf"));
        assert_eq!(driver(&t, "0000:01:10.2").as_deref(), Some("vfio-pci"));
        assert_eq!(Store::new(&t.state).list().unwrap().len(), 1);
        fs::remove_dir(t.sim.fake.root().join("sys/bus/pci/drivers/vfio-pci")).unwrap();
        let e = t
            .dpdk
            .status(&ctx(Command::Status, "", ""), &c)
            .await
            .unwrap_err();
        assert_eq!(e.code.code(), 50);
        assert!(e.msg.contains("vfio-pci driver is not loaded"), "{e}");
    }
}
