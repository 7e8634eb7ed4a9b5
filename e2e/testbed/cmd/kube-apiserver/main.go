// kube-apiserver as upstream builds it (cmd/kube-apiserver/apiserver.go), without the optional
// JSON-logging and client-metrics blank imports.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
