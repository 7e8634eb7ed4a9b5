// kube-scheduler as upstream builds it (cmd/kube-scheduler/scheduler.go), without the optional
// JSON-logging and metrics blank imports. The node of e2e/node runs it.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
