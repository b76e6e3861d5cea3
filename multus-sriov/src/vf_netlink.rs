//! The thin netlink effect for VF settings on a PF: [`read_vf_state`] (one `RTM_GETLINK` of the PF with the
//! VF extent mask) and [`apply_changes`] (one `RTM_SETLINK` with an `IFLA_VFINFO_LIST` per [`VfChange`]).
//!
//! Nothing here decides what to change: [`crate::config::plan_changes`] plans, these functions carry the plan
//! out, and the undo is the plan's [`VfChange::reverse`] applied in reverse order. The conversions between the
//! config types and the netlink attributes are small pure functions ([`change_attrs`], [`settings_from_attrs`],
//! [`find_vf`]) with unit tests; only the two async functions talk to the kernel.
//!
//! The VF's settings are read with a GET of the PF *by index*, never a dump, so a PF with many VFs costs one
//! message (which still has to fit the 64 KiB receive buffer: about 220 VFs).
//!
//! ```no_run
//! use multus_core::netlink::Netlink;
//! use multus_sriov::vf_netlink::{apply_changes, read_vf_state};
//! use multus_sriov::config::{VfChange, LinkState};
//!
//! # async fn demo(pf_index: u32) -> Result<(), multus_core::cni::CniError> {
//! let nl = Netlink::current()?;
//! let before = read_vf_state(&nl, pf_index, 0).await?;
//! let plan = [VfChange::LinkState { from: before.link_state, to: LinkState::Disable }];
//! apply_changes(&nl, pf_index, 0, &plan).await?;
//! let undo: Vec<VfChange> = plan.iter().rev().map(|c| c.reverse()).collect();
//! apply_changes(&nl, pf_index, 0, &undo).await?;
//! # Ok(())
//! # }
//! ```

use crate::config::{LinkState, VfChange, VlanConf, VlanProto};
use multus_core::cni::CniError;
use multus_core::netlink::MacAddr;
use multus_core::netlink::Netlink;
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkVfInfo, VfInfo, VfInfoLinkState, VfInfoMac, VfInfoRate,
    VfInfoSpoofCheck, VfInfoTrust, VfLinkState, VfVlan, VfVlanInfo, VlanProtocol,
};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::LinkUnspec;

pub use crate::config::VfSettings;

/// The name of the setting a change touches, for error messages (the sriov-cni config key).
pub fn setting_name(change: &VfChange) -> &'static str {
    match change {
        VfChange::Mac { .. } => "mac",
        VfChange::Vlan { .. } => "vlan",
        VfChange::SpoofChk { .. } => "spoofchk",
        VfChange::Trust { .. } => "trust",
        VfChange::LinkState { .. } => "link_state",
        VfChange::TxRate { .. } => "min_tx_rate/max_tx_rate",
    }
}

fn proto_to_nl(p: VlanProto) -> VlanProtocol {
    match p {
        VlanProto::Dot1Q => VlanProtocol::Ieee8021Q,
        VlanProto::Dot1Ad => VlanProtocol::Ieee8021Ad,
    }
}

fn proto_from_nl(p: VlanProtocol) -> VlanProto {
    match p {
        VlanProtocol::Ieee8021Ad => VlanProto::Dot1Ad,
        _ => VlanProto::Dot1Q,
    }
}

fn link_state_to_nl(l: LinkState) -> VfLinkState {
    match l {
        LinkState::Auto => VfLinkState::Auto,
        LinkState::Enable => VfLinkState::Enable,
        LinkState::Disable => VfLinkState::Disable,
    }
}

fn link_state_from_nl(l: VfLinkState) -> Option<LinkState> {
    LinkState::from_kernel_value(u32::from(l))
}

/// The `IFLA_VF_INFO` attributes that set `change`'s new value on VF `vf` (one change group = one
/// `IFLA_VF_INFO`). The VLAN is sent as `IFLA_VF_VLAN_LIST`, which carries the protocol; the rates as
/// `IFLA_VF_RATE` (min and max together).
pub fn change_attrs(vf: u32, change: &VfChange) -> Vec<VfInfo> {
    match *change {
        VfChange::Mac { to, .. } => vec![VfInfo::Mac(VfInfoMac::new(vf, &to.0))],
        VfChange::Vlan { to, .. } => vec![VfInfo::VlanList(vec![VfVlan::Info(VfVlanInfo::new(
            vf,
            u32::from(to.id),
            u32::from(to.qos),
            proto_to_nl(to.proto),
        ))])],
        VfChange::SpoofChk { to, .. } => vec![VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, to))],
        VfChange::Trust { to, .. } => vec![VfInfo::Trust(VfInfoTrust::new(vf, to))],
        VfChange::LinkState { to, .. } => vec![VfInfo::LinkState(VfInfoLinkState::new(
            vf,
            link_state_to_nl(to),
        ))],
        VfChange::TxRate { to: (min, max), .. } => {
            vec![VfInfo::Rate(VfInfoRate::new(vf, min, max))]
        }
    }
}

/// The VF number an `IFLA_VF_INFO` describes (from its `IFLA_VF_MAC`, which the kernel always sends).
pub fn vf_id(attrs: &[VfInfo]) -> Option<u32> {
    attrs.iter().find_map(|a| match a {
        VfInfo::Mac(m) => Some(m.vf_id),
        _ => None,
    })
}

/// A VF's settings from its `IFLA_VF_INFO` attributes. Fails naming the attribute when the kernel sent a
/// value this crate has no type for (a link state other than auto/enable/disable, a VLAN ID or QoS out of range,
/// a MAC longer than 6 octets with non-zero tail).
pub fn settings_from_attrs(attrs: &[VfInfo]) -> Result<VfSettings, String> {
    let mut s = VfSettings::default();
    let mut have_list = false;
    for a in attrs {
        match a {
            VfInfo::Mac(m) => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&m.mac[..6]);
                if m.mac[6..].iter().any(|b| *b != 0) {
                    return Err(format!("IFLA_VF_MAC {:02x?} is not an Ethernet MAC", m.mac));
                }
                s.mac = MacAddr(mac);
            }
            VfInfo::Vlan(v) if !have_list => {
                s.vlan.id = u16::try_from(v.vlan_id)
                    .map_err(|_| format!("IFLA_VF_VLAN id {} out of range", v.vlan_id))?;
                s.vlan.qos = u8::try_from(v.qos)
                    .map_err(|_| format!("IFLA_VF_VLAN qos {} out of range", v.qos))?;
            }
            VfInfo::VlanList(list) => {
                if let Some(info) = list.iter().find_map(|v| match v {
                    VfVlan::Info(i) => Some(i),
                    _ => None,
                }) {
                    have_list = true;
                    s.vlan = VlanConf {
                        id: u16::try_from(info.vlan_id).map_err(|_| {
                            format!("IFLA_VF_VLAN_INFO id {} out of range", info.vlan_id)
                        })?,
                        qos: u8::try_from(info.qos).map_err(|_| {
                            format!("IFLA_VF_VLAN_INFO qos {} out of range", info.qos)
                        })?,
                        proto: proto_from_nl(info.protocol),
                    };
                }
            }
            VfInfo::SpoofCheck(x) => s.spoofchk = x.enabled,
            VfInfo::Trust(x) => s.trust = x.enabled,
            VfInfo::LinkState(x) => {
                s.link_state = link_state_from_nl(x.state)
                    .ok_or_else(|| format!("IFLA_VF_LINK_STATE {:?} unknown", x.state))?;
            }
            VfInfo::Rate(r) => {
                s.min_tx_rate = r.min_tx_rate;
                s.max_tx_rate = r.max_tx_rate;
            }
            _ => {}
        }
    }
    Ok(s)
}

/// The settings of VF `vf` from a PF's link attributes (its `IFLA_VFINFO_LIST`). Errors say what is missing.
pub fn find_vf(attrs: &[LinkAttribute], vf: u32) -> Result<VfSettings, String> {
    let list = attrs
        .iter()
        .find_map(|a| match a {
            LinkAttribute::VfInfoList(l) => Some(l),
            _ => None,
        })
        .ok_or("the PF reported no VF list (SR-IOV off, or no VFs enabled)")?;
    let info = list
        .iter()
        .find(|i| vf_id(&i.0) == Some(vf))
        .ok_or_else(|| format!("the PF reports {} VFs and not VF {vf}", list.len()))?;
    settings_from_attrs(&info.0)
}

/// Reads VF `vf`'s settings from the PF with interface index `pf_index` (in `nl`'s namespace): one
/// `RTM_GETLINK` with `IFLA_EXT_MASK` = `RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS`.
pub async fn read_vf_state(nl: &Netlink, pf_index: u32, vf: u32) -> Result<VfSettings, CniError> {
    let mut msg = LinkUnspec::new_with_index(pf_index).build();
    msg.attributes.push(LinkAttribute::ExtMask(vec![
        LinkExtentMask::Vf,
        LinkExtentMask::SkipStats,
    ]));
    let answer = nl
        .request(RouteNetlinkMessage::GetLink(msg), 0)
        .await
        .map_err(|e| {
            CniError::kernel(format!(
                "sriov: cannot read the VFs of PF ifindex {pf_index}: {e}"
            ))
        })?;
    let link = answer
        .into_iter()
        .find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .ok_or_else(|| {
            CniError::kernel(format!(
                "sriov: the kernel sent no link for PF ifindex {pf_index}"
            ))
        })?;
    find_vf(&link.attributes, vf).map_err(|e| {
        CniError::kernel(format!(
            "sriov: cannot read VF {vf} of PF ifindex {pf_index}: {e}"
        ))
    })
}

/// Applies `changes` to VF `vf` of the PF with index `pf_index`, in order, one `RTM_SETLINK` per change. Stops at
/// the first failure: the changes before it stay applied (the caller undoes them with the reverse of the
/// applied prefix). The error names the PF, the VF, the setting and the kernel's answer.
pub async fn apply_changes(
    nl: &Netlink,
    pf_index: u32,
    vf: u32,
    changes: &[VfChange],
) -> Result<(), CniError> {
    for change in changes {
        let mut msg = LinkUnspec::new_with_index(pf_index).build();
        msg.attributes
            .push(LinkAttribute::VfInfoList(vec![LinkVfInfo(change_attrs(
                vf, change,
            ))]));
        nl.request(RouteNetlinkMessage::SetLink(msg), 0)
            .await
            .map_err(|e| {
                CniError::kernel(format!(
                    "sriov: cannot set {} of VF {vf} on PF ifindex {pf_index} ({change:?}): {e}",
                    setting_name(change)
                ))
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::link::{VfInfoTrust, VfInfoVlan};

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    fn vlan(id: u16, qos: u8, proto: VlanProto) -> VlanConf {
        VlanConf { id, qos, proto }
    }

    /// What the kernel sends for one VF (as rtnl_fill_vfinfo does: MAC first, legacy VLAN, VLAN list, ...).
    fn kernel_vf(vf: u32, s: &VfSettings) -> Vec<VfInfo> {
        vec![
            VfInfo::Mac(VfInfoMac::new(vf, &s.mac.0)),
            VfInfo::Vlan(VfInfoVlan::new(
                vf,
                u32::from(s.vlan.id),
                u32::from(s.vlan.qos),
            )),
            VfInfo::VlanList(vec![VfVlan::Info(VfVlanInfo::new(
                vf,
                u32::from(s.vlan.id),
                u32::from(s.vlan.qos),
                proto_to_nl(s.vlan.proto),
            ))]),
            VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, s.spoofchk)),
            VfInfo::LinkState(VfInfoLinkState::new(vf, link_state_to_nl(s.link_state))),
            VfInfo::Rate(VfInfoRate::new(vf, s.min_tx_rate, s.max_tx_rate)),
            VfInfo::Trust(VfInfoTrust::new(vf, s.trust)),
        ]
    }

    fn sample() -> VfSettings {
        VfSettings {
            mac: mac("02:11:22:33:44:55"),
            vlan: vlan(100, 3, VlanProto::Dot1Ad),
            spoofchk: false,
            trust: true,
            link_state: LinkState::Disable,
            min_tx_rate: 10,
            max_tx_rate: 500,
        }
    }

    #[test]
    fn each_change_is_one_attribute_with_the_new_value() {
        let c = VfChange::Mac {
            from: MacAddr::default(),
            to: mac("02:11:22:33:44:55"),
        };
        assert_eq!(
            change_attrs(3, &c),
            vec![VfInfo::Mac(VfInfoMac::new(
                3,
                &[2, 0x11, 0x22, 0x33, 0x44, 0x55]
            ))]
        );
        let c = VfChange::Vlan {
            from: VlanConf::default(),
            to: vlan(100, 3, VlanProto::Dot1Q),
        };
        assert_eq!(
            change_attrs(1, &c),
            vec![VfInfo::VlanList(vec![VfVlan::Info(VfVlanInfo::new(
                1,
                100,
                3,
                VlanProtocol::Ieee8021Q
            ))])]
        );
        let c = VfChange::LinkState {
            from: LinkState::Auto,
            to: LinkState::Disable,
        };
        assert_eq!(
            change_attrs(0, &c),
            vec![VfInfo::LinkState(VfInfoLinkState::new(
                0,
                VfLinkState::Disable
            ))]
        );
        let c = VfChange::TxRate {
            from: (0, 0),
            to: (10, 500),
        };
        assert_eq!(
            change_attrs(2, &c),
            vec![VfInfo::Rate(VfInfoRate::new(2, 10, 500))]
        );
        assert_eq!(
            change_attrs(
                0,
                &VfChange::SpoofChk {
                    from: true,
                    to: false
                }
            ),
            vec![VfInfo::SpoofCheck(VfInfoSpoofCheck::new(0, false))]
        );
        assert_eq!(
            change_attrs(
                0,
                &VfChange::Trust {
                    from: false,
                    to: true
                }
            ),
            vec![VfInfo::Trust(VfInfoTrust::new(0, true))]
        );
        // The undo sets the old value.
        assert_eq!(
            change_attrs(0, &c.reverse()),
            vec![VfInfo::Rate(VfInfoRate::new(0, 0, 0))]
        );
    }

    #[test]
    fn settings_round_trip_through_kernel_attributes() {
        let s = sample();
        assert_eq!(settings_from_attrs(&kernel_vf(4, &s)), Ok(s));
        assert_eq!(vf_id(&kernel_vf(4, &s)), Some(4));
        assert_eq!(
            settings_from_attrs(&kernel_vf(0, &VfSettings::default())),
            Ok(VfSettings::default())
        );
        // Only the legacy VLAN attribute: 802.1Q.
        let only_legacy = vec![
            VfInfo::Mac(VfInfoMac::new(0, &s.mac.0)),
            VfInfo::Vlan(VfInfoVlan::new(0, 7, 2)),
        ];
        let got = settings_from_attrs(&only_legacy).unwrap();
        assert_eq!(got.vlan, vlan(7, 2, VlanProto::Dot1Q));
        // The list wins over the legacy attribute whichever comes first.
        let mut attrs = kernel_vf(0, &s);
        attrs.swap(1, 2);
        assert_eq!(settings_from_attrs(&attrs).unwrap().vlan, s.vlan);
    }

    #[test]
    fn bad_kernel_values_are_named() {
        let e = settings_from_attrs(&[VfInfo::LinkState(VfInfoLinkState::new(
            0,
            VfLinkState::Other(9),
        ))])
        .unwrap_err();
        assert!(e.contains("IFLA_VF_LINK_STATE"), "{e}");
        let e = settings_from_attrs(&[VfInfo::Vlan(VfInfoVlan::new(0, 70000, 0))]).unwrap_err();
        assert!(e.contains("IFLA_VF_VLAN id 70000"), "{e}");
    }

    #[test]
    fn find_vf_picks_the_right_one() {
        let a = VfSettings::default();
        let b = sample();
        let attrs = vec![
            LinkAttribute::Mtu(1500),
            LinkAttribute::VfInfoList(vec![
                LinkVfInfo(kernel_vf(0, &a)),
                LinkVfInfo(kernel_vf(1, &b)),
            ]),
        ];
        assert_eq!(find_vf(&attrs, 1), Ok(b));
        assert_eq!(find_vf(&attrs, 0), Ok(a));
        let e = find_vf(&attrs, 2).unwrap_err();
        assert!(e.contains("2 VFs and not VF 2"), "{e}");
        let e = find_vf(&[LinkAttribute::Mtu(1500)], 0).unwrap_err();
        assert!(e.contains("no VF list"), "{e}");
    }

    #[test]
    fn settings_into_state_and_names() {
        let st = sample().into_state("enp1s0v0", 1500);
        assert_eq!(st.host_ifname, "enp1s0v0");
        assert_eq!(st.mtu, 1500);
        assert_eq!(st.settings.vlan, vlan(100, 3, VlanProto::Dot1Ad));
        assert_eq!(
            setting_name(&VfChange::TxRate {
                from: (0, 0),
                to: (0, 1)
            }),
            "min_tx_rate/max_tx_rate"
        );
    }
}
