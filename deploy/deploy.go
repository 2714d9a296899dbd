// Package deploy holds quinistry's Kubernetes manifests: parent.yaml, a
// DaemonSet that runs quinistry from a registry on every node's port 5000,
// and child.yaml, a DaemonSet that pulls the same image from that parent
// (localhost:5000) and serves it on port 5001. Its test decodes them
// strictly against the Kubernetes API types. It is a module of its own so
// that those types stay out of quinistry's dependencies; internal/regauth,
// the htpasswd maker and bearer token issuer of the push end-to-end test,
// lives here for the same reason.
package deploy
