// Command pause is the sandbox ("pause") container of the test Kubernetes
// cluster that scripts/lib/cluster.sh starts. A pod's sandbox only has to hold
// the pod's namespaces open: pause sleeps, reaps any child it inherits as
// PID 1, and exits 0 on SIGTERM or SIGINT. The test machines reach no
// registry to pull the usual pause image from, so scripts/lib/cluster.sh
// builds this program static for amd64 and arm64 and packs it with
// internal/pause/mkimage into an OCI layout tar that containerd imports.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var ws syscall.WaitStatus
		if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
			return
		}
	}
}
