# shellcheck shell=bash disable=SC2034
# Sourced by the node scripts: its fixed addresses and names.
NODE_IP=10.244.0.1                          # the bridge: the node's address, the pods' gateway, cluster DNS
POD_CIDR=10.244.0.0/24
BRIDGE=kube-e2e0
NODE_NAME=e2e-node
PAUSE_IMAGE=localhost/kafka-smq/pause:e2e
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
