package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DockerTimeout bounds every docker CLI call: nothing may hang a suite.
var DockerTimeout = 3 * time.Minute

// ContainerReadyTimeout is how long RunContainer waits for a container's
// ready line; an emulated one starts slowly on a loaded machine.
var ContainerReadyTimeout = 2 * time.Minute

// Docker is a private Docker daemon (with its own containerd), brought up by
// scripts/bring/dockerd.sh for one test and stopped when it ends, and the
// docker CLI that talks to it, with its configuration in a temporary
// directory of its own.
type Docker struct {
	// CLI is the docker CLI the bring-up names (the CLI 28).
	CLI string
	// Host is the daemon's DOCKER_HOST (unix://...).
	Host string
	// Config is the CLI's DOCKER_CONFIG directory.
	Config string
	// Dir holds the daemon's sockets, data and log.
	Dir string
}

// StartDocker brings up a private dockerd under a new temporary directory
// and stops it, with every container it runs, when the test ends.
func StartDocker(t testing.TB) *Docker {
	t.Helper()
	// a short directory of its own: containerd's socket paths under it must
	// fit in a unix socket address (104 bytes)
	dir, err := os.MkdirTemp("", "qd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	vars := BringUp(t, "dockerd", filepath.Join(dir, "d"))
	d := &Docker{CLI: vars["DOCKER"], Host: vars["DOCKER_HOST"], Config: filepath.Join(dir, "config"), Dir: filepath.Join(dir, "d")}
	if d.CLI == "" || d.Host == "" {
		t.Fatalf("dockerd.sh up printed no DOCKER or DOCKER_HOST: %v", vars)
	}
	if err := os.Mkdir(d.Config, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

// Env returns the environment each docker CLI call gets: the daemon's
// address, the private configuration, and PATH.
func (d *Docker) Env() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + d.Config, "DOCKER_HOST=" + d.Host, "DOCKER_CONFIG=" + d.Config}
}

// RunErr runs the docker CLI with args, bounded by DockerTimeout, and
// returns its standard output and standard error; the error carries the
// exit status and standard error.
func (d *Docker) RunErr(args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), DockerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.CLI, args...)
	cmd.Env = d.Env()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), e.String(), &RunError{Err: err, Stderr: e.String()}
	}
	return o.String(), e.String(), nil
}

// Run runs the docker CLI with args and returns its standard output; a
// failure fails the test, showing what it printed.
func (d *Docker) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, _, err := d.RunErr(args...)
	if err != nil {
		t.Fatalf("docker %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// DockerImage is what `docker image inspect` says of an image, in part.
type DockerImage struct {
	ID           string `json:"Id"`
	RepoDigests  []string
	Os           string
	Architecture string
	Variant      string
	Config       struct {
		Entrypoint   []string
		User         string
		ExposedPorts map[string]struct{}
	}
}

// Container is a container started by RunContainer that runs quinistry.
type Container struct {
	// Name is its name; ID its container ID.
	Name, ID string
	// Addr is the address it logged in its ready line.
	Addr string
	// Log is its log as `docker logs --follow` streams it.
	Log *Log

	d *Docker
}

// RunContainer runs `docker run --detach --name NAME args...` (args end with
// the image and its arguments; give it `--addr 127.0.0.1:0` and host
// networking so that it serves on the host's loopback), follows its log,
// and waits until it logs its ready line. The error says why it did not,
// with the container's state and log. The container is removed, by force,
// when the test ends.
func (d *Docker) RunContainer(t testing.TB, name string, args ...string) (*Container, error) {
	t.Helper()
	t.Cleanup(func() { _, _, _ = d.RunErr("rm", "--force", "--volumes", name) })
	out, _, err := d.RunErr(append([]string{"run", "--detach", "--name", name}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("docker run %s: %w", strings.Join(args, " "), err)
	}
	c := &Container{Name: name, ID: strings.TrimSpace(out), Log: newLog(), d: d}
	// docker logs --follow ends when the container is removed
	ctx, cancel := context.WithCancel(context.Background())
	follow := exec.CommandContext(ctx, d.CLI, "logs", "--follow", name)
	follow.Env = d.Env()
	r, w, err := os.Pipe()
	if err != nil {
		cancel()
		return nil, err
	}
	follow.Stdout, follow.Stderr = w, w
	if err := follow.Start(); err != nil {
		cancel()
		r.Close()
		w.Close()
		return nil, fmt.Errorf("docker logs --follow %s: %w", name, err)
	}
	w.Close()
	read := make(chan struct{})
	go func() { c.Log.read(r); r.Close(); close(read) }()
	done := make(chan struct{})
	go func() { _ = follow.Wait(); close(done) }()
	// runs before the removal above: cleanups run last first
	t.Cleanup(func() {
		_, _, _ = d.RunErr("rm", "--force", "--volumes", name)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
		cancel()
		<-done
		<-read
	})
	rec, err := c.Log.WaitErr(ContainerReadyTimeout, func(r Record) bool { return r.Msg() == "ready" })
	if err != nil {
		state, _, _ := d.RunErr("inspect", "--format", "{{.State.Status}} exit={{.State.ExitCode}} {{.State.Error}}", name)
		return nil, fmt.Errorf("container %s did not log its ready line: %w; its state: %s; its log:\n%s", name, err, strings.TrimSpace(state), c.Log.Text())
	}
	c.Addr = rec["addr"]
	return c, nil
}

// PID returns the host PID of the container's first process (its
// quinistry), as its runtime reports it.
func (c *Container) PID(t testing.TB) int {
	t.Helper()
	out := strings.TrimSpace(c.d.Run(t, "inspect", "--format", "{{.State.Pid}}", c.Name))
	pid, err := strconv.Atoi(out)
	if err != nil || pid <= 0 {
		t.Fatalf("container %s has no running process (State.Pid %q)", c.Name, out)
	}
	return pid
}
