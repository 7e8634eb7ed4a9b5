// kubelet as upstream builds it (cmd/kubelet/kubelet.go), without the optional JSON-logging and
// metrics blank imports. The node of e2e/node runs it.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
