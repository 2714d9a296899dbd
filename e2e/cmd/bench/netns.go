package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// httpClientIn returns an HTTP client whose connections are made in the
// network namespace at nsPath (such as /run/netns/NAME), or in this
// process's own when nsPath is "". A socket belongs to the namespace its
// creating thread is in: each dial locks its goroutine to a thread, moves
// that thread into the namespace, dials, and moves it back.
func httpClientIn(nsPath string) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if nsPath != "" {
		d := &net.Dialer{Timeout: 30 * time.Second}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, d, nsPath, network, addr)
		}
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

func dialIn(ctx context.Context, d *net.Dialer, nsPath, network, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer own.Close()
	target, err := os.Open(nsPath)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("entering %s: %w", nsPath, err)
	}
	conn, dialErr := d.DialContext(ctx, network, addr)
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		// the thread stays locked, and so ends with its goroutine: no other
		// goroutine runs in the wrong namespace
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("leaving %s: %w", nsPath, err)
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}
