package main

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// run is the benchmark's stand-in for a test, so that it can use the e2e
// harness (Dist, StartWith, BringUp, Tool...), whose helpers take a
// testing.TB. Only the methods below are used by the harness; the embedded
// interface is nil, so any other would panic, and the panic ends the run
// with its cleanups done. Fatal and FailNow end the run the same way: call
// them from the main goroutine only.
type run struct {
	testing.TB

	mu       sync.Mutex
	cleanups []func()
	failed   bool
}

// abort is what Fatal panics with; main recovers it.
type abort struct{}

func (r *run) Helper()      {}
func (r *run) Name() string { return "bench" }

func (r *run) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *run) Log(args ...any)                 { say("%s", fmt.Sprint(args...)) }
func (r *run) Logf(format string, args ...any) { say(format, args...) }

func (r *run) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }
func (r *run) Errorf(format string, args ...any) {
	say("error: "+format, args...)
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
}

func (r *run) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }
func (r *run) Fatalf(format string, args ...any) {
	say("failed: "+format, args...)
	r.FailNow()
}

func (r *run) Fail() {
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
}

func (r *run) FailNow() {
	r.Fail()
	panic(abort{})
}

func (r *run) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// cleanup runs the registered cleanups, last first, once.
func (r *run) cleanup() {
	for {
		r.mu.Lock()
		n := len(r.cleanups)
		if n == 0 {
			r.mu.Unlock()
			return
		}
		f := r.cleanups[n-1]
		r.cleanups = r.cleanups[:n-1]
		r.mu.Unlock()
		f()
	}
}

// say writes a progress line on standard error; the report goes to standard
// output.
func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
