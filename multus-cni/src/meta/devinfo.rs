//! The device information files of a pod's attachments (device-info spec 1.1, as Go Multus handles them):
//! an attachment with a device (`runtimeConfig.deviceID`) gets `runtimeConfig.CNIDeviceInfoFile`, the
//! device plugin's file is copied there before the ADD, its content after the ADD is the attachment's
//! `device-info` in network-status, and every path that undoes the attachment (DEL, GC, a rollback)
//! removes it.

use multus_core::devinfo;
use multus_core::pipeline::{Attached, Attachment, Attachments};
use multus_k8s::plan::Plan;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Gives every attachment with a device its device information file (Go Multus sets it exactly then).
pub fn assign(atts: &mut Attachments, base: &Path, container_id: &str) {
    atts.edit_runtime_config(|name, ifname, rc| {
        let has_device = rc
            .get("deviceID")
            .and_then(Value::as_str)
            .is_some_and(|d| !d.is_empty());
        if has_device {
            let f = devinfo::cni_path(base, name, container_id, ifname);
            rc.insert(
                devinfo::RUNTIME_CONFIG_KEY.into(),
                Value::String(f.to_string_lossy().into_owned()),
            );
        }
    });
}

/// An attachment's device information file, when it has one.
pub fn file(a: &Attachment) -> Option<PathBuf> {
    a.runtime_config
        .get(devinfo::RUNTIME_CONFIG_KEY)
        .and_then(Value::as_str)
        .map(PathBuf::from)
}

/// Before the delegates' ADD: each device plugin's file (resource and device from the checkpoint) is copied
/// to the attachment's device information file, where its plugins (and, after the ADD, Multus) read it.
pub fn copy_from_device_plugins(plan: &Plan, base: &Path) {
    for (a, res) in plan.attachments.iter().zip(&plan.device_resources) {
        let (Some(res), Some(cni), Some(dev)) = (
            res,
            file(a),
            a.runtime_config.get("deviceID").and_then(Value::as_str),
        ) else {
            continue;
        };
        devinfo::copy_dp_to_cni(&devinfo::dp_path(base, res, dev), &cni);
    }
}

/// The `device-info` of an attachment after its ADD.
pub fn load(a: &Attachment) -> Option<Value> {
    file(a).and_then(|f| devinfo::load(&f))
}

/// Removes the device information files of attachments that were undone.
pub fn remove(atts: &[Attachment]) {
    for f in atts.iter().filter_map(file) {
        devinfo::remove(&f);
    }
}

/// [`remove`] for attached attachments.
pub fn remove_attached(attached: &[Attached]) {
    for a in attached {
        if let Some(f) = file(&a.attachment) {
            devinfo::remove(&f);
        }
    }
}
