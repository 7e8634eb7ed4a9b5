// CoreDNS with only the plugins the node's cluster DNS uses (upstream's coredns.go imports all of
// them, cloud providers included): the kubernetes plugin answers <svc>.<ns>.svc.cluster.local and
// the headless Service's <pod>.<svc>.<ns>.svc.cluster.local records from the API server.
package main

import (
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
