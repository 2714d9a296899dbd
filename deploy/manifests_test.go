package deploy

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

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
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, err
	}
	var ds appsv1.DaemonSet
	strict, err := kjson.UnmarshalStrict(j, &ds)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		return nil, errors.Join(strict...)
	}
	return &ds, nil
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

			for name, probe := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
				require.NotNil(t, probe, name)
				require.NotNil(t, probe.HTTPGet, name)
				assert.Equal(t, "/v2/", probe.HTTPGet.Path, name)
				assert.Equal(t, c.Ports[0].Name, probe.HTTPGet.Port.String(), name)
			}

			sc := c.SecurityContext
			require.NotNil(t, sc)
			assert.Equal(t, ptr(false), sc.AllowPrivilegeEscalation)
			assert.Equal(t, ptr(true), sc.ReadOnlyRootFilesystem)
			assert.Equal(t, ptr(false), sc.Privileged)
			require.NotNil(t, sc.Capabilities)
			assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
			assert.Empty(t, sc.Capabilities.Add)

			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
				assert.False(t, req.IsZero(), "request %s", r)
				assert.False(t, lim.IsZero(), "limit %s", r)
				assert.LessOrEqual(t, req.Cmp(lim), 0, "%s request within its limit", r)
			}
		})
	}
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
