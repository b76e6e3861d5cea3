#!/bin/bash
# Usage: benches/instructions_macvlan.sh BIN TAG   (root; valgrind). Prints the user-space instruction count of one
# macvlan + host-local ADD and DEL through BIN run as `macvlan`, three times (BENCHMARKS.md, issue 13 figures).
# instruction count of one macvlan+host-local ADD and DEL through the binary run as `macvlan`
bin=$1; tag=$2
d=$(mktemp -d); ln -s $bin $d/macvlan
ip link add icm0 type veth peer name icm0p 2>/dev/null; ip link set icm0 up; ip link set icm0p up
conf='{"cniVersion":"1.0.0","name":"icnet","type":"macvlan","master":"icm0","ipam":{"type":"host-local","subnet":"10.123.0.0/24","routes":[{"dst":"0.0.0.0/0"}],"dataDir":"'$d'/ipam"}}'
for i in 1 2 3; do
  ip netns add icns$i
  a=$(echo "$conf" | CNI_COMMAND=ADD CNI_CONTAINERID=c$i CNI_NETNS=/var/run/netns/icns$i CNI_IFNAME=net1 CNI_PATH=/usr/lib/cni valgrind --tool=callgrind --callgrind-out-file=/dev/null $d/macvlan 2>&1 >/dev/null | grep "Collected" | awk '{print $4}')
  b=$(echo "$conf" | CNI_COMMAND=DEL CNI_CONTAINERID=c$i CNI_NETNS=/var/run/netns/icns$i CNI_IFNAME=net1 CNI_PATH=/usr/lib/cni valgrind --tool=callgrind --callgrind-out-file=/dev/null $d/macvlan 2>&1 >/dev/null | grep "Collected" | awk '{print $4}')
  echo "$tag ADD $a DEL $b"
  ip netns del icns$i
done
ip link del icm0; rm -rf $d
