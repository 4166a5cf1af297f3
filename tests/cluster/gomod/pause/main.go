// The Pod sandbox ("pause") process for the real node of the local test cluster. No registry
// can be reached here, so the sandbox image is built locally from this program: it holds the
// Pod's namespaces open, reaps orphaned children (it is PID 1 when the Pod shares its PID
// namespace) and exits on SIGINT or SIGTERM.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			return
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
