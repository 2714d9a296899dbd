package deploy

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/quinistry/quinistry/index"
)

// decode reads a manifest strictly, as the API server's strict field
// validation does: an unknown field, a field spelt in another case, or a
// duplicate key is an error.
func decode(data []byte) (*appsv1.DaemonSet, error) {
	var ds appsv1.DaemonSet
	if err := decodeInto(data, &ds); err != nil {
		return nil, err
	}
	return &ds, nil
}

// decodeInto decodes YAML into v as strictly as decode does.
func decodeInto(data []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func TestManifests(t *testing.T) {
	tests := []struct {
		file      string
		component string
		hostPort  int32
		image     func(string) bool
	}{
		{"parent.yaml", "parent", 5000, func(img string) bool {
			return !strings.HasPrefix(img, "localhost") && strings.Contains(strings.Split(img, "/")[0], ".")
		}},
		{"child.yaml", "child", 5001, func(img string) bool { return img == "localhost:5000/quinistry:latest" }},
	}
	port, err := strconv.Atoi(index.Port)
	require.NoError(t, err)
	user, err := strconv.ParseInt(index.User, 10, 64)
	require.NoError(t, err)

	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(tt.file)
			require.NoError(t, err)
			ds, err := decode(data)
			require.NoError(t, err)

			assert.Equal(t, "apps/v1", ds.APIVersion)
			assert.Equal(t, "DaemonSet", ds.Kind)
			require.NotNil(t, ds.Spec.Selector)
			for k, v := range ds.Spec.Selector.MatchLabels {
				assert.Equal(t, v, ds.Spec.Template.Labels[k], "the selector matches the pod template")
			}
			assert.Equal(t, tt.component, ds.Spec.Template.Labels["app.kubernetes.io/component"])

			pod := ds.Spec.Template.Spec
			require.NotNil(t, pod.SecurityContext)
			assert.Equal(t, ptr(true), pod.SecurityContext.RunAsNonRoot)
			assert.Equal(t, &user, pod.SecurityContext.RunAsUser, "the image's user")
			assert.Equal(t, ptr(false), pod.AutomountServiceAccountToken)
			require.Len(t, pod.Containers, 1)
			c := pod.Containers[0]
			assert.True(t, tt.image(c.Image), "image %s", c.Image)

			require.Len(t, c.Ports, 1)
			assert.Equal(t, int32(port), c.Ports[0].ContainerPort, "the port quinistry listens on")
			assert.Equal(t, tt.hostPort, c.Ports[0].HostPort)
			assert.Equal(t, corev1.ProtocolTCP, c.Ports[0].Protocol)

			// /v2/ blocks while quinistry packs; /readyz says when it is done, /healthz that it runs.
			for _, p := range []struct {
				name, path string
				probe      *corev1.Probe
			}{{"readiness", "/readyz", c.ReadinessProbe}, {"liveness", "/healthz", c.LivenessProbe}} {
				require.NotNil(t, p.probe, p.name)
				require.NotNil(t, p.probe.HTTPGet, p.name)
				assert.Equal(t, p.path, p.probe.HTTPGet.Path, p.name)
				assert.Equal(t, c.Ports[0].Name, p.probe.HTTPGet.Port.String(), p.name)
			}

			// The kubelet kills the container terminationGracePeriodSeconds after SIGTERM;
			// quinistry's own --shutdown-timeout must end first, with a little room.
			timeout := shutdownTimeout(t, c.Args)
			require.NotNil(t, pod.TerminationGracePeriodSeconds)
			grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
			assert.Less(t, timeout, grace, "--shutdown-timeout ends before the grace period")
			assert.LessOrEqual(t, grace-timeout, 10*time.Second, "the grace period is --shutdown-timeout plus a few seconds")

			sc := c.SecurityContext
			require.NotNil(t, sc)
			assert.Equal(t, ptr(false), sc.AllowPrivilegeEscalation)
			assert.Equal(t, ptr(true), sc.ReadOnlyRootFilesystem)
			assert.Equal(t, ptr(false), sc.Privileged)
			require.NotNil(t, sc.Capabilities)
			assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
			assert.Empty(t, sc.Capabilities.Add)

			// --attestations names a read-only mount of the optional ConfigMap.
			dir := flagValue(t, c.Args, "--attestations")
			require.Len(t, c.VolumeMounts, 1)
			assert.Equal(t, dir, c.VolumeMounts[0].MountPath)
			assert.True(t, c.VolumeMounts[0].ReadOnly)
			require.Len(t, pod.Volumes, 1)
			v := pod.Volumes[0]
			assert.Equal(t, c.VolumeMounts[0].Name, v.Name)
			require.NotNil(t, v.ConfigMap, "the attestations volume is a ConfigMap")
			assert.Equal(t, "quinistry-attestations", v.ConfigMap.Name)
			assert.Equal(t, ptr(true), v.ConfigMap.Optional, "without the ConfigMap the pod runs as before")

			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
				assert.False(t, req.IsZero(), "request %s", r)
				assert.False(t, lim.IsZero(), "limit %s", r)
				assert.LessOrEqual(t, req.Cmp(lim), 0, "%s request within its limit", r)
			}
		})
	}
}

// shutdownTimeout returns the value of --shutdown-timeout in args (the flag
// must be there: quinistry's default must not silently drift from the pod's
// grace period).
func shutdownTimeout(t *testing.T, args []string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(flagValue(t, args, "--shutdown-timeout"))
	require.NoError(t, err)
	return d
}

// flagValue returns the value of flag in args (--flag v or --flag=v); the
// flag must be there.
func flagValue(t *testing.T, args []string, flag string) string {
	t.Helper()
	for i, a := range args {
		v, ok := strings.CutPrefix(a, flag+"=")
		if a == flag && i+1 < len(args) {
			v, ok = args[i+1], true
		}
		if ok {
			return v
		}
	}
	t.Fatalf("no %s in args %q", flag, args)
	return ""
}

// kustomization is the part of a kustomize Kustomization that
// kustomization.yaml uses; decoding it strictly catches a misspelt field.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// TestKustomization checks that kustomization.yaml is what `kubectl apply -k`
// and `kustomize edit set image` need: the parent alone (the child comes once
// the parent is ready), and an images entry naming the parent's image, which
// as shipped leaves it unchanged.
func TestKustomization(t *testing.T) {
	data, err := os.ReadFile("kustomization.yaml")
	require.NoError(t, err)
	var k kustomization
	require.NoError(t, decodeInto(data, &k))
	assert.Equal(t, "kustomize.config.k8s.io/v1beta1", k.APIVersion)
	assert.Equal(t, "Kustomization", k.Kind)
	assert.Equal(t, []string{"parent.yaml"}, k.Resources)

	parentData, err := os.ReadFile("parent.yaml")
	require.NoError(t, err)
	parent, err := decode(parentData)
	require.NoError(t, err)
	image := parent.Spec.Template.Spec.Containers[0].Image
	name := image
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		name = image[:i]
	}
	require.Len(t, k.Images, 1)
	assert.Equal(t, name, k.Images[0].Name, "the entry kustomize edit set image finds")
	assert.Equal(t, image, k.Images[0].NewName+":"+k.Images[0].NewTag, "as shipped, the image is parent.yaml's")

	bad := strings.Replace(string(data), "newTag:", "newtag:", 1)
	assert.Error(t, decodeInto([]byte(bad), &kustomization{}), "a misspelt field is caught")
}

// TestStrict checks that the decoding the manifests pass would catch a
// mistake: a misspelt field, an unknown one, a duplicate key, a wrong type.
func TestStrict(t *testing.T) {
	data, err := os.ReadFile("parent.yaml")
	require.NoError(t, err)
	text := string(data)
	tests := []struct {
		name, old, new, want string
	}{
		{"misspelt field", "hostPort: 5000", "hostport: 5000", `unknown field "spec.template.spec.containers[0].ports[0].hostport"`},
		{"unknown field", "      enableServiceLinks: false", "      enableServiceLinks: false\n      replicas: 2", `unknown field "spec.template.spec.replicas"`},
		{"duplicate key", "      enableServiceLinks: false", "      enableServiceLinks: false\n      enableServiceLinks: true", "already set in map"},
		{"wrong type", "hostPort: 5000", "hostPort: five", "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Contains(t, text, tt.old)
			_, err := decode([]byte(strings.Replace(text, tt.old, tt.new, 1)))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func ptr[T any](v T) *T { return &v }
