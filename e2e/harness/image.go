package harness

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// StartImage starts a generation exactly as a container runtime starts an
// image: from its exported file system rootfs and its config, argv is
// Entrypoint + Cmd, the environment is the config's Env and nothing else but
// QUINISTRY_ADDR=127.0.0.1:0, the user is the config's User (numeric, with no
// supplementary groups) and the working directory its WorkingDir. runner
// (such as qemu-aarch64-static) runs a foreign binary. rootfs and the
// folders above it must be reachable by that user (TempDir's are).
func StartImage(t testing.TB, name, rootfs string, cfg *v1.ConfigFile, runner ...string) *Server {
	t.Helper()
	return StartImageEnv(t, name, rootfs, cfg, nil, runner...)
}

// StartImageEnv is StartImage with env (K=V) added to the config's Env, as
// a runtime's --env or a pod's env adds it (QUINISTRY_ATTESTATIONS, say).
func StartImageEnv(t testing.TB, name, rootfs string, cfg *v1.ConfigFile, env []string, runner ...string) *Server {
	t.Helper()
	argv := append(append([]string(nil), cfg.Config.Entrypoint...), cfg.Config.Cmd...)
	if len(argv) == 0 {
		t.Fatalf("%s: the image config has no Entrypoint or Cmd", name)
	}
	argv[0] = filepath.Join(rootfs, argv[0])
	user := cfg.Config.User
	if user == "" {
		user = "0"
	}
	uid, err := strconv.ParseUint(user, 10, 32)
	if err != nil {
		t.Fatalf("%s: the image's user %q is not numeric", name, user)
	}
	u := uint32(uid)
	workdir := cfg.Config.WorkingDir
	if workdir == "" {
		workdir = "/"
	}
	var run []string
	for _, r := range runner {
		p, err := exec.LookPath(r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		run = append(run, p)
	}
	env = append(append(append([]string(nil), cfg.Config.Env...), env...), "QUINISTRY_ADDR=127.0.0.1:0")
	return StartWith(t, name, Options{Env: env, Dir: filepath.Join(rootfs, workdir), User: &u, Runner: run}, argv...)
}

// Describe says how StartImage starts an image with cfg, for subtest names
// and failure messages.
func Describe(cfg *v1.ConfigFile, runner ...string) string {
	argv := append(append([]string(nil), cfg.Config.Entrypoint...), cfg.Config.Cmd...)
	s := "argv " + strings.Join(argv, " ") + ", env " + strings.Join(cfg.Config.Env, " ") + ", user " + cfg.Config.User
	if len(runner) > 0 {
		s += ", under " + strings.Join(runner, " ")
	}
	return s
}

// AsUser returns process attributes that run a command as uid and gid id
// with no supplementary groups.
func AsUser(id uint32) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: id, Gid: id, Groups: []uint32{}}}
}
