// kube-controller-manager as upstream builds it (cmd/kube-controller-manager/controller-manager.go),
// without the optional JSON-logging and metrics blank imports. The testbed runs only its
// namespace and garbage-collector controllers, so namespace deletion and ownerReference cascades
// behave as on a real cluster.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
