package push_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/push"
)

func TestParseReference(t *testing.T) {
	tests := []struct {
		in      string
		want    push.Reference
		api     string
		wantErr string
	}{
		{in: "registry.example.com/team/quinistry:v1", want: push.Reference{Host: "registry.example.com", Repository: "team/quinistry", Tag: "v1"}, api: "registry.example.com"},
		{in: "localhost:5000/quinistry", want: push.Reference{Host: "localhost:5000", Repository: "quinistry", Tag: "latest"}, api: "localhost:5000"},
		{in: "localhost/q:t", want: push.Reference{Host: "localhost", Repository: "q", Tag: "t"}, api: "localhost"},
		{in: "127.0.0.1:5000/a/b/c:1.0", want: push.Reference{Host: "127.0.0.1:5000", Repository: "a/b/c", Tag: "1.0"}, api: "127.0.0.1:5000"},
		{in: "[::1]:5000/q:t", want: push.Reference{Host: "[::1]:5000", Repository: "q", Tag: "t"}, api: "[::1]:5000"},
		{in: "quinistry", want: push.Reference{Host: "docker.io", Repository: "library/quinistry", Tag: "latest"}, api: "registry-1.docker.io"},
		{in: "team/quinistry:v2", want: push.Reference{Host: "docker.io", Repository: "team/quinistry", Tag: "v2"}, api: "registry-1.docker.io"},
		{in: "", wantErr: "empty"},
		{in: "reg.example.com/q@sha256:abc", wantErr: "push needs a tag, not a digest"},
		{in: "https://reg.example.com/q", wantErr: "without a scheme"},
		{in: "reg.example.com/Team/q", wantErr: "repository must be lower-case"},
		{in: "reg.example.com/q:-bad", wantErr: "tag must be"},
		{in: "reg.example.com/", wantErr: "no repository"},
		{in: "reg_x.example.com:/q", wantErr: "bad registry"},
		{in: "q:", wantErr: "tag must be"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := push.ParseReference(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.api, got.APIHost())
		})
	}
}

func TestParseChallenges(t *testing.T) {
	tests := []struct {
		name   string
		header []string
		want   []push.Challenge
	}{
		{"bearer with a comma in a quoted scope", []string{`Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/q:pull,push"`},
			[]push.Challenge{{Scheme: "bearer", Params: map[string]string{"realm": "https://auth.example.com/token", "service": "registry.example.com", "scope": "repository:team/q:pull,push"}}}},
		{"basic", []string{`Basic realm="Registry Realm"`}, []push.Challenge{{Scheme: "basic", Params: map[string]string{"realm": "Registry Realm"}}}},
		{"unquoted values and an error", []string{`bearer realm=https://a/t, error="insufficient_scope"`},
			[]push.Challenge{{Scheme: "bearer", Params: map[string]string{"realm": "https://a/t", "error": "insufficient_scope"}}}},
		{"two headers", []string{`Basic realm="r"`, `Bearer realm="x"`},
			[]push.Challenge{{Scheme: "basic", Params: map[string]string{"realm": "r"}}, {Scheme: "bearer", Params: map[string]string{"realm": "x"}}}},
		{"escaped quote", []string{`Basic realm="a \"b\""`}, []push.Challenge{{Scheme: "basic", Params: map[string]string{"realm": `a "b"`}}}},
		{"none", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.header {
				h.Add("WWW-Authenticate", v)
			}
			assert.Equal(t, tt.want, push.ParseChallenges(h))
		})
	}
}
