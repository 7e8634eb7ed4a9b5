# Sourced by the testbed scripts: pinned versions and where things live.
# Binaries are cached outside the repo, keyed by version, so only the first run builds them.
KUBE_VERSION=1.37.2                                   # k8s.io/kubernetes; staging modules at v0.37.2
ETCD_VERSION=3.7.0                                    # the go.etcd.io/etcd/server/v3 that Kubernetes 1.37.2 pins
TESTBED_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KSMQ_CACHE="${KSMQ_CACHE:-$HOME/.cache/kafka-smq}"
TESTBED_BIN="${TESTBED_BIN:-$KSMQ_CACHE/bin/kube-v$KUBE_VERSION-etcd-v$ETCD_VERSION}"
TESTBED_DIR="${TESTBED_DIR:-$KSMQ_CACHE/testbed}"
