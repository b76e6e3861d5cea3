//! VM test (tests/vm/run.sh): VF settings through netlink on the emulated igb PF with `multus_sriov::vf_netlink`.
//! Reads VF 0's state, plans the changes of a sriov-cni config with `plan_changes`, applies them, checks them with
//! `ip -j -d link show <pf>` and with `read_vf_state`, applies the reverse in reverse order, and checks that the
//! original state is back exactly. Probes link_state, 802.1ad and TX rates, which the emulated igb may refuse
//! (igb: EOPNOTSUPP for link_state).

#[allow(dead_code)]
mod vm_common;

use std::fs;
use std::time::Duration;

use multus_core::cni::PluginConf;
use multus_core::netlink::Netlink;
use multus_sriov::config::{plan_changes, LinkState, SriovConf, VfChange, VlanConf, VlanProto};
use multus_sriov::vf_netlink::{apply_changes, read_vf_state, VfSettings};
use serde_json::json;
use vm_common::{igb_pf, ip_vf, read_attr, require_vm, show, wait_for, NumVfs};

#[test]
fn vm_sriov_vf_settings_apply_and_restore() {
    require_vm();
    let pf = igb_pf();
    let dev = fs::canonicalize(format!("/sys/class/net/{pf}/device")).expect("PF device dir");
    let pf_index: u32 = read_attr(format!("/sys/class/net/{pf}/ifindex"))
        .parse()
        .expect("ifindex");
    let _guard = NumVfs::set(&dev, 2);
    let virtfn = dev.join("virtfn0");
    assert!(
        wait_for(Duration::from_secs(20), || fs::read_dir(virtfn.join("net"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)),
        "VF 0 netdev did not appear"
    );
    let vf_pci = fs::canonicalize(&virtfn)
        .expect("virtfn0")
        .file_name()
        .expect("bdf")
        .to_string_lossy()
        .into_owned();
    let vf_netdev = fs::read_dir(virtfn.join("net"))
        .expect("net dir")
        .next()
        .expect("netdev")
        .expect("entry")
        .file_name()
        .to_string_lossy()
        .into_owned();
    let mtu: u32 = read_attr(format!("/sys/class/net/{vf_netdev}/mtu"))
        .parse()
        .expect("mtu");
    println!("PF {pf} (ifindex {pf_index}), VF 0 = {vf_pci} netdev {vf_netdev}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let nl = Netlink::current().expect("netlink");
        let orig = read_vf_state(&nl, pf_index, 0).await.expect("read VF 0");
        println!("original VF 0 (netlink): {orig:?}");
        assert_eq!(ip_vf(&pf, 0), orig, "read_vf_state agrees with ip");

        let conf = PluginConf::from_slice(
            json!({"cniVersion": "1.0.0", "name": "vf", "type": "sriov", "deviceID": vf_pci,
                "mac": "02:11:22:33:44:55", "vlan": 100, "vlanQoS": 3, "spoofchk": "off", "trust": "on"})
            .to_string()
            .as_bytes(),
        )
        .expect("conf");
        let sconf = SriovConf::parse(&conf).expect("sriov conf");
        let state = orig.into_state(vf_netdev.clone(), mtu);
        let plan = plan_changes(&state, &sconf);
        println!("plan: {plan:?}");
        let want = VfSettings {
            mac: "02:11:22:33:44:55".parse().expect("mac"),
            vlan: VlanConf {
                id: 100,
                qos: 3,
                proto: VlanProto::Dot1Q,
            },
            spoofchk: false,
            trust: true,
            ..orig
        };
        assert_eq!(
            plan.len(),
            4,
            "a fresh igb VF differs in MAC, VLAN, spoofchk (on) and trust (off): {plan:?}"
        );

        apply_changes(&nl, pf_index, 0, &plan).await.expect("apply");
        show(&["-d", "link", "show", &pf]);
        assert_eq!(ip_vf(&pf, 0), want, "ip shows the new settings");
        assert_eq!(
            read_vf_state(&nl, pf_index, 0).await.expect("read"),
            want,
            "read_vf_state shows the new settings"
        );
        // VF 1 is untouched.
        assert_eq!(
            read_vf_state(&nl, pf_index, 1).await.expect("read VF 1"),
            ip_vf(&pf, 1)
        );

        // Probes of what the emulated igb may not support: link_state (igb has no ndo_set_vf_link_state), 802.1ad,
        // TX rates. Either it works and reads back, or
        // the error names PF, VF and setting and nothing changed.
        let probes = [
            VfChange::LinkState {
                from: want.link_state,
                to: LinkState::Disable,
            },
            VfChange::Vlan {
                from: want.vlan,
                to: VlanConf {
                    proto: VlanProto::Dot1Ad,
                    ..want.vlan
                },
            },
            VfChange::TxRate {
                from: (want.min_tx_rate, want.max_tx_rate),
                to: (0, 100),
            },
        ];
        for probe in probes {
            match apply_changes(&nl, pf_index, 0, &[probe]).await {
                Ok(()) => {
                    let got = read_vf_state(&nl, pf_index, 0).await.expect("read");
                    println!("SUPPORTED: {probe:?} -> {got:?}");
                    assert_eq!(ip_vf(&pf, 0), got);
                    apply_changes(&nl, pf_index, 0, &[probe.reverse()])
                        .await
                        .expect("undo probe");
                }
                Err(e) => {
                    println!("NOT SUPPORTED by this NIC: {probe:?}: {e}");
                    let msg = e.to_string();
                    assert!(
                        msg.contains(&format!("PF ifindex {pf_index}")) && msg.contains("VF 0"),
                        "{msg}"
                    );
                }
            }
            assert_eq!(ip_vf(&pf, 0), want, "after probe {probe:?}");
        }

        let undo: Vec<VfChange> = plan.iter().rev().map(|c| c.reverse()).collect();
        apply_changes(&nl, pf_index, 0, &undo).await.expect("undo");
        show(&["-d", "link", "show", &pf]);
        assert_eq!(
            read_vf_state(&nl, pf_index, 0).await.expect("read"),
            orig,
            "original state back (netlink)"
        );
        assert_eq!(ip_vf(&pf, 0), orig, "original state back (ip)");
        println!("VF 0 restored exactly: {orig:?}");
    });
}
